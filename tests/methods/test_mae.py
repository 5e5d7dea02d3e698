"""MAE as a method: learning on real images, the reconstruction picture, bad input."""

import os

import jax
import jax.numpy as jnp
import launcher
import numpy as np
import pytest

from ssljax import losses
from ssljax.config import ConfigError
from ssljax.data import images
from ssljax.methods import mae


def test_the_step_learns_to_fill_hidden_patches(train_steps, config_of):
  """On held-out images and a fixed mask, the trained model beats filling every hidden pixel with the mean of
  the image's visible pixels (pixel targets: norm_pix targets need far longer than a test to leave zero)."""
  overrides = {"mae.norm_pix": False, "optim.learning_rate": 3e-3}
  _, params = train_steps("configs/mae.py:tiny", 60, batch_size=64, **overrides)
  config = config_of("configs/mae.py:tiny")
  config.mae.norm_pix = False
  x = mae.eval_view(jnp.asarray(images.load_split(config.data, "test", 256).images), config)
  out = mae.reconstruct(params, x, jax.random.PRNGKey(7), config)
  visible = 1.0 - out["mask"][..., None]
  visible_mean = (out["target"] * visible).sum((1, 2)) / (visible.sum((1, 2)) * out["target"].shape[-1])
  fill = jnp.broadcast_to(visible_mean[:, None, None], out["target"].shape)
  baseline = float(losses.mae_recon(fill, out["target"], out["mask"], norm_pix=False))
  assert float(out["loss"]) < 0.8 * baseline


def test_reconstruction_picture_keeps_visible_patches_and_greys_hidden_ones(config_of):
  config = config_of("configs/mae.py:tiny")
  split = images.load_split(config.data, "test", 4)
  params, _ = mae.init(config, jax.random.PRNGKey(0), {"image": split.images})
  out = mae.reconstruction_images(params, split.images, config)
  assert set(out) == {"original", "masked", "reconstruction"}
  np.testing.assert_allclose(out["original"], split.images / 255.0, atol=1e-5)
  p = config.mae.patch_size
  hidden = np.abs(out["masked"] - 0.5).reshape(4, 28 // p, p, 28 // p, p).max(axis=(2, 4)) == 0
  assert 0.6 < hidden.mean() <= 0.8  # 75% hidden (blank patches of the original may also read as grey)
  visible = np.repeat(np.repeat(~hidden, p, 1), p, 2)[..., None]
  np.testing.assert_allclose(
    np.where(visible, out["reconstruction"], 0), np.where(visible, out["original"], 0), atol=1e-5
  )


@pytest.mark.parametrize(
  "override, message",
  [
    ("mae.mask_ratio=1.0", "mae.mask_ratio=1.0 must be in (0, 1)"),
    ("mae.patch_size=5", "data.image_size=28 is not divisible by mae.patch_size=5"),
  ],
)
def test_bad_geometry_is_one_line_and_writes_nothing(tmp_path, override, message):
  rc, out, err = launcher.run_main("configs/mae.py:tiny", tmp_path / "w", override)
  assert rc == 2 and err.strip() == f"error: {message}"
  assert not (tmp_path / "w").exists()  # refused before anything is written


def test_check_config_names_the_value(config_of):
  config = config_of("configs/mae.py:tiny")
  config.mae.mask_ratio = 0.0
  with pytest.raises(ConfigError, match=r"mae.mask_ratio=0.0 must be in \(0, 1\)"):
    mae.check_config(config)


# ----------------------------------------------------------------------------------------
# End to end on the tiny preset.

TINY = "configs/mae.py:tiny"
RUN = ()

tiny_run, test_evals_are_the_same_on_one_device, test_resumes_exactly_after_sigkill = launcher.end_to_end(
  TINY, *RUN, kill_at=2
)


def test_tiny_run_reports_probes_beside_random_init_and_fine_tunes_the_vit(tiny_run):
  workdir, out = tiny_run
  results = launcher.read_json(os.path.join(workdir, "eval.json"))
  launcher.assert_suite_read_both_encoders(results, ("knn/top1", "linear/top1", "linear_10pct/top1"))
  for prefix in ("", "baseline/random_init/"):  # 3 fine-tuning steps of the ViT: reported, not yet a measurement
    for name in ("finetune/top1", "finetune_10pct/top1"):
      assert 0.0 <= results[prefix + name] <= 1.0, prefix + name
