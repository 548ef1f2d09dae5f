"""gpuconv: readable, deterministic hand-written CUDA C kernels for conv2d and max-pool.

Public API (PyTorch semantics, on NumPy and CuPy arrays)::

    gpuconv.conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1)
    gpuconv.max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1,
                       ceil_mode=False, return_indices=False)
    gpuconv.grad.conv2d_input / conv2d_weight / conv2d_bias / max_pool2d_input
    gpuconv.use_backend(name)   # 'auto', 'cuda', 'emulator', 'numpy'; env GPUCONV_BACKEND
"""

from . import grad
from .backend import current_backend, use_backend
from .functional import conv2d, max_pool2d

__version__ = "0.1.0"

__all__ = ["conv2d", "max_pool2d", "grad", "use_backend", "current_backend", "__version__"]
