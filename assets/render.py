"""Draws a terminal capture (`tmux capture-pane -e -p`) into a PNG, cell by cell, so the
picture is exactly the grid the terminal showed. Usage: render.py CAPTURE.ansi OUT.png"""
import sys
import pyte
from PIL import Image, ImageDraw, ImageFont

COLS, ROWS = 132, 36
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
BG, FG = (30, 30, 36), (214, 214, 214)
NAMED = {
    "black": (40, 40, 48), "red": (232, 93, 93), "green": (120, 200, 110), "brown": (226, 192, 90),
    "yellow": (226, 192, 90), "blue": (100, 150, 240), "magenta": (200, 120, 220), "cyan": (90, 200, 210),
    "white": (230, 230, 230), "brightblack": (128, 128, 128),
}

def colour(value, default):
    if value == "default":
        return default
    if value in NAMED:
        return NAMED[value]
    try:
        return tuple(int(value[i:i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        return default

src, dst = sys.argv[1], sys.argv[2]
lines = open(src, encoding="utf-8").read().rstrip("\n").split("\n")
screen = pyte.Screen(COLS, max(len(lines), 1))
stream = pyte.Stream(screen)
stream.feed("\r\n".join(lines))
font, bold = ImageFont.truetype(FONT, 15), ImageFont.truetype(BOLD, 15)
cw = round(font.getlength("M"))
ch = 20
img = Image.new("RGB", (COLS * cw + 24, screen.lines * ch + 24), BG)
draw = ImageDraw.Draw(img)
for y in range(screen.lines):
    row = screen.buffer[y]
    for x in range(COLS):
        c = row[x]
        fg, bg = colour(c.fg, FG), colour(c.bg, BG)
        if c.reverse:
            fg, bg = bg, fg
        px, py = 12 + x * cw, 12 + y * ch
        if bg != BG:
            draw.rectangle([px, py, px + cw - 1, py + ch - 1], fill=bg)
        if c.data.strip():
            draw.text((px, py + 2), c.data, font=bold if c.bold else font, fill=fg)
        if c.underscore:
            draw.line([px, py + ch - 3, px + cw, py + ch - 3], fill=fg)
img.save(dst)
