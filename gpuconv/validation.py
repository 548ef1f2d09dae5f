"""Checks on the arrays handed to the public functions (sizes are checked in geometry.py).

Every check runs before any allocation or launch and raises TypeError (wrong kind of
object, dtype or array library) or ValueError (wrong rank, shape, device or values), naming
the argument.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from .dtypes import FLOAT_DTYPES, NAMES
INDEX_DTYPE = np.dtype(np.int64)


def on_inputs_device(fn):
    """Decorator of the public functions: run ``fn`` with the device of its first CuPy array
    argument current. CuPy runs element-wise work and allocates on the current device, so
    arrays on another GPU would otherwise be read from the wrong one (validation then makes
    sure every array is on that device)."""
    @functools.wraps(fn)
    def on_device(*args, **kwargs):
        for a in itertools.chain(args, kwargs.values()):
            if library(a) == "cupy":
                with a.device:
                    return fn(*args, **kwargs)
        return fn(*args, **kwargs)
    return on_device


def library(array) -> str | None:
    """'numpy' or 'cupy' for a supported array, else None."""
    if isinstance(array, np.ndarray):
        return "numpy"
    cls = type(array)
    if cls.__module__.split(".")[0] == "cupy" and cls.__name__ == "ndarray":
        return "cupy"
    return None


def check_arrays(named: dict, *, float_names, ranks: dict) -> tuple[str, np.dtype | None]:
    """Check the named arrays (None entries are skipped) and return (library, float dtype).

    ``float_names`` must share one floating dtype; ``ranks`` maps each name to the allowed
    numbers of dimensions.
    """
    libs = {}
    for name, array in named.items():
        if array is None:
            continue
        lib = library(array)
        if lib is None:
            hint = " (use gpuconv.torch for torch tensors)" if type(array).__module__.startswith(
                "torch") else ""
            raise TypeError(f"{name} must be a numpy.ndarray or cupy.ndarray, got "
                            f"{type(array).__module__}.{type(array).__name__}{hint}")
        libs[name] = lib
        if array.ndim not in ranks[name]:
            wanted = " or ".join(f"{r}-D" for r in ranks[name])
            raise ValueError(f"{name} must be {wanted}, got a {array.ndim}-D array of shape "
                             f"{tuple(array.shape)}")
    if len(set(libs.values())) > 1:
        desc = ", ".join(f"{n}: {lib}" for n, lib in libs.items())
        raise TypeError(f"all arrays must come from one library, got {desc}")
    lib = next(iter(libs.values()))
    if lib == "cupy":
        devices = {name: named[name].device.id for name in libs}
        if len(set(devices.values())) > 1:
            desc = ", ".join(f"{n}: device {d}" for n, d in devices.items())
            raise ValueError(f"all arrays must be on one GPU, got {desc}")
    dtype = None
    for name in float_names:
        array = named.get(name)
        if array is None:
            continue
        if array.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must have dtype {', '.join(NAMES)} (bfloat16: "
                            f"ml_dtypes.bfloat16), got {array.dtype}")
        if dtype is None:
            dtype = array.dtype
        elif array.dtype != dtype:
            first = next(n for n in float_names if named.get(n) is not None)
            raise TypeError(f"{name} has dtype {array.dtype} but {first} has {dtype}: "
                            f"convert them to one dtype")
    return lib, dtype


def check_shape(array, expected, name: str, what: str) -> None:
    """ValueError unless ``array.shape == expected``; ``what`` says where expected comes from."""
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(array.shape)}, but {what} gives "
                         f"{tuple(expected)}")


def check_indices(indices, expected_shape, plane_size: int) -> None:
    """Max-pool indices: int64, output-shaped, every value inside its (H*W) input plane."""
    if indices.dtype != INDEX_DTYPE:
        raise TypeError(f"indices must have dtype int64 (as returned by max_pool2d), got "
                        f"{indices.dtype}")
    check_shape(indices, expected_shape, "indices", "the pooling geometry")
    if indices.size:
        low, high = int(indices.min()), int(indices.max())
        if low < 0 or high >= plane_size:
            raise ValueError(f"indices must lie in [0, {plane_size}) (H*W of the input), "
                             f"got values in [{low}, {high}]")


def is_channels_last(x) -> bool:
    """Whether a 4-D array is laid out channels-last: an (N,H,W,C) C-contiguous buffer seen as
    (N,C,H,W), like a ``torch.channels_last`` tensor (``x.transpose(0, 2, 3, 1)`` of it is
    C-contiguous). An array that is C-contiguous as well (C = 1, or H = W = 1) counts as NCHW."""
    return (x.ndim == 4 and not x.flags.c_contiguous
            and x.transpose(0, 2, 3, 1).flags.c_contiguous)
