"""The emoji image-text set: a real build from the Debian packages (`make data`), its metadata, the held-out split,
errors."""

import contextlib
import io
import json
import os
import re
import shutil

import numpy as np
import pytest

from ssljax.data import DataError, emoji


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """The whole set at 64px, built once through the command line (~7 s on one core)."""
  out = str(tmp_path_factory.mktemp("emoji") / "emoji")
  stdout = io.StringIO()
  with contextlib.redirect_stdout(stdout):
    emoji.main(["--out", out])
  return out, stdout.getvalue().splitlines()


@pytest.fixture(scope="module")
def full(built):
  return emoji.load(built[0], "all")


def _write_subset(path, groups):
  """An emoji-test.txt with only `groups`, in the order given: another file order and another set of bases."""
  blocks, name = {}, None
  with open(emoji.EMOJI_TEST, encoding="utf-8") as f:
    for line in f:
      if line.startswith("# group:"):
        name = line.split(":", 1)[1].strip()
      if name is not None:
        blocks.setdefault(name, []).append(line)
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(line for g in groups for line in blocks[g])


def test_cli_builds_every_emoji_the_font_draws(built, full):
  out, lines = built
  assert len(lines) == 2
  assert re.fullmatch(r"emoji: left out \d+ of 3\d{3} .*", lines[0])
  assert re.fullmatch(r"emoji: wrote 3\d{3} emoji \(9 groups, \d+ subgroups, \d+ left out\) at 64px to .* s", lines[1])
  with open(os.path.join(out, emoji.META_FILE), encoding="utf-8") as f:
    meta = json.load(f)
  left_out = sum(map(len, meta["left_out"].values()))
  assert meta["count"] == len(full) and len(full) + left_out == len(emoji.read_emoji_test())
  assert len(full) > 3500 and left_out < 20  # Debian 12's Noto Color Emoji 2.042 draws all 3655 of Emoji 15.0
  assert full.group_names[:2] == ("Smileys & Emotion", "People & Body") and len(full.group_names) == 9
  assert "Component" not in full.group_names and 90 <= len(full.subgroup_names) <= 110
  assert set(full.groups.tolist()) == set(range(9)) and full.groups.dtype == np.int32
  assert full.subgroups.max() == len(full.subgroup_names) - 1 and full.subgroups.dtype == np.int32
  assert meta["emoji"][0]["codepoints"] == "1F600" and meta["emoji"][0]["emoji"] == "\U0001f600"


def test_images_are_drawn_centred_on_white_and_differ(full):
  images = full.images
  assert images.shape == (len(full), 64, 64, 3) and images.dtype == np.uint8
  ink = (images < 250).any(axis=-1).mean(axis=(1, 2))
  assert ink.min() > 0.03  # every emoji has ink
  assert (images.reshape(len(images), -1, 3) == 255).all(axis=-1).any(axis=1).all()  # and white around it
  # Identical images: tones the font does not show (snowboarder) and flags shared by territories (Norway, Bouvet).
  assert len({image.tobytes() for image in images}) > 0.99 * len(images)
  # Emoji that differ only in size stay different: the square is the glyph cell, not the ink's box.
  small, large = ((images[full.names.index(f"black {s} square")] < 128).all(-1).sum() for s in ("small", "large"))
  assert large > 4 * small > 0


