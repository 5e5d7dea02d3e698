"""Emoji as an offline image-text dataset for CLIP: every fully-qualified emoji of Unicode's emoji-test.txt drawn
by Noto Color Emoji, with its CLDR name and keywords as text.

Everything comes from Debian packages, so nothing is downloaded: `build` renders the images once into a directory
(`python -m ssljax.data.emoji --out data/emoji`, under 10 s on one core) and `load` reads them back in well under
a second. The held-out split holds out whole emoji concepts ("thumbs up" with all its skin tones), so a test image
never shares a concept with a training image that differs from it only in skin tone.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import sys
import time
import uuid
import zipfile
from xml.etree import ElementTree

import numpy as np

from ssljax import storage
from ssljax.data import DataError

FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
EMOJI_TEST = "/usr/share/unicode/emoji/emoji-test.txt"
ANNOTATIONS = (
  "/usr/share/unicode/cldr/common/annotations/en.xml",
  "/usr/share/unicode/cldr/common/annotationsDerived/en.xml",  # skin tones, flags, keycaps, ZWJ sequences
)
INSTALL = "apt-get install fonts-noto-color-emoji unicode-data unicode-cldr-core"
IMAGES_FILE, META_FILE = "emoji.npz", "emoji.json"
SPLITS = ("train", "test", "all")
# Noto Color Emoji is a CBDT bitmap font with a single strike: FreeType loads it at this pixel size and no other.
FONT_PIXELS = 109
# A sequence the font cannot join draws as its parts side by side: ink or advance past this many glyph widths.
MAX_GLYPH_WIDTHS = 1.5
_SKIN_TONES = frozenset(f"{tone} skin tone" for tone in ("light", "medium-light", "medium", "medium-dark", "dark"))
_LINE = re.compile(r"^([0-9A-F]+(?: [0-9A-F]+)*)\s*;\s*([\w-]+)\s*#\s*\S+\s+E\d+\.\d+\s+(.+)$")
_VS16 = "\ufe0f"  # emoji presentation selector: CLDR keys most emoji without it


@dataclasses.dataclass(frozen=True)
class EmojiSet:
  """One split of a built emoji directory; every field is in the same order as `images`."""

  images: np.ndarray  # (N, S, S, 3) uint8 RGB, the emoji centred on white
  emoji: tuple[str, ...]
  names: tuple[str, ...]  # emoji-test.txt's names: "thumbs up: medium skin tone"
  bases: tuple[str, ...]  # the names without skin tones: "thumbs up"
  keywords: tuple[tuple[str, ...], ...]  # CLDR keywords, possibly empty
  tts: tuple[str, ...]  # CLDR short names (emoji-test.txt's name where CLDR has none)
  groups: np.ndarray  # (N,) int32 into group_names
  subgroups: np.ndarray  # (N,) int32 into subgroup_names
  group_names: tuple[str, ...]  # over the whole set in file order, the same for every split
  subgroup_names: tuple[str, ...]

  def __len__(self) -> int:
    return len(self.emoji)


def base_name(name: str) -> str:
  """`name` without its skin-tone qualifiers, so that every skin tone of one emoji shares it.

  emoji-test.txt lists qualifiers after a colon: "thumbs up: medium skin tone" -> "thumbs up", "kiss: woman, man,
  light skin tone, dark skin tone" -> "kiss: woman, man" (the name of the toneless kiss), "man: dark skin tone,
  red hair" -> "man: red hair". Names are used rather than code points because dropping the modifiers from a
  sequence does not always give a listed emoji (the toneless couple holding hands is a single code point).
  """
  head, colon, qualifiers = name.partition(": ")
  if not colon:
    return name
  kept = [q for q in qualifiers.split(", ") if q not in _SKIN_TONES]
  return f"{head}: {', '.join(kept)}" if kept else head


def read_emoji_test(path: str = EMOJI_TEST) -> list[dict]:
  """The fully-qualified emoji of emoji-test.txt outside group Component, in file order, as dicts with emoji,
  codepoints, name, base, group and subgroup."""
  _require(path)
  rows, group, subgroup = [], None, None
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.startswith("# group:"):
        group = line.split(":", 1)[1].strip()
      elif line.startswith("# subgroup:"):
        subgroup = line.split(":", 1)[1].strip()
      elif (m := _LINE.match(line.strip())) and m.group(2) == "fully-qualified" and group != "Component":
        codepoints, name = m.group(1), m.group(3).strip()
        row = {"emoji": "".join(chr(int(c, 16)) for c in codepoints.split()), "codepoints": codepoints}
        rows.append(row | {"name": name, "base": base_name(name), "group": group, "subgroup": subgroup})
  if not rows or None in (rows[0]["group"], rows[0]["subgroup"]):
    raise DataError(f"{path}: no fully-qualified emoji under '# group:' headers; is it Unicode's emoji-test.txt?")
  # Toned kisses and couples are qualified "kiss: person, person, light skin tone, dark skin tone", but their
  # toneless form is plain "kiss": a base that names no emoji falls back to the part before the colon.
  names = {row["name"] for row in rows}
  for row in rows:
    head = row["base"].partition(": ")[0]
    if row["base"] not in names and head in names:
      row["base"] = head
  return rows


def read_annotations(paths=ANNOTATIONS) -> tuple[dict[str, list[str]], dict[str, str]]:
  """CLDR keywords and tts names by emoji string, merged over `paths` (earlier files win)."""
  keywords, tts = {}, {}
  for path in paths:
    _require(path)
    try:
      root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as e:
      raise DataError(f"{path}: not valid XML ({e}); reinstall it with {INSTALL}") from None
    for node in root.iter("annotation"):
      cp, text = node.get("cp"), (node.text or "").strip()
      if not cp or not text:
        continue
      if node.get("type") == "tts":
        tts.setdefault(cp, text)
      else:
        keywords.setdefault(cp, [k.strip() for k in text.split("|") if k.strip()])
  return keywords, tts


def _lookup(table: dict, emoji: str):
  return table.get(emoji, table.get(emoji.replace(_VS16, "")))


def _require(path: str) -> None:
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such file; install it with {INSTALL}")


def open_font(path: str = FONT):
  """The colour emoji font with complex text layout, which joins ZWJ sequences, flags and keycaps into one glyph."""
  from PIL import ImageFont, features  # lazy: only building needs Pillow

  _require(path)
  if not features.check("raqm"):
    # Pillow's wheels bundle raqm but load FriBiDi from the system; without it every sequence falls apart.
    raise DataError(
      f"{path}: Pillow has no raqm text layout, so emoji sequences would not join; apt-get install libfribidi0"
    )
  try:
    return ImageFont.truetype(path, size=FONT_PIXELS, layout_engine=ImageFont.Layout.RAQM)
  except OSError as e:
    raise DataError(f"{path}: cannot be loaded as a {FONT_PIXELS}px colour font ({e}); {INSTALL}") from None


def render(font, emoji: str, size: int) -> np.ndarray | str:
  """`emoji` as (size, size, 3) uint8, centred on white; or why it cannot be drawn ('blank' or 'split').

  The square keeps the font's glyph cell as its side rather than cropping to the ink, so emoji that differ only
  in size (black small square, black large square) stay different.
  """
  from PIL import Image, ImageDraw

  left, top, right, bottom = font.getbbox(emoji)
  cell = max(right - left, bottom - top)
  pad = cell // 4  # bitmaps may reach a little past the reported box
  canvas = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
  ImageDraw.Draw(canvas).text((pad - left, pad - top), emoji, font=font, embedded_color=True)
  ink = canvas.getchannel("A").getbbox()
  if ink is None:
    return "blank"
  glyph = font.getlength("\U0001f600")  # one emoji's width: the grinning face, first in emoji-test.txt
  if max(ink[2] - ink[0], font.getlength(emoji)) > MAX_GLYPH_WIDTHS * glyph:
    return "split"
  side = max(cell, ink[2] - ink[0], ink[3] - ink[1])
  x0, y0 = (ink[0] + ink[2] - side) // 2, (ink[1] + ink[3] - side) // 2
  square = canvas.crop((x0, y0, x0 + side, y0 + side))  # outside the canvas: transparent, hence white below
  white = Image.new("RGBA", square.size, (255, 255, 255, 255))
  image = Image.alpha_composite(white, square).convert("RGB")
  return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0))


def build(
  out_dir: str, *, size: int = 64, font: str = FONT, emoji_test: str = EMOJI_TEST, annotations=ANNOTATIONS
) -> dict:
  """Renders every emoji of `emoji_test` into `out_dir`/emoji.npz (`images`, (N, size, size, 3) uint8) and
  `out_dir`/emoji.json (per emoji, in file order: emoji, codepoints, name, base, group, subgroup, keywords, tts).

  Emoji the font cannot draw are left out, and one line says how many and why. Both files are written whole or
  not at all and share a random `build_id`, so `load` notices a pair from two different builds.

  Returns:
    The metadata written to emoji.json.
  """
  if size < 1:
    raise DataError(f"emoji image size must be >= 1, got {size}")
  rows = read_emoji_test(emoji_test)
  keywords, tts = read_annotations(annotations)
  face = open_font(font)
  images, kept, left_out = [], [], {}
  for row in rows:
    image = render(face, row["emoji"], size)
    if isinstance(image, str):
      left_out.setdefault(image, []).append(row["name"])
      continue
    images.append(image)
    kept.append(
      row | {"keywords": _lookup(keywords, row["emoji"]) or [], "tts": _lookup(tts, row["emoji"]) or row["name"]}
    )
  reasons = ", ".join(f"{len(names)} {why} (e.g. {names[0]})" for why, names in sorted(left_out.items()))
  print(
    f"emoji: left out {sum(map(len, left_out.values()))} of {len(rows)} that {font} cannot draw as one glyph"
    + (f": {reasons}" if reasons else ""),
    flush=True,
  )
  if not kept:
    raise DataError(f"{font}: drew none of the {len(rows)} emoji of {emoji_test}; is it a colour emoji font?")
  build_id = uuid.uuid4().hex
  meta = {
    "build_id": build_id,
    "size": size,
    "count": len(kept),
    "sources": {"font": font, "emoji_test": emoji_test, "annotations": list(annotations)},
    "left_out": left_out,
    "emoji": kept,
  }
  os.makedirs(out_dir, exist_ok=True)
  with storage.open_atomic(os.path.join(out_dir, IMAGES_FILE), "wb") as f:
    # Uncompressed: savez_compressed makes it 3.5x smaller (13 MB at 64px) but 5x slower to load (0.2 s, not 0.04).
    np.savez(f, images=np.stack(images), build_id=np.array(build_id))
  storage.write_json_atomic(os.path.join(out_dir, META_FILE), meta)
  return meta


def heldout_bases(bases, fraction: float, seed: int = 0) -> frozenset[str]:
  """The bases of `bases` the 'test' split holds out: each one by a seeded hash of its name alone.

  A hash rather than a permutation of the sorted bases: whether "thumbs up" is held out then depends on nothing
  else, not on file order, the image size, or which other emoji this font could draw, so builds from another font
  or Unicode version agree on every base they share. The held-out share is `fraction` up to sampling noise
  (+-0.01 for the ~1,900 bases of Emoji 15).
  """
  if not 0.0 <= fraction <= 1.0:
    raise DataError(f"heldout_fraction must lie in [0, 1], got {fraction}")

  def uniform(base: str) -> float:
    digest = hashlib.blake2b(f"{seed}\0{base}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64

  return frozenset(b for b in set(bases) if uniform(b) < fraction)


def load(path: str, split: str, *, image_size: int | None = None, heldout_fraction: float = 0.2, seed: int = 0):
  """One split ('train', 'test' or 'all') of a directory written by `build`, as an EmojiSet.

  'test' holds every emoji whose base is in `heldout_bases(..., heldout_fraction, seed)`, all skin tones together,
  and 'train' the rest. `image_size` resizes with an antialiasing filter when it differs from the built size.
  """
  if split not in SPLITS:
    raise DataError(f"emoji split '{split}' is not one of {', '.join(SPLITS)}")
  rebuild = f"build it with `python -m ssljax.data.emoji --out {path}`"
  if not os.path.isdir(path):
    raise DataError(f"{path}: no such directory; {rebuild}")
  images_path, meta_path = os.path.join(path, IMAGES_FILE), os.path.join(path, META_FILE)
  for p in (images_path, meta_path):
    if not os.path.isfile(p):
      raise DataError(f"{p}: no such file; {rebuild}")
  try:
    with open(meta_path, encoding="utf-8") as f:
      meta = json.load(f)
    rows = meta["emoji"]
  except (ValueError, KeyError, TypeError) as e:
    raise DataError(f"{meta_path}: not an emoji.json written by build ({type(e).__name__}: {e}); {rebuild}") from None
  try:
    with np.load(images_path) as npz:
      images, build_id = npz["images"], str(npz["build_id"])
  except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
    raise DataError(f"{images_path}: cannot be read ({type(e).__name__}: {e}); {rebuild}") from None
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3:
    raise DataError(f"{images_path}: images are {images.dtype}{list(images.shape)}, not (N, S, S, 3) uint8; {rebuild}")
  if len(rows) != len(images) or build_id != meta.get("build_id"):
    raise DataError(
      f"{path}: {IMAGES_FILE} ({len(images)} images) and {META_FILE} ({len(rows)} emoji) are not from the same "
      f"build; {rebuild}"
    )

  group_names = tuple(dict.fromkeys(r["group"] for r in rows))
  subgroup_names = tuple(dict.fromkeys(r["subgroup"] for r in rows))
  held = heldout_bases((r["base"] for r in rows), heldout_fraction, seed)
  index = [i for i, r in enumerate(rows) if (r["base"] in held) == (split == "test")]
  if split != "all":
    rows, images = [rows[i] for i in index], images[np.asarray(index, dtype=np.int64)]
  if image_size is not None and image_size != images.shape[1]:
    images = resize(images, image_size)
  group_ids = {g: i for i, g in enumerate(group_names)}
  subgroup_ids = {g: i for i, g in enumerate(subgroup_names)}
  return EmojiSet(
    images=images,
    emoji=tuple(r["emoji"] for r in rows),
    names=tuple(r["name"] for r in rows),
    bases=tuple(r["base"] for r in rows),
    keywords=tuple(tuple(r["keywords"]) for r in rows),
    tts=tuple(r["tts"] for r in rows),
    groups=np.array([group_ids[r["group"]] for r in rows], np.int32),
    subgroups=np.array([subgroup_ids[r["subgroup"]] for r in rows], np.int32),
    group_names=group_names,
    subgroup_names=subgroup_names,
  )


def resize(images: np.ndarray, size: int) -> np.ndarray:
  """(N, S, S, C) uint8 images resized to (N, size, size, C): block means for a whole-number shrink, Lanczos
  otherwise (antialiased either way)."""
  from PIL import Image

  if size < 1:
    raise DataError(f"emoji image_size must be >= 1, got {size}")
  factor, rest = divmod(images.shape[1], size)
  if rest == 0 and factor > 1 and images.shape[-1] == 3 and len(images):
    # A whole-number shrink averages factor x factor blocks, which never straddle two images stacked into one
    # column, so one PIL call does them all (~10x faster than one per image).
    column = Image.fromarray(np.ascontiguousarray(images).reshape(-1, images.shape[2], 3)).reduce(factor)
    return np.asarray(column).reshape(len(images), size, size, 3)
  out = np.empty((len(images), size, size, images.shape[-1]), np.uint8)
  for i, image in enumerate(images):
    out[i] = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True, help="directory to write emoji.npz and emoji.json into")
  parser.add_argument("--size", type=int, default=64, help="image side in pixels")
  args = parser.parse_args(argv)
  start = time.perf_counter()
  try:
    meta = build(args.out, size=args.size)
  except DataError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  groups = {r["group"] for r in meta["emoji"]}
  subgroups = {r["subgroup"] for r in meta["emoji"]}
  left_out = sum(map(len, meta["left_out"].values()))
  print(
    f"emoji: wrote {meta['count']} emoji ({len(groups)} groups, {len(subgroups)} subgroups, {left_out} left out) "
    f"at {args.size}px to {args.out} in {time.perf_counter() - start:.1f} s"
  )


if __name__ == "__main__":
  main()
