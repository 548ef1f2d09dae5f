"""The floating dtypes gpuconv computes in, in one place.

* float16, float32, float64: NumPy's own.
* bfloat16: ``ml_dtypes.bfloat16`` (NumPy has no bfloat16; CuPy 14 and JAX use the same
  ml_dtypes type, and PyTorch's ``torch.bfloat16`` tensors convert to it). 8 exponent bits
  like float32, 8 significant bits: float32's range at a quarter of float16's precision.

The two 16-bit types are storage formats: the kernels convert each element to float, sum in
float and round to the 16-bit type once per output element (cuda/common.cuh: accumulator);
the NumPy reference sums in float64.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

bfloat16 = np.dtype(ml_dtypes.bfloat16)

# Every dtype the public functions accept, narrowest first.
FLOAT_DTYPES = (np.dtype(np.float16), bfloat16, np.dtype(np.float32), np.dtype(np.float64))
NAMES = tuple(d.name for d in FLOAT_DTYPES)  # 'float16', 'bfloat16', 'float32', 'float64'

# The C++ type each dtype's kernel instances are built for (cuda/common.cuh, cuda_cpu.h).
CUDA_TYPES = {
    np.dtype(np.float16): "__half",
    bfloat16: "__nv_bfloat16",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}

SIXTEEN_BIT = (np.dtype(np.float16), bfloat16)


def by_name(name: str) -> np.dtype:
    """The dtype called ``name`` ('float16', 'bfloat16', 'float32', 'float64')."""
    for dtype in FLOAT_DTYPES:
        if dtype.name == name:
            return dtype
    raise ValueError(f"dtype must be one of {NAMES}, got {name!r}")


def compute_dtype(dtype) -> np.dtype:
    """The type elementwise math on ``dtype`` runs in outside the kernels: float32 for the
    16-bit types (rounded back after each step, like PyTorch's half arithmetic)."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype in SIXTEEN_BIT else dtype


def eps(dtype) -> float:
    """Machine epsilon of ``dtype`` (NumPy's finfo does not know bfloat16; ml_dtypes' does)."""
    return float(ml_dtypes.finfo(np.dtype(dtype)).eps)
