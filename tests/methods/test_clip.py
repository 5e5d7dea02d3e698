"""CLIP on real image-text pairs: captions and tokens, the draw of a caption per step, learning on the emoji,
refusals, the TFRecord input, and a run through the engine (same evals on one device, exact resume)."""

import os

import jax
import jax.numpy as jnp
import launcher
import numpy as np
import pytest

from ssljax import config as config_lib
from ssljax.data import pairs, wordpiece
from ssljax.methods import clip

TINY = "configs/clip.py:tiny"


def _config(preset: str):
  config = config_lib.load_config_file(os.path.join(launcher.ROOT, f"configs/clip.py:{preset}"))
  config.unlock()
  return config


def test_emoji_captions_are_the_name_the_short_name_and_the_keywords():
  got = pairs.emoji_captions("thumbs up: medium skin tone", "thumbs up: medium skin tone", ("+1", "hand", "up"))
  assert got == ("thumbs up: medium skin tone", "+1, hand, up", "thumbs up: medium skin tone: +1, hand, up")
  assert pairs.emoji_captions("pink heart", "pink heart", ()) == ("pink heart",)


def test_zero_shot_prompts_are_never_a_training_caption_form():
  for preset in ("cpu", "fashion"):
    templates = set(_config(preset).evals.zero_shot_templates)
    assert not templates & set(pairs.FASHION_TEMPLATES)
    # No prompt is a bare class name, the form of an emoji name caption.
    assert all(t.strip() != "{}" for t in templates)


def test_captions_are_tokens_between_cls_and_sep_cut_to_fit():
  tok = wordpiece.train(["grinning face", "red heart", "thumbs up"] * 5, vocab_size=60, lowercase=True)
  rows = clip.tokenize(tok, ["red heart", "grinning face thumbs up red heart"], 5)
  assert rows[0].tolist() == [tok.cls_id, *tok.encode("red heart").tolist(), tok.sep_id, 0]
  assert rows[1, 0] == tok.cls_id and rows[1, -1] == tok.sep_id  # cut to 3 pieces, then [SEP]


def test_each_step_draws_one_of_an_images_real_captions():
  tokens = jnp.arange(2 * 4 * 3).reshape(2, 4, 3)
  num = jnp.array([1, 3])
  seen = {0: set(), 1: set()}
  for s in range(60):
    picked = clip.pick_captions(tokens, num, jax.random.PRNGKey(s))
    for b in range(2):
      seen[b].add(int(picked[b, 0]) // 3 - 4 * b)
  assert seen == {0: {0}, 1: {0, 1, 2}}


def test_the_step_learns_to_match_emoji_and_their_captions(train_steps, tmp_path):
  load = lambda config: clip.load_train_data(config, workdir=str(tmp_path))
  history, _ = train_steps(TINY, 60, data=load, **{"optim.learning_rate": 3e-3})
  # Chance: an image picks its caption among 32.
  assert np.mean([h["accuracy"] for h in history[-10:]]) > 0.09, history[-1]  # measured 0.14
  assert np.mean([h["loss"] for h in history[-10:]]) < np.mean([h["loss"] for h in history[:3]]) - 0.5


def _write_records(path, captions):
  import tensorflow as tf

  rng = np.random.default_rng(0)
  with tf.io.TFRecordWriter(str(path)) as w:
    for texts in captions:
      image = tf.io.encode_jpeg(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).numpy()
      feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "caption": tf.train.Feature(bytes_list=tf.train.BytesList(value=[t.encode() for t in texts])),
      }
      w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def test_tfrecords_of_jpeg_and_captions_are_read_at_the_image_size(tmp_path):
  _write_records(tmp_path / "train.tfrecord", [["a cat"], ["a dog", "a brown dog"], ["a bird"]])
  config = _config("tiny")
  config.data.name, config.data.path = "tfrecord", str(tmp_path / "*.tfrecord")
  got = pairs.load(config.data, "train")
  assert got.images.shape == (3, 16, 16, 3) and got.images.dtype == np.uint8
  assert got.captions == (("a cat",), ("a dog", "a brown dog"), ("a bird",)) and got.labels == {}


def test_an_empty_caption_is_refused_in_one_line_before_anything_is_written(tmp_path):
  _write_records(tmp_path / "train.tfrecord", [["a cat"], ["  "], ["a bird"]])
  rc, _, err = launcher.run_main(
    TINY,
    tmp_path / "w",
    "data.name=tfrecord",
    f"data.path={tmp_path / 'train.tfrecord'}",
    f"data.eval_path={tmp_path / 'train.tfrecord'}",
  )
  assert rc == 2 and err.strip().splitlines() == [
    "error: data.name='tfrecord' split 'train': image 1 has an empty caption (['  '])"
  ], err
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
  "override, message",
  [
    ("clip.text_heads=3", "clip.text_width=16 is not divisible by clip.text_heads=3"),
    ("data.max_caption_tokens=2", "data.max_caption_tokens=2 leaves no room between [CLS] and [SEP]"),
    (
      "evals.zero_shot_templates=('a photo',)",
      "evals.zero_shot_templates: 'a photo' must hold exactly one '{}' for the class name",
    ),
  ],
)
def test_refuses_a_bad_clip_config_in_one_line(tmp_path, override, message):
  rc, _, err = launcher.run_main(TINY, tmp_path / "w", override)
  assert (
    rc == 2
    and err.strip().splitlines() == [f"error: {message} for the class name"]
    or err.strip().splitlines() == [f"error: {message}"]
  ), err
  assert not (tmp_path / "w").exists()


tiny_run, test_evals_are_the_same_on_one_device, test_resumes_exactly_after_sigkill = launcher.end_to_end(
  TINY, kill_at=2, evals_off=("evals.baselines=()", "evals.label_fractions=()"), copy=("tokenizer",)
)


def test_tiny_run_reports_zero_shot_retrieval_and_probes_beside_random_init(tiny_run):
  results = launcher.read_json(os.path.join(tiny_run[0], "eval.json"))
  names = ["zero_shot/top1", "zero_shot/group/top1", "zero_shot/subgroup/top1", "knn/top1", "linear/top1"]
  names += [f"retrieval/{d}_r@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)]
  for prefix in ("", "baseline/random_init/"):
    for name in names:
      assert 0.0 <= results[prefix + name] <= 1.0, prefix + name
  assert results["chance/zero_shot/group/top1"] == pytest.approx(1 / 9)
  assert os.path.isdir(os.path.join(tiny_run[0], "tokenizer"))
