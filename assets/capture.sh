#!/bin/sh
# Renders the screenshots in assets/ from a real run: the demo fleet (assets/demo, eight
# local-transport nodes, so no sshd is needed) driven in a tmux pane; each screen is captured
# with its colours and drawn cell by cell into a PNG by assets/render.py (pip install pyte
# pillow; the DejaVu Sans Mono font).
#   sh assets/capture.sh            (after cargo build)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/debug/director"
work=$(mktemp -d)
sock="$work/tmux.sock"
t() { tmux -S "$sock" "$@"; }
shot() { sleep "${2:-0.3}"; t capture-pane -e -p -t demo > "$work/$1.ansi"; }
keys() { for k in "$@"; do t send-keys -t demo "$k"; sleep 0.3; done; }
cd "$root/assets/demo"
t new-session -d -s demo -x 132 -y 36 "env HOME=$work $bin --history $work/history.db tui catalog.yaml; sleep 60"
sleep 1
keys o Enter; shot tui-run-in-flight 6.5
sleep 8; shot tui-run-finished
keys Down Enter Enter; shot tui-job-record
keys Escape Escape 1 / web Enter Down Down ' '; shot tui-nodes-filter
keys ?; shot tui-help
keys Escape q
t kill-server || true
t new-session -d -s demo -x 132 -y 24 "env HOME=$work $bin --history $work/history.db orchestrate orchestrations/deploy.yaml --catalog catalog.yaml --ignore-cache; sleep 60"
shot orchestrate-inline 5
sleep 10; shot orchestrate-finished
t kill-server || true
for f in "$work"/*.ansi; do
    python3 "$root/assets/render.py" "$f" "$root/assets/$(basename "$f" .ansi).png"
done
rm -rf "$work"
ls "$root"/assets/*.png
