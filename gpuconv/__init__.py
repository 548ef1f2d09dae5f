"""gpuconv: readable, deterministic hand-written CUDA C kernels for conv2d and max-pool.

Public API (PyTorch semantics, on NumPy and CuPy arrays)::

    gpuconv.conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1)
    gpuconv.max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1,
                       ceil_mode=False, return_indices=False)
    gpuconv.grad.conv2d_input / conv2d_weight / conv2d_bias / max_pool2d_input
    gpuconv.use_backend(name)   # 'auto', 'cuda', 'emulator', 'numpy'; env GPUCONV_BACKEND
    gpuconv.allow_tf32()        # float32 convolutions may use TF32 tensor cores; env GPUCONV_ALLOW_TF32
"""

from . import grad
from .backend import current_backend, use_backend
from .functional import conv2d, max_pool2d
from .kernels import allow_tf32

__version__ = "0.1.0"

__all__ = ["conv2d", "max_pool2d", "grad", "use_backend", "current_backend", "allow_tf32",
           "__version__"]

# average and Lp-norm pooling, separable convolution (seed 002 §9.3, §9.8); gradients in
# gpuconv.grad
from .functional import avg_pool2d, lp_pool2d, separable_conv2d, separable_factors  # noqa: E402

__all__ += ["avg_pool2d", "lp_pool2d", "separable_conv2d", "separable_factors"]

# conv1d (conv2d with H = 1) and conv_transpose2d (the conv2d dgrad kernel run forward)
from .functional import conv1d, conv_transpose2d  # noqa: E402

__all__ += ["conv1d", "conv_transpose2d"]

# conv3d: volumes and video (input D, filter T, output O); gradients in gpuconv.grad
from .functional import conv3d  # noqa: E402

__all__ += ["conv3d"]

# locally connected (unshared) and tiled convolution (seed 002 §9.5); gradients in gpuconv.grad
from .functional import local_conv2d, tiled_conv2d  # noqa: E402

__all__ += ["local_conv2d", "tiled_conv2d"]
