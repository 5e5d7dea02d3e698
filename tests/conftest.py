"""Test-wide setup: eight fake CPU devices, so mesh code runs as it would on a pod slice."""

import os
import tempfile

# Must precede the first `import jax` anywhere in the test session.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One compilation cache for this test session and the runs it launches as subprocesses: the same
# program compiled once, not once per process. A fresh directory each session, so nothing stale is read.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="ssljax-test-xla-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
