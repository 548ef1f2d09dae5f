"""Where kernels run: one interface, two implementations.

``get_runtime('cuda')`` compiles ``cuda/*.cu`` with NVRTC through CuPy and launches on the
GPU (:mod:`gpuconv.runtime.cupy_rt`); ``get_runtime('emulator')`` builds the very same files
with g++ against ``cuda_cpu.h`` and runs them on the CPU (:mod:`gpuconv.runtime.cpu_rt`).

A :class:`Runtime` has ``name``, ``xp`` (the array module: ``cupy`` or ``numpy``) and
``function(source_name, name_expression)``, which returns a kernel launched as
``kernel(grid, block, args)``. Each source file is compiled once per runtime (and per device
on the GPU) with every name expression :mod:`gpuconv.kernels` declares for it, so the first
op of a kind pays the compile and the other dtypes come free. :mod:`gpuconv.kernels` computes
grid, block and scalar arguments the same way for both runtimes.
"""

from __future__ import annotations

import functools
import threading

RUNTIMES = ("cuda", "emulator")


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device; never raises."""
    try:
        import cupy

        return bool(cupy.cuda.is_available())
    except Exception:
        return False


class Runtime:
    """Compile-once, launch-many access to the kernels of ``cuda/*.cu`` on one runtime."""

    def __init__(self, name: str, xp, build_module, cache_key=lambda: None,
                 grouped: bool = False):
        self.name = name
        self.xp = xp
        self._build_module = build_module   # (source_name, code, name_expressions) -> module
        self._cache_key = cache_key         # () -> what else the cache depends on (device id)
        self._grouped = grouped             # modules per kernels.module_group, not per file
        self._functions: dict = {}
        self._lock = threading.Lock()

    def name_expressions(self, source_name: str, name_expression: str | None = None):
        """The instances built into one module with ``name_expression``: every instance
        kernels.py declares for the file, or (``grouped``) those of its kernels.module_group;
        plus ``name_expression`` itself."""
        from .. import kernels

        expressions = list(kernels.module_group(source_name, name_expression)
                           if self._grouped and name_expression is not None
                           else kernels.name_expressions(source_name))
        if name_expression is not None and name_expression not in expressions:
            expressions.append(name_expression)  # an instance kernels.py does not list
        return tuple(expressions)

    def function(self, source_name: str, name_expression: str):
        """The kernel ``name_expression`` (e.g. ``'conv2d_fprop_v1_direct<float>'``) of a file."""
        key = (self._cache_key(), source_name, name_expression)
        kernel = self._functions.get(key)
        if kernel is None:
            from ..sources import source_text

            expressions = self.name_expressions(source_name, name_expression)
            module = self._build_module(source_name, source_text(source_name), expressions)
            kernel = module.get_function(name_expression)
            with self._lock:
                self._functions[key] = kernel
        return kernel

    def __repr__(self) -> str:
        return f"<gpuconv runtime {self.name!r}>"


def _cuda_runtime() -> Runtime:
    import cupy

    from . import cupy_rt

    return Runtime("cuda", cupy, cupy_rt.module, cache_key=lambda: cupy.cuda.Device().id,
                   grouped=True)


def _emulator_runtime() -> Runtime:
    import numpy

    from . import cpu_rt

    modules: dict = {}
    lock = threading.Lock()

    def build(source_name, code, name_expressions):
        key = (source_name, name_expressions)
        with lock:
            module = modules.get(key)
            if module is None:
                module = cpu_rt.RawModule(code, name_expressions=name_expressions)
                modules[key] = module
        return module

    return Runtime("emulator", numpy, build)


@functools.lru_cache(maxsize=None)
def get_runtime(name: str) -> Runtime:
    """The cached runtime ``'cuda'`` (CuPy, GPU) or ``'emulator'`` (CPU runtime)."""
    if name == "cuda":
        if not cuda_available():
            raise RuntimeError("the 'cuda' runtime needs CuPy and a visible CUDA device; "
                               "use the 'emulator' runtime (gpuconv.use_backend('emulator')) "
                               "to run the kernels on the CPU")
        return _cuda_runtime()
    if name == "emulator":
        return _emulator_runtime()
    raise ValueError(f"runtime name must be one of {RUNTIMES}, got {name!r}")
