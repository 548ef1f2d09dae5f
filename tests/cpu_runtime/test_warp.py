"""Warp intrinsics: every shuffle kind with width, a shuffle reduction, ballot/any/all, barrier votes."""
import numpy as np
import pytest

from conftest import module


@pytest.fixture(scope="module")
def warp():
    return module("warp.cu")


def expected_shuffles(nthreads, src, delta, width):
    """CUDA semantics: lanes work in segments of `width`; out-of-segment sources return the own value."""
    out = np.zeros((nthreads, 4), np.int32)
    for t in range(nthreads):
        lane, warp_base = t % 32, t - t % 32
        seg = lane - lane % width
        val = lambda l: 100 * (warp_base + l) + 7
        out[t, 0] = val(seg + src % width)
        out[t, 1] = val(lane - delta) if lane - delta >= seg else val(lane)
        out[t, 2] = val(lane + delta) if lane + delta < seg + width else val(lane)
        x = lane ^ delta
        out[t, 3] = val(x) if x < seg + width else val(lane)
    return out


@pytest.mark.parametrize("width", [32, 16, 8, 4, 2, 1])
@pytest.mark.parametrize("src,delta", [(0, 1), (5, 2), (37, 3), (3, 4), (31, 16)])
def test_shuffles_with_width(warp, width, src, delta):
    out = np.zeros((128, 4), np.int32)
    warp.get_function("shuffles")((2,), (64,), (out, np.int32(src), np.int32(delta), np.int32(width)))
    np.testing.assert_array_equal(out, expected_shuffles(128, src, delta, width))


def test_shuffle_reduction(warp):
    rng = np.random.default_rng(1)
    n = 1000
    x = rng.standard_normal(n).astype(np.float32)
    out = np.full(4, np.nan, np.float32)
    warp.get_function("reduce_sum")((4,), (256,), (x, out, np.int32(n)))
    ref = [x[i * 256:(i + 1) * 256].astype(np.float64).sum() for i in range(4)]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_ballot_any_all(warp):
    rng = np.random.default_rng(2)
    n = 96
    x = rng.integers(-3, 3, n).astype(np.int32)
    x[32:64] = 1      # warp 1: all true
    x[64:96] = -1     # warp 2: all false
    out = np.zeros((n, 5), np.uint32)
    warp.get_function("votes")((1,), (n,), (x, out))
    for t in range(n):
        w = slice(t - t % 32, t - t % 32 + 32)
        bits = sum(1 << l for l, v in enumerate(x[w]) if v > 0)
        half = 0x0000FFFF if t % 32 < 16 else 0xFFFF0000
        assert out[t, 0] == bits
        assert out[t, 1] == (bits != 0)
        assert out[t, 2] == (bits == 0xFFFFFFFF)
        assert out[t, 3] == bits & half
        assert out[t, 4] == 0xFFFFFFFF  # converged warp


def test_syncthreads_count_and_or(warp):
    x = np.zeros((3, 100), np.int32)
    x[0, :37] = 1
    x[1, :] = 1
    out = np.zeros((3, 3), np.int32)
    warp.get_function("bar_votes")((3,), (100,), (x, out))
    np.testing.assert_array_equal(out, [[37, 0, 1], [100, 1, 1], [0, 0, 0]])


def test_activemask_divergent(warp):
    out = np.zeros(64, np.uint32)
    warp.get_function("active_divergent")((1,), (64,), (out,))
    lane = np.arange(64) % 32
    expected = np.where(lane < 10, 0x3FF, np.where(lane >= 20, 0xFFF00000, 0)).astype(np.uint32)
    np.testing.assert_array_equal(out, expected)