def test_metadata_of_a_known_emoji(full):
  i = full.names.index("thumbs up: medium skin tone")
  assert full.emoji[i] == "\U0001f44d\U0001f3fd" and full.bases[i] == "thumbs up" and full.tts[i] == full.names[i]
  assert full.group_names[full.groups[i]] == "People & Body"
  assert full.subgroup_names[full.subgroups[i]] == "hand-fingers-closed"
  assert {"thumb", "up"} <= set(full.keywords[i]) and "medium skin tone" in full.keywords[i]
  assert sum(b == "thumbs up" for b in full.bases) == 6  # the toneless one and five skin tones
  # Two people with two tones share the toneless emoji's base, even where that one is named differently.
  kiss = full.names.index("kiss: person, person, light skin tone, dark skin tone")
  assert full.bases[kiss] == "kiss" and full.bases[full.names.index("man: dark skin tone, red hair")] == "man: red hair"
  assert set(full.bases) <= set(full.names)
  # CLDR keys most emoji without U+FE0F: found all the same. Its 2022 data lacks the 31 of Emoji 15.0.
  assert (
    "smile" in full.keywords[full.names.index("smiling face")]
    and full.emoji[full.names.index("smiling face")][-1] == "\ufe0f"
  )
  assert sum(not k for k in full.keywords) < 50 and full.keywords[full.names.index("shaking face")] == ()
  assert "flag" in full.keywords[full.names.index("flag: Japan")]


def test_emoji_the_font_cannot_draw_are_left_out_and_counted(tmp_path, capsys):
  lines = [
    "# group: Smileys & Emotion",
    "# subgroup: face-smiling",
    "1F600 ; fully-qualified # \U0001f600 E1.0 grinning face",
    "0041 ; fully-qualified # A E1.0 letter a",  # no glyph in an emoji font
    "1F600 200D 1F680 ; fully-qualified # x E1.0 rocket face",  # no such ZWJ sequence: two glyphs side by side
    "1F600 ; unqualified # x E1.0 not fully-qualified",
  ]
  (tmp_path / "emoji-test.txt").write_text("\n".join(lines) + "\n")
  meta = emoji.build(str(tmp_path / "out"), size=8, emoji_test=str(tmp_path / "emoji-test.txt"))
  line = capsys.readouterr().out.strip()
  assert line == (
    f"emoji: left out 2 of 3 that {emoji.FONT} cannot draw as one glyph: "
    "1 blank (e.g. letter a), 1 split (e.g. rocket face)"
  )
  assert meta["left_out"] == {"blank": ["letter a"], "split": ["rocket face"]}
  assert emoji.load(str(tmp_path / "out"), "all").names == ("grinning face",)


def test_held_out_split_holds_out_whole_bases(built, full):
  train, test = (emoji.load(built[0], s) for s in ("train", "test"))
  assert not set(train.emoji) & set(test.emoji) and sorted(train.emoji + test.emoji) == sorted(full.emoji)
  assert not set(train.bases) & set(test.bases)
  assert abs(len(set(test.bases)) / len(set(full.bases)) - 0.2) < 0.03
  assert train.group_names == test.group_names == full.group_names
  assert train.subgroup_names == test.subgroup_names == full.subgroup_names
  i, j = full.names.index(test.names[0]), full.names.index(train.names[-1])
  assert test.groups[0] == full.groups[i] and train.subgroups[-1] == full.subgroups[j]
  np.testing.assert_array_equal(test.images[0], full.images[i])
  other = emoji.load(built[0], "test", seed=1)
  assert set(other.bases) != set(test.bases)
  half = emoji.load(built[0], "test", heldout_fraction=0.5)
  assert set(test.bases) < set(half.bases)  # a larger fraction holds out more, the same bases among them
  assert len(emoji.load(built[0], "test", heldout_fraction=0.0)) == 0


def test_split_depends_on_base_names_alone(built, full, tmp_path):
  # Another size, another file order, three groups: every base they share is on the same side.
  _write_subset(tmp_path / "emoji-test.txt", ["Flags", "Animals & Nature", "Smileys & Emotion"])
  emoji.build(str(tmp_path / "small"), size=16, emoji_test=str(tmp_path / "emoji-test.txt"))
  small_test = emoji.load(str(tmp_path / "small"), "test")
  full_test = emoji.load(built[0], "test")
  small_bases = set(emoji.load(str(tmp_path / "small"), "all").bases)
  assert small_test.images.shape[1:] == (16, 16, 3)
  assert set(small_test.bases) == set(full_test.bases) & small_bases
  assert emoji.load(str(tmp_path / "small"), "all").group_names == ("Flags", "Animals & Nature", "Smileys & Emotion")


