"""Which runtime an op runs on.

Names:

* ``auto`` (default): CuPy arrays run the CUDA kernels on the GPU, NumPy arrays run the
  NumPy reference.
* ``cuda``: the CUDA kernels on the GPU, whatever the inputs; NumPy inputs are copied to the
  device and the result is copied back.
* ``emulator``: the very same CUDA kernels on the CPU runtime (no GPU needed); CuPy inputs
  are copied to the host and the result is copied back.
* ``numpy``: the NumPy reference.

The result always has the array type of the inputs. Choose with ``gpuconv.use_backend(name)``
(a context manager, local to the thread or task) or the environment variable
``GPUCONV_BACKEND``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

BACKENDS = ("auto", "cuda", "emulator", "numpy")
ENV_VAR = "GPUCONV_BACKEND"

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("gpuconv_backend",
                                                                     default=None)


def _checked(name, source: str) -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS}, got {name!r}")
    return name


def current_backend() -> str:
    """The backend name in force: the innermost ``use_backend``, else $GPUCONV_BACKEND, else auto."""
    name = _current.get()
    if name is not None:
        return name
    return _checked(os.environ.get(ENV_VAR, "auto") or "auto", f"${ENV_VAR}")


@contextlib.contextmanager
def use_backend(name: str):
    """Run the ops inside the ``with`` block on backend ``name`` (see the module docstring).

    >>> import numpy as np, gpuconv
    >>> x = np.ones((1, 1, 4, 4), np.float32); w = np.ones((1, 1, 3, 3), np.float32)
    >>> with gpuconv.use_backend("numpy"):
    ...     gpuconv.conv2d(x, w).shape
    (1, 1, 2, 2)
    """
    token = _current.set(_checked(name, "backend name"))
    try:
        yield name
    finally:
        _current.reset(token)


def resolve(on_gpu_arrays: bool) -> str:
    """The runtime that will compute: 'numpy', 'emulator' or 'cuda'."""
    name = current_backend()
    if name == "auto":
        return "cuda" if on_gpu_arrays else "numpy"
    return name
