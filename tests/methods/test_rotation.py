"""Rotation prediction: the four rotations, learning on real images, and a full run through the eval suite."""

import os

import jax.numpy as jnp
import launcher
import numpy as np

from ssljax.methods import rotation


def test_every_image_appears_at_all_four_rotations_with_its_label():
  images = np.random.default_rng(0).random((3, 5, 5, 2)).astype(np.float32)
  rotated, labels = rotation.rotate_all(jnp.asarray(images))
  assert rotated.shape == (12, 5, 5, 2)
  for k in range(4):
    np.testing.assert_array_equal(np.asarray(rotated[3 * k : 3 * (k + 1)]), np.rot90(images, k, axes=(1, 2)))
    assert (np.asarray(labels[3 * k : 3 * (k + 1)]) == k).all()


def test_the_step_learns_to_tell_rotations_apart(train_steps):
  history, _ = train_steps("configs/rotation.py:tiny", 40, batch_size=64, **{"optim.learning_rate": 1e-2})
  assert np.mean([h["rotation_accuracy"] for h in history[-5:]]) > 0.4  # chance: 0.25
  assert np.mean([h["loss"] for h in history[-5:]]) < 0.8 * history[0]["loss"]


TINY = "configs/rotation.py:tiny"

tiny_run, test_evals_are_the_same_on_one_device, test_resumes_exactly_after_sigkill = launcher.end_to_end(
  TINY, kill_at=2
)


def test_tiny_run_reports_probes_and_finetuning_beside_random_init(tiny_run):
  results = launcher.read_json(os.path.join(tiny_run[0], "eval.json"))
  launcher.assert_suite_read_both_encoders(results, ("knn/top1", "linear/top1", "linear_10pct/top1"))
  for prefix in ("", "baseline/random_init/"):  # 3 fine-tuning steps: reported, not yet a measurement
    for name in ("finetune/top1", "finetune_10pct/top1"):
      assert 0.0 <= results[prefix + name] <= 1.0, prefix + name