def test_resize(built):
  test = emoji.load(built[0], "test")
  half = emoji.load(built[0], "test", image_size=32)
  block_means = test.images.reshape(-1, 32, 2, 32, 2, 3).mean(axis=(2, 4))
  assert half.images.shape == (len(test), 32, 32, 3) and np.abs(half.images - block_means).max() <= 1
  odd = emoji.load(built[0], "test", image_size=48)
  assert odd.images.shape[1:] == (48, 48, 3) and odd.images.dtype == np.uint8
  ink = (odd.images < 250).any(axis=-1).mean(axis=(1, 2))
  assert ink.min() > 0.03
  np.testing.assert_array_equal(emoji.load(built[0], "test", image_size=64).images, test.images)


def _raises(match, fn, *args, **kwargs):
  with pytest.raises(DataError, match=match) as e:
    fn(*args, **kwargs)
  assert "\n" not in str(e.value)
  return str(e.value)


def test_build_errors_name_the_file_and_the_package(tmp_path):
  out = str(tmp_path / "out")
  missing = str(tmp_path / "missing.ttf")
  assert "fonts-noto-color-emoji" in _raises(re.escape(missing), emoji.build, out, font=missing)
  _raises(re.escape(missing) + ".*unicode-data", emoji.build, out, emoji_test=missing)
  _raises(re.escape(missing) + ".*unicode-cldr-core", emoji.build, out, annotations=(missing,))
  (tmp_path / "not-emoji.txt").write_text("hello\n")
  _raises("not-emoji.txt: no fully-qualified emoji", emoji.build, out, emoji_test=str(tmp_path / "not-emoji.txt"))
  _raises("not-emoji.txt: cannot be loaded", emoji.build, out, font=str(tmp_path / "not-emoji.txt"))
  (tmp_path / "bad.xml").write_text("<ldml><annotations>")
  _raises("bad.xml: not valid XML", emoji.build, out, annotations=(str(tmp_path / "bad.xml"),))
  assert not os.path.exists(out)


def test_load_errors_name_the_path(built, tmp_path):
  _raises("emoji split 'val'", emoji.load, built[0], "val")
  _raises(
    re.escape(str(tmp_path / "nowhere")) + ": no such directory.*--out", emoji.load, str(tmp_path / "nowhere"), "all"
  )
  for name in (emoji.IMAGES_FILE, emoji.META_FILE):
    copy = tmp_path / f"without-{name}"
    shutil.copytree(built[0], copy)
    os.remove(copy / name)
    _raises(re.escape(str(copy / name)) + ": no such file", emoji.load, str(copy), "train")
  # Metadata from another build: with the same count (caught by the build id), or another count.
  small, again = tmp_path / "small", tmp_path / "again"
  _write_subset(tmp_path / "emoji-test.txt", ["Flags"])
  for out in (small, again):
    emoji.build(str(out), size=8, emoji_test=str(tmp_path / "emoji-test.txt"))
  assert len(emoji.load(str(small), "all")) > 250
  shutil.copy(again / emoji.META_FILE, small / emoji.META_FILE)
  _raises(re.escape(str(small)) + ": emoji.npz .* not from the same build", emoji.load, str(small), "all")
  shutil.copy(os.path.join(built[0], emoji.META_FILE), small / emoji.META_FILE)
  _raises(r"\(\d+ images\) and emoji.json \(3\d{3} emoji\) are not from the same build", emoji.load, str(small), "all")
  (small / emoji.META_FILE).write_text("{")
  _raises(re.escape(str(small / emoji.META_FILE)) + ": not an emoji.json", emoji.load, str(small), "all")
  _raises("heldout_fraction must lie in", emoji.load, built[0], "test", heldout_fraction=1.5)
