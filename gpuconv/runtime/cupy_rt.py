"""GPU runtime: the ``cuda/*.cu`` files compiled by NVRTC through ``cupy.RawModule``.

One module per source file and device, compiled once with every name expression
:mod:`gpuconv.kernels` declares for that file (``conv2d_fprop_v1_direct<float>``, ...), and
cached. Kernels launch on CuPy's current stream (``RawKernel``'s default), so they order
correctly with the caller's other CuPy work.

CuPy is imported lazily: importing gpuconv never needs it.

Note: CuPy appends ``-ftz=true`` to every ``RawModule`` compile, so float32 denormals flush
to zero on the GPU (the CPU runtime keeps them); the tolerances in :mod:`gpuconv.checking`
absorb the difference.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_modules: dict = {}  # (device id, source name, name expressions) -> cupy.RawModule


def _cupy():
    import cupy
    return cupy


def arch_option(compute_capability: str) -> str:
    """``-arch=sm_XY`` for a device's compute capability ('80' -> '-arch=sm_80'); '90' ->
    ``-arch=sm_90a``, whose arch-specific features (wgmma) the v5 kernels use (a binary for
    sm_90a runs on compute capability 9.0 only, which is the device it is built for).

    NVRTC can only target architectures it knows; for a device newer than the NVRTC library
    this asks for the newest one NVRTC supports, never with the 'a' features. Whether that
    binary loads there depends on the step (a cubin does not run on a newer major
    architecture; PTX is JIT-compiled for it): not verified on such a device.
    """
    from cupy.cuda import nvrtc

    arch = int(compute_capability)
    try:
        supported = [a for a in nvrtc.getSupportedArchs() if a <= arch]
    except Exception:  # an NVRTC without nvrtcGetSupportedArchs: trust the device
        supported = []
    device = arch
    if supported:
        arch = max(supported)
    return f"-arch=sm_{arch}a" if arch == device == 90 else f"-arch=sm_{arch}"


def compile_options(compute_capability: str) -> tuple[str, ...]:
    """The NVRTC options every gpuconv module is compiled with for one device."""
    return ("-std=c++17", arch_option(compute_capability))


def module(source_name: str, code: str, name_expressions) -> object:
    """The compiled ``cupy.RawModule`` of one source on the current device (cached)."""
    cupy = _cupy()
    device = cupy.cuda.Device()
    key = (device.id, source_name, tuple(name_expressions))
    with _lock:
        mod = _modules.get(key)
        if mod is None:
            mod = cupy.RawModule(code=code, options=compile_options(device.compute_capability),
                                 name_expressions=list(name_expressions))
            mod.compile()  # compile now, inside the lock, and surface errors here
            _modules[key] = mod
    return mod
