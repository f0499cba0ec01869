"""Test session set-up: 8 CPU devices for every in-process test (set before any JAX call), and a
persistent XLA compilation cache shared by this session's tests and their subprocesses (many tests
compile the same small train step; the cache is fresh per session, so nothing stale is reused)."""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="jax_test_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_platforms", "cpu")
