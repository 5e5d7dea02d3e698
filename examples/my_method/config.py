"""python /path/to/ssljax/launch/run.py --config config.py --workdir workdirs/upside_down (from this directory)"""

import vision_base  # ssljax's configs/: importable from any config file


def get_config(arg=None):
  c = vision_base.base("mymethods.upside_down", arg or "cpu")  # data, encoder, optimizer, evals
  return c
