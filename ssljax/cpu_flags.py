"""XLA:CPU flags that make a laptop CPU a fair default, set in XLA_FLAGS before jax starts its CPU backend.

`import ssljax` (any of its modules) calls `apply()`. It adds each flag only where all of these hold:
- jax has not started a backend yet (XLA reads XLA_FLAGS once, when the first backend starts);
- the CPU is the backend jax will use: JAX_PLATFORMS names cpu first, or is unset and no GPU/TPU plugin is
  installed, so an accelerator host is left exactly as it was;
- the installed jaxlib knows the flag (an unknown flag in XLA_FLAGS aborts the process), found by its name in
  jaxlib's shared library;
- XLA_FLAGS does not set it already (the user's value wins), and SSLJAX_CPU_FLAGS is not 0.

Why each flag: beside it in FLAGS, measured on this repo's 2-core x86 CPU with jaxlib 0.10.2.
"""

from __future__ import annotations

import glob
import importlib.util
import mmap
import os
import sys
import warnings

# (flag, value).
FLAGS = (
  # jaxlib 0.10.2 hands every convolution to YNNPACK, whose kernel gradients ran 4-7x slower than PyTorch's
  # in ResNet-18's 32x32 and 16x16 stages. Without it (the other YNNPACK fusions, dots among them, stay):
  # ResNet-18 CIFAR step at batch 32, 7.73 -> 2.13 s (2.68 s with every YNNPACK fusion off); SimCLR `cpu`
  # step with XLA's conv 1168 -> 499 ms (530 ms with every fusion off). Losses within float32 rounding.
  ("xla_cpu_experimental_ynn_fusion_type", "-individual_convolution"),
)

_ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm6_plugin", "jax_rocm7_plugin", "libtpu")


def _cpu_is_the_backend() -> bool:
  platforms = os.environ.get("JAX_PLATFORMS") or os.environ.get("JAX_PLATFORM_NAME") or ""
  if platforms:
    return platforms.split(",")[0].strip().lower() == "cpu"
  if any(importlib.util.find_spec(name) is not None for name in _ACCELERATOR_PLUGINS):
    return False
  plugins = importlib.util.find_spec("jax_plugins")  # where jax's own GPU/TPU plugins install themselves
  return plugins is None or not any(os.listdir(p) for p in plugins.submodule_search_locations or ())


def _jaxlib_libraries() -> list[str]:
  spec = importlib.util.find_spec("jaxlib")
  if spec is None or not spec.submodule_search_locations:
    return []
  paths = []
  for directory in spec.submodule_search_locations:
    paths += glob.glob(os.path.join(directory, "*.so")) + glob.glob(os.path.join(directory, "*.dylib"))
  return [p for p in paths if os.path.getsize(p) > 10 << 20]  # the XLA library, not the small stubs


def jaxlib_knows(flag: str) -> bool:
  """Whether the installed jaxlib defines `flag`: XLA registers every flag by its name, which the library
  holds as a string; a jaxlib without it would abort on it."""
  needle = flag.encode()
  for path in _jaxlib_libraries():
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
      if m.find(needle) >= 0:
        return True
  return False


def _backend_started() -> bool:
  if "jax" not in sys.modules:
    return False
  try:
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):  # a jax without this check: assume the worst, add nothing
    return True


def apply() -> list[str]:
  """Adds FLAGS to XLA_FLAGS where they apply (see the module docstring); returns the flags it added."""
  if os.environ.get("SSLJAX_CPU_FLAGS", "1") == "0" or not _cpu_is_the_backend():
    return []
  current = os.environ.get("XLA_FLAGS", "")
  wanted = [f"--{name}={value}" for name, value in FLAGS if f"--{name}=" not in current and jaxlib_knows(name)]
  if not wanted:
    return []
  if _backend_started():
    warnings.warn(
      f"jax started its backend before ssljax was imported, so ssljax's CPU flags ({' '.join(wanted)}) "
      "are not set and convolutions train slower: import ssljax first, or put them in XLA_FLAGS",
      stacklevel=3,
    )
    return []
  os.environ["XLA_FLAGS"] = " ".join([current, *wanted]).strip()
  return wanted
