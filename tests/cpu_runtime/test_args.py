"""Argument checks before a launch: TypeError naming the position and what was expected."""
import numpy as np
import pytest

from conftest import module


@pytest.fixture(scope="module")
def kernels():
    return module("misc.cu", name_expressions=("scale<float, 2>",))


def args_ok():
    x = np.ones(8, np.float32)
    return [x, np.zeros(8, np.float32), np.float32(1), np.int32(8)]


def call(kern, args, **kw):
    kern((1,), (8,), tuple(args), **kw)


@pytest.mark.parametrize("pos,value,match", [
    (3, 8, r"argument 3 must be a numpy.int32 scalar.*Python numbers are refused"),
    (3, np.int64(8), r"argument 3 must be a numpy.int32 scalar, got a numpy.int64"),
    (3, np.uint32(8), r"argument 3 .*int32"),
    (2, 1.0, r"argument 2 must be a numpy.float32 scalar"),
    (2, np.float64(1), r"argument 2 must be a numpy.float32"),
    (0, [1.0] * 8, r"argument 0 must be a C-contiguous numpy float32 array \(const pointer\), got list"),
    (0, np.ones(8, np.float64), r"argument 0 must be .*float32.*got a float64 array"),
    (1, np.zeros((8, 2), np.float32)[:, 0], r"argument 1 must be C-contiguous"),
    (0, np.float32(1), r"argument 0 must be a C-contiguous numpy float32 array"),
])
def test_bad_arguments(kernels, pos, value, match):
    a = args_ok()
    a[pos] = value
    with pytest.raises(TypeError, match=match):
        call(kernels.get_function("scale<float, 2>"), a)


def test_argument_count(kernels):
    with pytest.raises(TypeError, match="expected 4 arguments.*got 3"):
        call(kernels.get_function("scale<float, 2>"), args_ok()[:3])
    with pytest.raises(TypeError, match="args must be a tuple"):
        kernels.get_function("scale<float, 2>")((1,), (8,), np.ones(3))


def test_read_only_arrays(kernels):
    k = kernels.get_function("scale<float, 2>")
    a = args_ok()
    a[0].flags.writeable = False  # fine: const float*
    call(k, a)
    np.testing.assert_array_equal(a[1], np.full(8, 3.0, np.float32))
    a[1].flags.writeable = False  # not fine: float* output
    with pytest.raises(TypeError, match="argument 1 is a read-only array"):
        call(k, a)


def test_struct_and_void_pointer_arguments(kernels):
    k = kernels.get_function("sig_kinds")
    pair = np.zeros((), dtype=np.dtype([("a", np.int32), ("b", np.float32)]))[()]
    args = (np.zeros(1, np.float32), np.zeros(1), np.int32(1), np.uint32(2), np.int64(3), np.uint64(4),
            np.float32(5), np.float64(6), np.float16(7), pair, np.zeros(3, np.uint8))
    k(1, 1, args)
    with pytest.raises(TypeError, match="argument 9 must be a numpy structured scalar of 8 bytes"):
        k(1, 1, args[:9] + (np.int32(1),) + args[10:])


def test_grid_and_block_forms(kernels):
    k = kernels.get_function("scale<float, 2>")
    a = args_ok()
    k(1, 8, tuple(a))
    k((1, 1), [8, 1, 1], tuple(a))
    with pytest.raises(TypeError, match="grid must be an int or a tuple of 1-3 ints"):
        k((1, 1, 1, 1), 8, tuple(a))
    with pytest.raises(ValueError, match="block must hold non-negative ints"):
        k(1, -8, tuple(a))
