"""Emoji concepts for vita-mini's open-vocabulary images: a curated table of nameable things and their glyphs.

    CONCEPTS     ~330 `Concept(char, name, category)`: animals, food and drink, plants, weather and sky, vehicles and
                 traffic, buildings and places, sports, objects, a few faces; no flags, people variants, skin tones,
                 arrows or abstract symbols. `name` is `unicodedata.name` lowercased ("grinning face"), or a short
                 override where the Unicode name is archaic ("AUBERGINE" -> "eggplant", "SLICE OF PIZZA" -> "pizza");
                 one to three words, unique across the table.
    colour_glyph Noto Color Emoji (Debian `fonts-noto-color-emoji`, a CBDT bitmap font: PIL renders it at size 109
                 with `embedded_color=True`), RGBA cropped to the glyph.
    line_glyph   the same concept drawn by Symbola (Debian `fonts-symbola`), a monochrome outline font: an alpha mask
                 the caller inks; `None` where Symbola has no glyph (newer emoji). A different artist's drawing of the
                 same concept, which is what the held-out "other renders" use.
Fonts are looked up under /usr/share/fonts (or `VITA_EMOJI_FONT` / `VITA_SYMBOLA_FONT`); a missing font raises
`FileNotFoundError` naming the Debian package (`make setup` installs them).
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_ROOT = Path("/usr/share/fonts")
COLOUR_FONT = ("fonts-noto-color-emoji", "truetype/noto/NotoColorEmoji.ttf", "VITA_EMOJI_FONT")
LINE_FONT = ("fonts-symbola", "truetype/ancient-scripts/Symbola_hint.ttf", "VITA_SYMBOLA_FONT")
CBDT_SIZE = 109  # the one pixel size Noto Color Emoji's bitmaps come in

# category -> space-separated glyphs; "glyph=name" overrides the cleaned Unicode name ("_" for a space)
_TABLE = {
    "animal": (
        "🐀 🐁 🐂=ox 🐄 🐅 🐆 🐇 🐈 🐉 🐊 🐋 🐌 🐍 🐎 🐐 🐑 🐒 🐓 🐔 🐕 🐖 🐘 🐙 🐚=shell 🐛=caterpillar 🐜 🐝=bee "
        "🐞=ladybug 🐟 🐢 🐤=chick 🐦 🐧 🐨 🐪=camel 🐬 🐸=frog 🐺=wolf 🐻=bear 🐼=panda 🐹=hamster 🦀 🦁=lion 🦃 "
        "🦄=unicorn 🦅 🦆 🦇 🦈 🦉 🦊=fox 🦋 🦌 🦍 🦎 🦏 🦐 🦒=giraffe 🦓=zebra 🦔 🦕=dinosaur 🦖=t-rex 🦘 🦙 🦚 🦛 "
        "🦜 🦝 🦞 🦢 🦦 🦨 🦩 🦫 🦭 🕷 🕊=dove"
    ),
    "food": (
        "🍅 🍆=eggplant 🍇 🍈 🍉 🍊 🍋 🍌 🍍 🍎=apple 🍐 🍑 🍒 🍓 🥝=kiwi 🥥 🥑 🥦 🥕 🌽=corn 🌶 🥒 🥔 🧄 🧅 🍄 🥜 "
        "🍞 🥐 🥖=baguette 🥨 🥯 🥞 🧇 🧀=cheese 🍗=chicken_leg 🥓 🍔 🍟 🍕=pizza 🌭 🥪 🌮 🌯 🥚 🍳=fried_egg "
        "🥗=salad 🍿 🧂=salt 🍚=rice 🍝 🍣 🍦=ice_cream 🍩 🍪 🎂 🍰=cake 🧁 🥧 🍫 🍬 🍭 🍯=honey 🫑 🥭 🥩=steak"
    ),
    "drink": "☕ 🍵=tea 🍷 🍸=cocktail 🍺=beer 🍼 🥛=milk 🥤 🧃=juice_box 🫖 🍾=champagne 🧊=ice",
    "kitchen": "🥄 🍴=fork_and_knife 🥢 🔪=kitchen_knife",
    "plant": "🌵 🌳=tree 🌴 🌷 🌸 🌹 🌺 🌻 🍀 🍁 💐 🪴 🪶 🎄",
    "weather": (
        "☀=sun ☁ ☂ ⛄=snowman ❄ ⚡=lightning 🌈 🌊=wave 🌋 🌙 🌕=full_moon 🌍=globe ⭐=star 🌪=tornado 🌫 "
        "🌧=rain_cloud 🌩=storm_cloud 🌡 💧=water_drop 🔥 ⛰ 🏝 🏜 🏖=beach 🌅 🪐=planet"
    ),
    "vehicle": (
        "🚀 🚁 🚂 🚄=train 🚊 🚌 🚑 🚒 🚓 🚕 🚗=car 🚚=truck 🚜 🏎 🏍=motorcycle 🛵 🚲 🛴=kick_scooter 🛹 ⛵ 🚤 🛶 "
        "🚢 ✈ 🛸 🚡=cable_car 🛷 🛻 🚦=traffic_light 🛑=stop_sign ⚓"
    ),
    "building": "🏠=house 🏢 🏥 🏦 🏨 🏫 🏭 🏰=castle ⛪ 🕌 🕍 ⛩ 🗽 🏟 🎡 🎢 ⛲ ⛺ 🌉=bridge 🛖 🛕",
    "sport": (
        "⚽ ⚾ 🏀=basketball 🏐 🏈=football 🏉=rugby_ball 🎾=tennis 🎳 🏏=cricket_bat 🏓=ping_pong 🏸=badminton 🥊 "
        "⛳=golf ⛸ 🎿=skis 🎯=dartboard 🎱 🏆 🏅=medal 🥇=gold_medal 🥏=frisbee 🪁 🪀 🏹 🤿"
    ),
    "object": (
        "⌚ ⏰ ☎=telephone ⌨ 💻=laptop 🖥=computer 🖨 🖱=computer_mouse 📱 📷 📹 📺 📻 💡=light_bulb 🔦=flashlight "
        "🕯 🔋 🔌=plug 🔑 🔒 🔔 🔨 🔧 🪛 🪚=saw 🪓 ⚙ 🧲 🧰 🪜 🔬 🔭 🧪 🧭 🧯 ✂=scissors 📎 📏=ruler ✏ 🖊=pen "
        "🖌=paintbrush 🖍=crayon 📖=book 📰 📦 ✉ 📫=mailbox 🎁=gift 🎈 🎃=pumpkin_lantern 🎸 🎹=piano 🎺 🎻 🎷 "
        "🥁=drum 🪕 🪗 🎤 🎧=headphones 🎵 🎲=dice 🧩=puzzle_piece 🧸 🎮=game_controller 👑 🎩 🧢=cap 👓=glasses "
        "👔=tie 👕 👖 👗 🧣 🧤 🧥 🧦 👜 🎒=backpack 👞=shoe 👟=sneaker 👢=boot 🩴=flip_flop 💍 💎=gem 💄 🪞 🪟 🚪 "
        "🛏 🛋=couch 🪑 🚽 🚿 🛁 🧹 🧺 🧼=soap 🧶=yarn 🛒=shopping_cart 🪙 💳 🧳=suitcase 🏺=vase 🦴 🦷 🧠 👁 "
        "🤖=robot 👻 👽=alien 🎅=santa_claus 🪨 🧱 🛰 🪂 🪃 ⚖=balance_scale 🎆 🗺=map ❤=heart"
    ),
    "face": "😀 😢 😠 😴 🤔 🤡=clown ☺=smiling_face",
}
# names that are already plural (never asked "How many Xs?"); counting questions use `plural` otherwise
PLURAL_NAMES = frozenset({"grapes", "cherries", "peanuts", "pancakes", "french fries", "chopsticks", "skis", "glasses",
                          "jeans", "socks", "gloves", "headphones", "fireworks", "dice", "scissors"})
# names that take no article ("santa claus") or "the"; pairs and landmarks are never counted either
PROPER_NAMES = {"santa claus": "", "statue of liberty": "the "}
NOT_COUNTED = frozenset({"fork and knife", "bow and arrow", *PROPER_NAMES})
_IRREGULAR = {"mouse": "mice", "sheep": "sheep", "fish": "fish", "deer": "deer", "ox": "oxen", "shrimp": "shrimp",
              "wolf": "wolves", "maple leaf": "maple leaves", "tooth": "teeth", "tomato": "tomatoes",
              "potato": "potatoes", "mango": "mangoes", "volcano": "volcanoes", "t-rex": "t-rexes"}
# uncountable names: sports, substances, weather ("How many golfs?" is not a question)
MASS_NAMES = frozenset({"salt", "rice", "tea", "milk", "beer", "honey", "ice", "cheese", "bacon", "popcorn", "corn",
                        "champagne", "spaghetti", "sushi", "bread", "salad", "lightning", "fog", "fire", "golf",
                        "tennis", "ping pong", "badminton", "bowling", "billiards", "yarn", "hot beverage", "candy"})


@dataclass(frozen=True)
class Concept:
    char: str  # one code point
    name: str  # the answer: lowercase, one to three words
    category: str

    @property
    def countable(self) -> bool:
        return self.name not in PLURAL_NAMES | MASS_NAMES | NOT_COUNTED


def clean_name(char: str) -> str:
    """`unicodedata.name` in lowercase: "FACE WITH TEARS OF JOY" -> "face with tears of joy"."""
    return unicodedata.name(char).lower()


def _parse() -> tuple[Concept, ...]:
    out = []
    for category, glyphs in _TABLE.items():
        for token in glyphs.split():
            char, _, name = token.partition("=")
            assert len(char) == 1, f"{token!r}: one code point per concept"
            out.append(Concept(char, name.replace("_", " ") or clean_name(char), category))
    return tuple(out)


CONCEPTS: tuple[Concept, ...] = _parse()
CATEGORIES = tuple(_TABLE)


def plural(name: str) -> str:
    """English plural of a concept name ("bus" -> "buses", "strawberry" -> "strawberries", "mouse" -> "mice")."""
    if name in _IRREGULAR:
        return _IRREGULAR[name]
    if name in PLURAL_NAMES:
        return name
    if name.endswith(("s", "x", "ch", "sh")):
        return name + "es"
    if name.endswith("y") and name[-2:-1] not in tuple("aeiou"):
        return name[:-1] + "ies"
    return name + "s"


def with_article(name: str, adjective: str = "") -> str:
    """`name` (after an optional adjective) with "a", "an", "some" or nothing in front: "an owl", "a small owl",
    "some rice", "santa claus"."""
    phrase = f"{adjective} {name}" if adjective else name
    if name in PROPER_NAMES:
        return PROPER_NAMES[name] + name
    if name in PLURAL_NAMES or name in MASS_NAMES:
        return "some " + phrase
    return ("an " if phrase[0] in "aeiou" and not phrase.startswith(("uni", "eu")) else "a ") + phrase


def stable_hash(text: str) -> int:
    """A seed-independent 32-bit hash (train / held-out splits by name must not depend on PYTHONHASHSEED)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _font_path(spec: tuple[str, str, str]) -> Path:
    package, rel, env = spec
    path = Path(os.environ.get(env) or FONT_ROOT / rel)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: install the Debian package {package} (`apt-get install {package}`, part of "
            f"`make setup`) or point {env} at the font file")
    return path


