"""ssljax: self-supervised learning in JAX/Flax.

Importing it sets XLA:CPU flags before jax starts a backend, where they apply (see ssljax/cpu_flags.py): import
ssljax before the first jax computation of a notebook.
"""

from ssljax import cpu_flags as _cpu_flags

_cpu_flags.apply()


def __getattr__(name):
  # `ssljax.load` without importing jax at `import ssljax`: the CPU flags above must come first.
  if name == "load":
    from ssljax.runs import load

    return load
  raise AttributeError(f"module 'ssljax' has no attribute {name!r}")
