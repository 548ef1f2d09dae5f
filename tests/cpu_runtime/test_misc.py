"""Dynamic shared memory, template kernels, __half conversions, math helpers, coordinates, signatures."""
import numpy as np
import pytest

from conftest import module


@pytest.fixture(scope="module")
def misc():
    return module("misc.cu", name_expressions=("scale<float, 2>", "scale<double, 3>"))


def test_dynamic_shared_memory_and_0xff_fill(misc):
    blocks, n = 5, 96
    x = np.arange(blocks * n, dtype=np.float32)
    y = np.full_like(x, np.nan)
    fresh = np.zeros(blocks, np.uint32)
    misc.get_function("reverse_dyn")((blocks,), (n,), (x, y, fresh), shared_mem=n * 4)
    np.testing.assert_array_equal(y, x.reshape(blocks, n)[:, ::-1].ravel())
    assert (fresh == 0xFFFFFFFF).all()  # every block starts with 0xff-filled dynamic shared memory


def test_template_kernels_via_name_expressions(misc):
    x = np.linspace(-1, 1, 300).astype(np.float32)
    y = np.zeros_like(x)
    misc.get_function("scale<float, 2>")((3,), (128,), (x, y, np.float32(0.5), np.int32(300)))
    np.testing.assert_array_equal(y, x * np.float32(2) + np.float32(0.5))
    xd, yd = x.astype(np.float64), np.zeros(300)
    misc.get_function("scale<double, 3>")((3,), (128,), (xd, yd, np.float64(-1), np.int32(300)))
    np.testing.assert_array_equal(yd, xd * 3 - 1)
    with pytest.raises(Exception, match="name_expressions"):
        misc.get_function("scale<int, 1>")


def test_half_to_float_all_bit_patterns(misc):
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    out = np.zeros(65536, np.float32)
    misc.get_function("half_to_float")((16,), (256,), (bits, out, np.int32(65536)))
    ref = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(out), nan)
    np.testing.assert_array_equal(out.view(np.uint32)[~nan], ref.view(np.uint32)[~nan])
    # NaN payloads survive (quiet bit aside)
    q = ~np.uint32(0x400000)
    hb = bits[nan].astype(np.uint32)
    np.testing.assert_array_equal(out.view(np.uint32)[nan] & q,
                                  ((hb & 0x3FF) << 13 | 0x7F800000 | (hb & 0x8000) << 16) & q)


def test_float_to_half_round_to_nearest_even(misc):
    rng = np.random.default_rng(0)
    halves = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = np.sort(np.unique(halves[np.isfinite(halves)].astype(np.float32)))
    mids = ((finite[:-1].astype(np.float64) + finite[1:]) / 2).astype(np.float32)  # exact ties
    around = np.concatenate([np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(-np.inf))])
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519.996, 65520, 65536, 1e30, -1e30,
                        2.0 ** -24, 2.0 ** -25, 2.0 ** -26, 1.5 * 2.0 ** -25, 2.0 ** -14, 6.1e-5, 1e-40],
                       np.float32)
    rand = rng.integers(0, 2 ** 32, 300000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    f = np.concatenate([finite, mids, around, special, rand]).astype(np.float32)
    h = np.zeros(f.size, np.uint16)
    h_rn = np.zeros(f.size, np.uint16)
    misc.get_function("float_to_half")((16,), (256,), (f, h, h_rn, np.int32(f.size)))
    with np.errstate(over="ignore", invalid="ignore"):
        ref = f.astype(np.float16)
    nan = np.isnan(f)
    np.testing.assert_array_equal(h, h_rn)
    assert np.isnan(h.view(np.float16)[nan]).all()
    np.testing.assert_array_equal(h[~nan], ref.view(np.uint16)[~nan])


def test_half_arithmetic(misc):
    a = np.array([1.5, -2.0, 65504, 0.1], np.float16)
    b = np.array([0.25, 3.0, 2.0, 0.2], np.float16)
    out = np.zeros(16, np.float16)
    misc.get_function("half_math")((1,), (4,), (a, b, out, np.float16(3)))
    out = out.reshape(4, 4)
    f32 = lambda v: v.astype(np.float32)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(out[:, 0], (f32(a) + f32(b)).astype(np.float16))
        np.testing.assert_array_equal(out[:, 1], (f32(a) * f32(b)).astype(np.float16))
        np.testing.assert_array_equal(out[:, 2], np.maximum(a, b))
        np.testing.assert_array_equal(out[:, 3], (f32(a) * 3).astype(np.float16))


def test_math_intrinsics_and_vector_types(misc):
    x = np.array([3.0, -2.0], np.float32)
    out = np.zeros(10, np.float32)
    iout = np.zeros(6, np.int32)
    misc.get_function("math_ops")((1,), (1,), (x, out, iout))
    assert out.tolist()[:6] == [-5.0, -4.0, -2.0, 3.0, 0.5, 1.0 + 3.0 - 2.0]
    assert out[6] == np.inf and out[7] == -2.0 and out[8] == -2.0 and out[9] == 3.0
    assert iout.tolist() == [1, 0x3F800000, 3 - 1, 5, 10 + 11 + 15 + 6 + 32, 16 + 8]


def test_thread_and_block_coordinates(misc):
    grid, block = (3, 2, 2), (4, 3, 2)
    nb, nt = 12, 24
    out = np.full((nb, nt, 6), -1, np.int32)
    misc.get_function("coords")(grid, block, (out,))
    bz, by, bx = np.meshgrid(range(2), range(2), range(3), indexing="ij")
    tz, ty, tx = np.meshgrid(range(2), range(3), range(4), indexing="ij")
    np.testing.assert_array_equal(out[:, :, 0], np.broadcast_to(tx.ravel(), (nb, nt)))
    np.testing.assert_array_equal(out[:, :, 1], np.broadcast_to(ty.ravel(), (nb, nt)))
    np.testing.assert_array_equal(out[:, :, 2], np.broadcast_to(tz.ravel(), (nb, nt)))
    np.testing.assert_array_equal(out[:, :, 3], np.broadcast_to(bx.ravel()[:, None], (nb, nt)))
    np.testing.assert_array_equal(out[:, :, 4], np.broadcast_to(by.ravel()[:, None], (nb, nt)))
    np.testing.assert_array_equal(out[:, :, 5], np.broadcast_to(bz.ravel()[:, None], (nb, nt)))


def test_signature_kinds(misc):
    assert misc.get_function("sig_kinds").signature == (
        "Pf4", "pf8", "i4", "u4", "i8", "u8", "f4", "f8", "f2", "s8", "pv")
