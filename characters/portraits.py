"""Portraits of the demo cast, drawn with Pillow by `manage.py seed_demo`: original, deterministic
(the same bytes on every machine with the same Pillow), 400 x 600 like a SillyTavern card.

Each is a scene and a bust built from a few shapes, drawn at twice the size and scaled down so the
edges are smooth. No downloaded art: everything here is drawn by this code.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable

from PIL import Image, ImageChops, ImageDraw, ImageFilter

W, H = 400, 600
S = 2  # drawn at twice the size, then scaled down (antialiasing)

Color = tuple[int, int, int]


def _gradient(top: Color, bottom: Color) -> Image.Image:
    column = Image.new("RGB", (1, 256))
    for y in range(256):
        t = y / 255
        column.putpixel((0, y), tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    return column.resize((W * S, H * S), Image.Resampling.BICUBIC)


def _glow(image: Image.Image, box: tuple[float, ...], color: Color, blur: int) -> None:
    """A soft light: a blurred ellipse added onto the picture."""
    layer = Image.new("RGB", image.size, (0, 0, 0))
    ImageDraw.Draw(layer).ellipse([v * S for v in box], fill=color)
    image.paste(ImageChops.add(image, layer.filter(ImageFilter.GaussianBlur(blur * S))))


class _Pen:
    """ImageDraw at the drawing scale: coordinates are given in the final 400 x 600 frame."""

    def __init__(self, image: Image.Image):
        self.draw = ImageDraw.Draw(image)

    def ellipse(self, box, **kw):
        self.draw.ellipse([v * S for v in box], **self._w(kw))

    def rect(self, box, radius=0, **kw):
        self.draw.rounded_rectangle([v * S for v in box], radius=radius * S, **self._w(kw))

    def poly(self, points, **kw):
        self.draw.polygon([(x * S, y * S) for x, y in points], **kw)

    def line(self, points, **kw):
        self.draw.line([(x * S, y * S) for x, y in points], joint="curve", **self._w(kw))

    def arc(self, box, start, end, **kw):
        self.draw.arc([v * S for v in box], start, end, **self._w(kw))

    @staticmethod
    def _w(kw: dict) -> dict:
        if "width" in kw:
            kw = {**kw, "width": kw["width"] * S}
        return kw


def _bust(pen: _Pen, *, skin: Color, top: Color, collar: Color | None = None) -> None:
    """Shoulders, neck and head of a figure facing the viewer, head centred at (200, 250)."""
    pen.rect((174, 300, 226, 392), radius=20, fill=tuple(max(0, c - 25) for c in skin))
    pen.poly([(60, 600), (78, 430), (140, 378), (260, 378), (322, 430), (340, 600)], fill=top)
    pen.ellipse((52, 400, 130, 600), fill=top)
    pen.ellipse((270, 400, 348, 600), fill=top)
    if collar:
        pen.poly([(150, 378), (200, 446), (250, 378), (232, 372), (200, 414), (168, 372)], fill=collar)
    pen.ellipse((138, 160, 262, 335), fill=skin)
    pen.ellipse((128, 235, 148, 275), fill=skin)  # ears
    pen.ellipse((252, 235, 272, 275), fill=skin)


def _face(pen: _Pen, *, eyes: Color, skin: Color, smile: bool = True) -> None:
    for x in (172, 228):
        pen.ellipse((x - 11, 240, x + 11, 256), fill=(250, 250, 246))
        pen.ellipse((x - 6, 242, x + 6, 255), fill=eyes)
        pen.ellipse((x - 2, 245, x + 2, 249), fill=(255, 255, 255))
    brow = tuple(max(0, c - 90) for c in skin)
    pen.line([(158, 230), (184, 226)], fill=brow, width=4)
    pen.line([(216, 226), (242, 230)], fill=brow, width=4)
    pen.line([(200, 258), (195, 282), (203, 284)], fill=tuple(max(0, c - 45) for c in skin), width=3)
    lips = (176, 88, 88)
    if smile:
        pen.arc((180, 285, 220, 308), 15, 165, fill=lips, width=4)
    else:
        pen.line([(186, 300), (214, 298)], fill=lips, width=4)
    blush = tuple(min(255, c + 10) for c in (skin[0], skin[1] - 25, skin[2] - 20))
    pen.ellipse((150, 268, 174, 282), fill=blush)
    pen.ellipse((226, 268, 250, 282), fill=blush)


def _stars(pen: _Pen, rng: random.Random, count: int, area: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = area
    for _ in range(count):
        x, y, r = rng.uniform(x0, x1), rng.uniform(y0, y1), rng.choice((0.8, 1, 1.2, 1.8))
        shade = rng.randint(170, 255)
        pen.ellipse((x - r, y - r, x + r, y + r), fill=(shade, shade, min(255, shade + 20)))


def _captain(rng: random.Random) -> Image.Image:
    image = _gradient((10, 14, 40), (52, 30, 84))
    pen = _Pen(image)
    _stars(pen, rng, 140, (0, 0, W, H))
    _glow(image, (250, 40, 390, 180), (60, 40, 20), 30)
    pen.arc((236, 96, 404, 132), 180, 360, fill=(240, 214, 170), width=5)  # the ring behind the planet
    pen.ellipse((270, 60, 370, 160), fill=(214, 142, 82))
    pen.ellipse((284, 70, 360, 118), fill=(232, 170, 110))
    pen.arc((236, 96, 404, 132), 0, 180, fill=(240, 214, 170), width=5)  # and in front
    skin, hair = (150, 98, 70), (28, 22, 30)
    pen.ellipse((130, 140, 270, 250), fill=hair)  # hair behind the head
    _bust(pen, skin=skin, top=(30, 52, 96), collar=(20, 34, 66))
    pen.poly(
        [(132, 250), (140, 170), (200, 140), (262, 160), (272, 228), (250, 200), (190, 190), (150, 215)],
        fill=hair,
    )
    _face(pen, eyes=(70, 46, 30), skin=skin)
    pen.line([(160, 258), (178, 262)], fill=(120, 76, 54), width=2)  # an old scar
    pen.arc((118, 170, 282, 330), 180, 360, fill=(60, 64, 72), width=8)  # headset
    pen.rect((120, 238, 138, 282), radius=6, fill=(70, 74, 84))
    pen.line([(130, 280), (150, 318), (178, 322)], fill=(70, 74, 84), width=4)
    pen.ellipse((174, 316, 186, 328), fill=(255, 120, 60))
    for x in (108, 292):  # shoulder boards
        pen.rect((x - 28, 404, x + 28, 420), radius=4, fill=(212, 170, 70))
    star = [
        (200, 480),
        (212, 502),
        (236, 504),
        (218, 520),
        (224, 544),
        (200, 530),
        (176, 544),
        (182, 520),
        (164, 504),
        (188, 502),
    ]
    pen.poly(star, fill=(232, 190, 80))
    return image


def _botanist(rng: random.Random) -> Image.Image:
    image = _gradient((196, 224, 206), (96, 140, 110))
    pen = _Pen(image)
    frame = (236, 244, 236)
    for x in range(0, W + 1, 80):  # greenhouse panes
        pen.line([(x, 0), (x, 600)], fill=frame, width=3)
    for y in (120, 260, 400):
        pen.line([(0, y), (W, y)], fill=frame, width=3)
    pen.arc((-40, -180, 440, 200), 0, 180, fill=frame, width=4)
    for _ in range(9):  # ferns along the bottom
        x, length, lean = rng.uniform(0, W), rng.uniform(120, 220), rng.uniform(-40, 40)
        green = (rng.randint(40, 70), rng.randint(110, 150), rng.randint(50, 80))
        pen.line([(x, 600), (x + lean, 600 - length)], fill=green, width=3)
        for i in range(1, 9):
            t = i / 9
            px, py = x + lean * t, 600 - length * t
            side = 26 * (1 - t) + 6
            pen.ellipse((px - side, py - 5, px, py + 5), fill=green)
            pen.ellipse((px, py - 5, px + side, py + 5), fill=green)
    skin, hair = (238, 204, 182), (214, 214, 220)
    _bust(pen, skin=skin, top=(112, 82, 54), collar=(240, 236, 226))
    pen.poly(
        [(184, 392), (200, 402), (216, 392), (216, 414), (200, 406), (184, 414)], fill=(120, 30, 40)
    )  # bow tie
    pen.ellipse((124, 196, 164, 262), fill=hair)  # grey tufts at the sides
    pen.ellipse((236, 196, 276, 262), fill=hair)
    pen.arc((150, 150, 250, 214), 200, 340, fill=hair, width=10)
    _face(pen, eyes=(74, 110, 84), skin=skin, smile=False)
    for x in (172, 228):  # round spectacles
        pen.ellipse((x - 20, 228, x + 20, 268), outline=(150, 116, 50), width=4)
    pen.line([(192, 246), (208, 246)], fill=(150, 116, 50), width=3)
    pen.line([(178, 306), (222, 306)], fill=hair, width=9)  # moustache
    pen.line([(262, 470), (276, 410)], fill=(70, 120, 60), width=4)  # a wilted leaf in his pocket
    pen.poly([(276, 410), (312, 376), (290, 430)], fill=(150, 150, 70))
    pen.rect((240, 462, 296, 500), radius=4, fill=(96, 70, 46))
    return image


def _innkeeper(rng: random.Random) -> Image.Image:
    image = _gradient((74, 40, 24), (140, 78, 40))
    pen = _Pen(image)
    for r in range(40, 420, 34):  # the hollow tree's rings around the room
        pen.arc((200 - r * 1.3, 300 - r, 200 + r * 1.3, 300 + r), 0, 360, fill=(96, 56, 32), width=3)
    for x, y in ((70, 90), (330, 120)):
        _glow(image, (x - 70, y - 70, x + 70, y + 70), (120, 70, 10), 24)
        pen.line([(x, 0), (x, y - 22)], fill=(50, 30, 20), width=2)
        pen.rect(
            (x - 14, y - 22, x + 14, y + 18), radius=5, fill=(255, 196, 90), outline=(70, 44, 24), width=3
        )
    for _ in range(30):  # embers in the air
        x, y = rng.uniform(0, W), rng.uniform(0, 360)
        pen.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=(255, 190, 110))
    skin, hair, fur = (244, 206, 176), (176, 78, 36), (206, 104, 46)
    pen.poly([(130, 250), (120, 440), (176, 470), (160, 260)], fill=hair)  # long hair behind
    pen.poly([(270, 250), (280, 440), (224, 470), (240, 260)], fill=hair)
    _bust(pen, skin=skin, top=(58, 104, 70), collar=(236, 226, 200))
    pen.rect((150, 450, 250, 600), radius=10, fill=(236, 226, 200))  # apron
    for side in (-1, 1):  # fox ears
        cx = 200 + side * 52
        pen.poly([(cx - 30, 196), (cx + side * 18, 92), (cx + 30, 196)], fill=fur)
        pen.poly([(cx - 16, 190), (cx + side * 14, 120), (cx + 16, 190)], fill=(250, 226, 206))
    pen.poly(
        [(138, 250), (146, 186), (200, 160), (254, 186), (262, 250), (236, 210), (200, 200), (164, 210)],
        fill=hair,
    )
    _face(pen, eyes=(60, 120, 60), skin=skin)
    for _ in range(10):  # freckles
        x, y = rng.uniform(160, 240), rng.uniform(262, 280)
        if abs(x - 200) > 10:
            pen.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=(196, 130, 96))
    return image


def _robot(rng: random.Random) -> Image.Image:
    image = _gradient((214, 238, 236), (150, 196, 196))
    pen = _Pen(image)
    for y in range(0, H, 40):  # kitchen tiles
        for x in range(0 if (y // 40) % 2 else -20, W, 40):
            pen.rect((x + 2, y + 2, x + 38, y + 38), radius=3, fill=(196, 226, 224))
    pen.rect((0, 470, W, 600), fill=(120, 90, 70))  # the counter
    steel, dark = (170, 178, 190), (96, 104, 118)
    pen.poly([(70, 600), (96, 420), (304, 420), (330, 600)], fill=steel)
    pen.rect((150, 470, 250, 540), radius=10, fill=dark)
    for i, c in enumerate(((255, 90, 90), (255, 200, 70), (90, 220, 120))):
        pen.ellipse((166 + i * 26, 492, 182 + i * 26, 508), fill=c)
    pen.rect((186, 360, 214, 422), fill=dark)  # neck
    pen.rect((120, 190, 280, 370), radius=36, fill=steel, outline=dark, width=5)
    pen.rect((140, 232, 260, 300), radius=24, fill=(30, 36, 48))  # visor
    for x in (174, 226):
        _glow(image, (x - 30, 236, x + 30, 296), (0, 90, 110), 10)
        pen.ellipse((x - 14, 252, x + 14, 280), fill=(120, 240, 255))
    pen.arc((170, 300, 230, 344), 20, 160, fill=dark, width=5)
    pen.line([(200, 190), (200, 150)], fill=dark, width=4)  # antenna
    pen.ellipse((190, 138, 210, 158), fill=(255, 110, 80))
    white = (250, 250, 250)
    pen.rect((142, 150, 258, 206), radius=8, fill=white)  # chef's hat
    for x, y, r in ((150, 120, 36), (200, 98, 44), (250, 120, 36)):
        pen.ellipse((x - r, y - r, x + r, y + r), fill=white)
    pen.ellipse((262, 500, 382, 540), fill=(60, 60, 66))  # the charcoal soufflé
    pen.ellipse((282, 470, 362, 520), fill=(40, 34, 30))
    for i in range(4):  # and its smoke
        y = 440 - i * 46
        pen.ellipse(
            (
                300 + (i % 2) * 16 - 18 - i * 4,
                y - 18 - i * 4,
                300 + (i % 2) * 16 + 18 + i * 4,
                y + 18 + i * 4,
            ),
            fill=(176, 180, 184),
        )
    return image


PAINTERS: dict[str, Callable[[random.Random], Image.Image]] = {
    "Captain Mira Vance": _captain,
    "Professor Alder Quince": _botanist,
    "Wren of the Hollow": _innkeeper,
    "Unit K-7": _robot,
}


def demo_portrait(name: str) -> bytes | None:
    """The PNG portrait of the demo character `name`, or None for a name without one."""
    painter = PAINTERS.get(name)
    if painter is None:
        return None
    image = painter(random.Random(name)).resize((W, H), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