@cache
def _colour_font() -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_font_path(COLOUR_FONT)), CBDT_SIZE)


@cache
def _line_font() -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_font_path(LINE_FONT)), 160)


@cache
def _line_cmap() -> frozenset[int]:
    """Code points Symbola draws: a glyph whose mask differs from the one for an unassigned code point."""
    font = _line_font()
    missing = np.asarray(font.getmask("\U0010fffd"), dtype=np.uint8).tobytes()
    return frozenset(ord(c.char) for c in CONCEPTS
                     if np.asarray(font.getmask(c.char), dtype=np.uint8).tobytes() not in (missing, b""))


def _crop(img: Image.Image) -> Image.Image:
    box = img.getchannel("A").getbbox()
    return img.crop(box) if box else img


@cache
def colour_glyph(char: str) -> Image.Image:
    """The colour emoji as RGBA, cropped to its opaque part (about 128 px on a side)."""
    font = _colour_font()
    img = Image.new("RGBA", (CBDT_SIZE + 60, CBDT_SIZE + 60), (0, 0, 0, 0))
    ImageDraw.Draw(img).text((4, 4), char, font=font, embedded_color=True)
    glyph = _crop(img)
    if glyph.getchannel("A").getbbox() is None:
        raise ValueError(f"{char!r} ({clean_name(char)}) has no glyph in {COLOUR_FONT[1]}")
    return glyph


def has_line_glyph(concept: Concept) -> bool:
    return ord(concept.char) in _line_cmap()


@cache
def line_glyph(char: str) -> Image.Image | None:
    """Symbola's outline drawing as an "L" alpha mask cropped to the ink, or None if Symbola lacks it."""
    if ord(char) not in _line_cmap():
        return None
    font = _line_font()
    img = Image.new("L", (260, 260), 0)
    ImageDraw.Draw(img).text((20, 10), char, font=font, fill=255)
    box = img.getbbox()
    return img.crop(box) if box else None
