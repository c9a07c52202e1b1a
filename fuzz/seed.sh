#!/bin/sh
# Seeds each fuzz target's corpus from the files director must read: Directord's corpus, the
# shipped catalogs and orchestrations, and the bad-input cases (their files, split out).
set -eu
cd "$(dirname "$0")"
mkdir -p corpus/catalog corpus/orchestration corpus/proto
cp ../catalogs/*.yaml ../tests/fixtures/corpus/tools/*.yaml corpus/catalog/
cp ../orchestrations/*.yaml ../tests/fixtures/corpus/orchestrations/* ../tests/fixtures/deploy/*.yaml corpus/orchestration/ 2>/dev/null || true
python3 - <<'PY'
import glob, os
for case in glob.glob('../tests/inputs/*.case'):
    name = os.path.basename(case)[:-5]
    text = open(case).read()
    for part in text.split('\n--- ')[1:]:
        header, _, body = part.partition('\n')
        if header.startswith('stderr') or '!make' in header:
            continue
        target = 'catalog' if header.split()[0] != 'o.yaml' else 'orchestration'
        open(f'corpus/{target}/{name}-{header.split()[0]}', 'w').write(body)
PY
# Protocol frames: replies a node sends, a request, a data frame.
python3 - <<'PY'
import json, struct
def frame(msg):
    body = json.dumps(msg, separators=(',', ':')).encode()
    return struct.pack('>I', len(body)) + body
seeds = {
    'hello': frame({'t': 'hello', 'version': 3, 'pid': 7, 'facts': {'arch': 'x86_64', 'kernel': '6', 'hostname': 'n', 'os': 'D'}, 'cache': None, 'now': 1}),
    'job': frame({'t': 'started', 'id': 1, 'pid': 7}) + frame({'t': 'output', 'id': 1, 'stream': 'stdout', 'data': 'hi\n'}),
    'request': frame({'t': 'hash', 'id': 2, 'path': '/x'}),
    'data': struct.pack('>I', 0x80000000 | 12) + struct.pack('>Q', 9) + b'data',
}
for name, blob in seeds.items():
    open(f'corpus/proto/{name}', 'wb').write(blob)
PY
echo "seeded: $(ls corpus/catalog | wc -l) catalogs, $(ls corpus/orchestration | wc -l) orchestrations, $(ls corpus/proto | wc -l) frames"
