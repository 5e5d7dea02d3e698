import json

import pytest

from ssljax import config as config_lib

CPU = "configs/simclr.py:cpu"


def test_presets_load_locked():
  for preset in ("cpu", "tiny", "cifar10", "imagenet"):
    c = config_lib.get_config(f"configs/simclr.py:{preset}")
    assert c.method == "simclr"
    with pytest.raises(AttributeError):
      c.no_such_key = 1


def test_overrides_are_typed():
  c = config_lib.get_config(
    CPU,
    ["optim.learning_rate=1", "batch_size=64", "augment.flip=false", "augment.crop_scale=(0.5, 1.0)", "data.path=/x"],
  )
  assert c.optim.learning_rate == 1.0 and isinstance(c.optim.learning_rate, float)
  assert c.batch_size == 64 and c.augment.flip is False
  assert c.augment.crop_scale == (0.5, 1.0) and c.data.path == "/x"


@pytest.mark.parametrize(
  "override, words",
  [
    ("optim.learning_rat=0.1", "unknown config key 'optim.learning_rat'"),
    ("optimm.lr=0.1", "unknown config key 'optimm'"),
    ("batch_size=big", "expected a int"),
    ("augment.flip=maybe", "expected true or false"),
    ("optim=3", "is a group of keys"),
  ],
)
def test_bad_overrides_name_the_key(override, words):
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.get_config(CPU, [override])
  assert words in str(e.value) and "\n" not in str(e.value)


def test_unknown_preset_and_missing_file():
  with pytest.raises(config_lib.ConfigError, match="unknown preset 'gpu'"):
    config_lib.get_config("configs/simclr.py:gpu")
  with pytest.raises(config_lib.ConfigError, match="config file not found: nope.py"):
    config_lib.get_config("nope.py:cpu")


def test_fingerprint_ignores_cadence_but_not_training():
  base = config_lib.get_config(CPU)
  same = config_lib.get_config(CPU, ["log_every=7", "checkpoint_every=9", "evals.plots=false"])
  other = config_lib.get_config(CPU, ["seed=1"])
  assert config_lib.fingerprint(base) == config_lib.fingerprint(same)
  assert config_lib.fingerprint(base) != config_lib.fingerprint(other)
  # A config read back from config.json fingerprints like the live one.
  assert config_lib.fingerprint(json.loads(json.dumps(config_lib.to_dict(base)))) == config_lib.fingerprint(base)
  assert config_lib.config_diff(config_lib.to_dict(base), config_lib.to_dict(other)) == ["seed"]
