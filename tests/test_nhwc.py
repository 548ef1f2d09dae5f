"""Channels-last (NHWC) conv2d: fprop, dgrad and wgrad v4 (conv2d_fprop_v4_nhwc_mma,
conv2d_dgrad_v4_nhwc_mma: A operand mma.cuh's MmaNhwcLoader; conv2d_wgrad_v4_nhwc_mma:
reduction-major tiles, mma_kmajor_tile_product) and the path that hands them channels-last
arrays as they are.

* kernels.conv2d_fprop_nhwc / conv2d_dgrad_nhwc / conv2d_wgrad_nhwc run every version on NHWC
  arrays (v4 as they are, the others through NCHW copies) against the reference, on geometries
  that take v4's 16-byte cp.async pieces and ones that take its element-by-element loads
  (channels or filters per group not a multiple of the piece, a misaligned operand), and
  wgrad's split-K;
* fault injection: two lanes swapped or a barrier dropped break v4 on the CPU runtime, so its
  fragment and pipeline index math is really under test;
* gpuconv.conv2d, gpuconv.grad.conv2d_input and conv2d_weight keep channels-last arrays
  channels-last (PyTorch's rule) on every backend, with the NCHW path's values;
* selection: the heuristic takes v4 for channels-last arrays where it would take v3.

The whole problem matrix for v4 (through NCHW arrays) is in tests/test_kernels.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import checking, kernels, reference
from gpuconv.checking import assert_close, compare
from gpuconv.dtypes import SIXTEEN_BIT, bfloat16
from gpuconv.functional import is_channels_last
from gpuconv.geometry import conv2d_geometry
from gpuconv.problems import CONV_PROBLEMS, ConvProblem
from gpuconv.runtime import get_runtime

from test_kernels import conv_case, host, misaligned, on, poisoned
from test_tensor_core import SWAP, _emulator_built_with

NHWC = (0, 2, 3, 1)  # (N,C,H,W) -> (N,H,W,C); the same for w: (K,C/g,R,S) -> (K,R,S,C/g)
NCHW = (0, 3, 1, 2)

PROBLEMS = [
    ConvProblem("nhwc_pieces", "C = 32: 16-byte pieces of 8 channels (4 floats); 2 row "
                "tiles, 9 k tiles (18 for TF32), padding", N=2, C=32, H=9, W=10, K=40, R=3, S=3,
                padding=1),
    ConvProblem("nhwc_grouped_pieces", "2 groups of 8 channels: each piece inside one group; "
                "stride 2, dilation 2", N=2, C=16, H=13, W=11, K=24, R=3, S=3, stride=2,
                padding=2, dilation=2, groups=2),
    ConvProblem("nhwc_rgb_stem", "C = 3: pieces cross taps, the element-by-element loads",
                N=1, C=3, H=23, W=21, K=16, R=7, S=7, stride=2, padding=3),
    ConvProblem("nhwc_4_per_group", "4 channels per group: whole pieces for float (TF32), "
                "element loads for 16-bit; 1x1", N=3, C=8, H=7, W=9, K=70, R=1, S=1, groups=2),
    ConvProblem("nhwc_strided_gather", "dgrad's gather with stride 3 (most taps have no "
                "window: zero-filled pieces), 80 filters, a 2x5 kernel", N=2, C=72, H=14, W=13,
                K=80, R=2, S=5, stride=3, padding=(1, 2)),
    ConvProblem("nhwc_wgrad_splits", "wgrad: 576 pixels, 4 split-K pieces (a partial last "
                "tile); 216 taps (two row tiles, the second partial)", N=4, C=24, H=12, W=12,
                K=40, R=3, S=3, padding=1),
]
IDS = [p.name for p in PROBLEMS]
RESNET = next(p for p in CONV_PROBLEMS if p.name == "resnet_3x3_layer")


def run_nhwc(rt, problem, dtype, version="v4", tag="nhwc", x_offset=0, w_offset=0, op="fprop"):
    """(result, reference, TF32 bound or None) of kernels.conv2d_fprop_nhwc (y (N,P,Q,K)),
    conv2d_dgrad_nhwc (dx (N,H,W,C)) or conv2d_wgrad_nhwc (dw (K,R,S,C/groups));
    x_offset misaligns the first operand (x, dy, x), w_offset the second (w, w, dy)."""
    g, x, w, b, dy = conv_case(problem, dtype, tag)
    a, second = {"fprop": (x, w), "dgrad": (dy, w), "wgrad": (x, dy)}[op]
    a_nhwc = np.ascontiguousarray(a.transpose(NHWC))
    w_krsc = np.ascontiguousarray(second.transpose(NHWC))
    if x_offset:
        a_nhwc = misaligned(a_nhwc, x_offset)
    if w_offset:
        w_krsc = misaligned(w_krsc, w_offset)
    tf32 = np.dtype(dtype) == np.float32 and version in ("v3", "v4")
    with kernels.allow_tf32(tf32):
        if op == "fprop":
            out = poisoned(rt, (g.N, g.P, g.Q, g.K), dtype)
            kernels.conv2d_fprop_nhwc(rt, g, on(rt, a_nhwc), on(rt, w_krsc),
                                      None if b is None else on(rt, b), out, version=version)
            expected = reference.conv2d(x, w, b, g)
        elif op == "dgrad":
            out = poisoned(rt, (g.N, g.H, g.W, g.C), dtype)
            kernels.conv2d_dgrad_nhwc(rt, g, on(rt, a_nhwc), on(rt, w_krsc), out,
                                      version=version)
            expected = reference.conv2d_input(dy, w, g)
        else:
            out = poisoned(rt, (g.K, g.R, g.S, g.C_per_group), dtype)
            kernels.conv2d_wgrad_nhwc(rt, g, on(rt, a_nhwc), on(rt, w_krsc), out,
                                      version=version)
            expected = reference.conv2d_weight(x, dy, g)
    bound = checking.tf32_bound(op, g, a, second).transpose(NHWC) if tf32 else None
    return host(out), expected.transpose(NHWC), bound


# ----------------------------------------------------------------------------------------
# v4 and every other version on NHWC arrays


OPS = ["fprop", "dgrad", "wgrad"]


@pytest.mark.parametrize("problem", PROBLEMS + [RESNET], ids=IDS + [RESNET.name])
@pytest.mark.parametrize("dtype", [*SIXTEEN_BIT, np.dtype(np.float32)], ids=lambda d: d.name)
@pytest.mark.parametrize("op", OPS)
def test_v4_against_the_reference(op, dtype, problem):
    out, expected, bound = run_nhwc(get_runtime("emulator"), problem, dtype, op=op)
    assert compare(out, expected, dtype, bound=bound), f"{op} v4 {problem.name} {dtype.name}"


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
@pytest.mark.parametrize("dtype", [np.dtype(np.float16), np.dtype(np.float64)],
                         ids=lambda d: d.name)
@pytest.mark.parametrize("op", OPS)
def test_other_versions_on_nhwc_arrays_convert(op, version, dtype):
    if kernels.dtype_unsupported_reason(op, version, dtype):
        with pytest.raises(ValueError, match=f"{op} v3"):
            run_nhwc(get_runtime("emulator"), PROBLEMS[1], dtype, version, op=op)
        return
    out, expected, bound = run_nhwc(get_runtime("emulator"), PROBLEMS[1], dtype, version, op=op)
    assert compare(out, expected, dtype, bound=bound)


@pytest.mark.parametrize("dtype", [np.dtype(np.float16), np.dtype(np.float32)],
                         ids=lambda d: d.name)
@pytest.mark.parametrize("operand", ["x", "w"])
@pytest.mark.parametrize("op", OPS)
def test_v4_with_a_misaligned_operand_takes_the_element_loads(op, operand, dtype):
    """x or dy (or fprop's w, or wgrad's dy as operand "w"; dgrad's filters reach the kernel
    as a fresh transposed copy) one element past a 16-byte boundary: cp.async's vectors would
    be misaligned, so the loaders must take their guarded element loads even though the
    channels per group are a multiple of 8."""
    offsets = {"x_offset": 1} if operand == "x" else {"w_offset": 1}
    out, expected, bound = run_nhwc(get_runtime("emulator"), PROBLEMS[0], dtype, op=op,
                                    **offsets)
    assert compare(out, expected, dtype, bound=bound)


@pytest.mark.parametrize("op,operand", [("fprop", "x"), ("fprop", "w"), ("dgrad", "x"),
                                        ("wgrad", "x"), ("wgrad", "w")])
def test_tf32_rounds_alike_whether_an_operand_is_copied_or_loaded(op, operand):
    """TF32: an aligned operand is copied raw by cp.async, a misaligned one loaded element by
    element and rounded; mma_tf32_gemm_mainloop rounds every fragment word as it reads it, so
    both give the same bits (a copied word used raw would be truncated instead). (dgrad's
    filters reach the kernel as a fresh transposed copy: always aligned.)"""
    rt = get_runtime("emulator")
    offsets = {"x_offset": 1} if operand == "x" else {"w_offset": 1}
    aligned, _, _ = run_nhwc(rt, RESNET, np.dtype(np.float32), op=op)
    moved, _, _ = run_nhwc(rt, RESNET, np.dtype(np.float32), op=op, **offsets)
    assert aligned.tobytes() == moved.tobytes()


def test_tf32_v3_rounds_alike_whether_w_is_copied_or_loaded():
    from test_kernels import run_tf32
    rt = get_runtime("emulator")
    aligned, expected, bound = run_tf32(rt, "fprop", RESNET, "align")
    moved, _, _ = run_tf32(rt, "fprop", RESNET, "align", offset=1)
    assert compare(aligned, expected, np.float32, bound=bound)
    assert aligned.tobytes() == moved.tobytes()


@pytest.mark.parametrize("op", OPS)
def test_v4_is_bitwise_deterministic(op):
    rt = get_runtime("emulator")
    out1, _, _ = run_nhwc(rt, PROBLEMS[0], np.dtype(np.float16), tag="det", op=op)
    out2, _, _ = run_nhwc(rt, PROBLEMS[0], np.dtype(np.float16), tag="det", op=op)
    assert out1.tobytes() == out2.tobytes()


def test_v4_through_nchw_arrays_matches_v4_on_nhwc_arrays():
    """kernels.conv2d_fprop / conv2d_dgrad(version='v4') convert NCHW arrays to NHWC and back:
    the same kernel, so the same bits."""
    rt = get_runtime("emulator")
    g, x, w, b, dy = conv_case(RESNET, np.float16, "nhwc")
    y_nchw = poisoned(rt, g.y_shape, np.float16)
    kernels.conv2d_fprop(rt, g, x, w, b, y_nchw, version="v4")
    y_nhwc, _, _ = run_nhwc(rt, RESNET, np.dtype(np.float16))
    assert y_nchw.transpose(NHWC).tobytes() == y_nhwc.tobytes()
    dx_nchw = poisoned(rt, g.x_shape, np.float16)
    kernels.conv2d_dgrad(rt, g, dy, w, dx_nchw, version="v4")
    dx_nhwc, _, _ = run_nhwc(rt, RESNET, np.dtype(np.float16), op="dgrad")
    assert dx_nchw.transpose(NHWC).tobytes() == dx_nhwc.tobytes()
    dw_nchw = poisoned(rt, g.w_shape, np.float16)
    kernels.conv2d_wgrad(rt, g, x, dy, dw_nchw, version="v4")
    dw_krsc, _, _ = run_nhwc(rt, RESNET, np.dtype(np.float16), op="wgrad")
    assert dw_nchw.transpose(NHWC).tobytes() == dw_krsc.tobytes()


@pytest.mark.parametrize("dtype", [np.dtype(np.float16), np.dtype(np.float32)],
                         ids=lambda d: d.name)
def test_wgrad_v4_splits_the_reduction_like_v3(dtype):
    """wgrad v4 has v3's tiles and split rule: the nhwc_wgrad_splits problem really runs in
    several split-K pieces (partials added by the second pass), and gives the reference."""
    problem = PROBLEMS[-1]
    g = conv2d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs)
    assert kernels.wgrad_splits(g, "v4") == kernels.wgrad_splits(g, "v3") > 1
    out, expected, bound = run_nhwc(get_runtime("emulator"), problem, dtype, op="wgrad")
    assert compare(out, expected, dtype, bound=bound)


# ----------------------------------------------------------------------------------------
# fault injection: the emulated fragments and the pipeline are under test


@pytest.mark.parametrize("dtype", [np.dtype(np.float16), np.dtype(np.float32)],
                         ids=lambda d: d.name)
@pytest.mark.parametrize("op", OPS)
def test_swapping_two_lanes_breaks_v4(op, dtype):
    out, expected, bound = run_nhwc(_emulator_built_with(*SWAP), RESNET, dtype, op=op)
    assert not compare(out, expected, dtype, bound=bound), f"{op} v4, lanes 1, 5 swapped: matched"


@pytest.mark.parametrize("op,stages", [("fprop", 3), ("dgrad", 3), ("wgrad", 3), ("fprop", 2)])
def test_dropping_a_barrier_breaks_v4(op, stages, monkeypatch):
    """As for v3 (tests/test_tensor_core.py): without mma_multistage's one barrier per tile
    (id 10) the result is wrong in at least one fiber order; with it, right in every order.
    v4's tiles are both copied before the math, so in the round-robin orders its warps stay
    in step without it; the greedy order runs warp 0 through its tiles first. Built with the
    default 3 stages and, for fprop, with 2 (-DMMA_COPY_STAGES=2: the pipeline's stage
    arithmetic is not tied to one depth; each such build is a CPU-runtime compile of its own,
    so one op carries it)."""
    barrier = 10
    depth = [] if stages == kernels.MMA_COPY_STAGES else [f"-DMMA_COPY_STAGES={stages}"]
    with_barrier = _emulator_built_with(*depth) if depth else get_runtime("emulator")
    rt = _emulator_built_with(*depth, f"-DGPUCONV_TEST_DROP_SYNC={barrier}")
    broken = []
    for order in ("forward", "reverse", "greedy"):
        monkeypatch.setenv("GPUCONV_CPU_FIBER_ORDER", order)
        out, expected, _ = run_nhwc(with_barrier, RESNET, np.dtype(np.float16), op=op)
        assert_close(out, expected, np.float16, what=f"{op} v4, every barrier, {order} order")
        out, expected, _ = run_nhwc(rt, RESNET, np.dtype(np.float16), op=op)
        broken.append(not compare(out, expected, np.float16))
    assert any(broken), f"{op} v4 without barrier {barrier} still matched in all 3 orders"


# ----------------------------------------------------------------------------------------
# gpuconv.conv2d on channels-last arrays


def channels_last(a):
    """``a``'s values in a channels-last buffer (what torch.channels_last gives)."""
    return np.ascontiguousarray(a.transpose(NHWC)).transpose(NCHW)


def test_is_channels_last():
    x = np.zeros((2, 3, 4, 5), np.float32)
    assert not is_channels_last(x)
    assert is_channels_last(channels_last(x))
    assert not is_channels_last(channels_last(np.zeros((2, 1, 4, 5))))  # C = 1: both layouts
    assert not is_channels_last(x.transpose(0, 1, 3, 2))                # some other order
    assert not is_channels_last(np.zeros((3, 4, 5)))


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
@pytest.mark.parametrize("dtype", [np.float16, bfloat16, np.float32, np.float64],
                         ids=lambda d: np.dtype(d).name)
def test_conv2d_keeps_channels_last(backend, dtype):
    """A channels-last input (conv2d's x, conv2d_input's dy) gives a channels-last output (as
    in PyTorch) with the values of the NCHW path: bit for bit on the CPU runtime (the same kernels, through copies); on the
    NumPy reference within tolerance (its float64 sums may run in another order)."""
    g, x, w, b, dy = conv_case(PROBLEMS[1], dtype, "layout")
    kwargs = PROBLEMS[1].kwargs
    dx_of = lambda dy: gpuconv.grad.conv2d_input(  # noqa: E731
        g.x_shape[1:] if dy.ndim == 3 else g.x_shape, w, dy, **kwargs)
    dw_of = lambda x, dy: gpuconv.grad.conv2d_weight(x, w.shape, dy, **kwargs)  # noqa: E731
    with gpuconv.use_backend(backend):
        got = {"y": (gpuconv.conv2d(channels_last(x), w, b, **kwargs),
                     gpuconv.conv2d(x, w, b, **kwargs),
                     gpuconv.conv2d(channels_last(x)[0], w, b, **kwargs)),
               "dx": (dx_of(channels_last(dy)), dx_of(dy), dx_of(channels_last(dy)[0])),
               "dw": (dw_of(channels_last(x), channels_last(dy)), dw_of(x, dy),
                      dw_of(channels_last(x)[0], channels_last(dy)[0]))}
        dw_batch_one = dw_of(x[:1], dy[:1])  # a weight has no batch axis: what unbatched gives
    for name, (cl, nchw, unbatched) in got.items():
        assert is_channels_last(cl) and cl.shape == nchw.shape, name
        if name == "dw":
            nchw_one = dw_batch_one
            assert is_channels_last(unbatched) and unbatched.shape == nchw.shape, name
        else:
            nchw_one = nchw[0]
            assert unbatched.shape == nchw.shape[1:], name
        cl, nchw, unbatched = (np.ascontiguousarray(a) for a in (cl, nchw, unbatched))
        if backend == "numpy":
            assert_close(cl, nchw, dtype, what=f"numpy {name}, channels-last vs NCHW")
            assert_close(unbatched, nchw_one, dtype, what=f"numpy {name}, unbatched")
        else:
            assert cl.tobytes() == nchw.tobytes(), name
            assert unbatched.tobytes() == nchw_one.tobytes(), name


def test_a_channels_last_weight_alone_makes_the_result_channels_last():
    """PyTorch's rule: the result is channels-last when the input (dy for conv2d_input) or
    the weight is; an array that is both layouts at once (one channel, one pixel) is NCHW."""
    g, x, w, b, dy = conv_case(RESNET, np.float32, "weight layout")
    with gpuconv.use_backend("emulator"):
        y = gpuconv.conv2d(x, channels_last(w), b, padding=1)
        dx = gpuconv.grad.conv2d_input(g.x_shape, channels_last(w), dy, padding=1)
        y_plain = gpuconv.conv2d(x, w, b, padding=1)
        dx_plain = gpuconv.grad.conv2d_input(g.x_shape, w, dy, padding=1)
        one_by_one = gpuconv.conv2d(x, channels_last(w[:, :, :1, :1]), b)  # w: both layouts
    assert is_channels_last(y) and is_channels_last(dx)
    assert not is_channels_last(y_plain) and not is_channels_last(dx_plain)
    assert not is_channels_last(one_by_one)
    assert np.ascontiguousarray(y).tobytes() == y_plain.tobytes()
    assert np.ascontiguousarray(dx).tobytes() == dx_plain.tobytes()


@pytest.mark.parametrize("op", ["conv2d_channels_last", "conv2d_input_channels_last",
                                "conv2d_weight_channels_last"])
@pytest.mark.parametrize("problem", [
    ConvProblem("one_channel", "C = 1: x is NCHW and channels-last at once", N=2, C=1, H=6, W=6,
                K=4, R=3, S=3, padding=1),
    ConvProblem("one_pixel", "H = W = 1: x and 1x1 w are both layouts", N=2, C=8, H=1, W=1,
                K=4, R=1, S=1, padding=1),
], ids=lambda p: p.name)
@pytest.mark.parametrize("backend", ["numpy", "emulator"])
def test_the_channels_last_check_takes_either_layout_where_the_operands_have_both(
        backend, problem, op):
    with gpuconv.use_backend(backend):
        result = checking.check_case(op, problem, np.float32)
    assert result, result.report


def test_conv2d_on_channels_last_runs_v4_without_conversions(monkeypatch):
    """With fprop v4 forced on the CPU runtime, a channels-last input reaches the kernel as
    it is: no NCHW launch, and the values of the reference (flip and no bias too)."""
    calls = []
    monkeypatch.setattr(kernels, "_fprop_launch", lambda *a: calls.append(a))
    g, x, w, _, _ = conv_case(RESNET, np.float16, "v4 path")
    with gpuconv.use_backend("emulator"), kernels.use_versions(fprop="v4"):
        y = gpuconv.conv2d(channels_last(x), w, padding=1)
        y_flip = gpuconv.conv2d(channels_last(x), w, padding=1, flip=True)
    assert calls == []  # _fprop_launch (the NCHW launcher) never ran
    assert is_channels_last(y) and is_channels_last(y_flip)
    assert_close(y, reference.conv2d(x, w, None, g), np.float16, what="conv2d on NHWC, v4")
    assert_close(y_flip, reference.conv2d(x, np.ascontiguousarray(w[..., ::-1, ::-1]), None, g),
                 np.float16, what="flipped conv2d on NHWC, v4")


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
def test_conv2d_weight_is_channels_last_when_the_input_is(backend):
    """PyTorch's rule for torch.nn.grad.conv2d_weight (tests/test_torch.py checks it against
    PyTorch): dw is channels-last when the input is, whatever dy's layout; a channels-last dy
    alone gives an NCHW dw. flip=True keeps dw's layout. The values never change."""
    g, x, w, b, dy = conv_case(RESNET, np.float32, "wgrad layout")
    def dw(x, dy, **kw):
        return gpuconv.grad.conv2d_weight(x, w.shape, dy, padding=1, **kw)

    with gpuconv.use_backend(backend):
        plain, plain_flip = dw(x, dy), dw(x, dy, flip=True)
        results = {"x": dw(channels_last(x), dy), "x, dy": dw(channels_last(x), channels_last(dy)),
                   "dy": dw(x, channels_last(dy))}
        flipped = dw(channels_last(x), channels_last(dy), flip=True)
    assert is_channels_last(results["x"]) and is_channels_last(results["x, dy"])
    assert not is_channels_last(results["dy"]) and not is_channels_last(plain)
    assert is_channels_last(flipped) and not is_channels_last(plain_flip)
    for name, got in results.items():
        assert_close(np.ascontiguousarray(got), plain, np.float32, what=name)
    assert_close(np.ascontiguousarray(flipped), plain_flip, np.float32, what="flip")


def test_conv2d_weight_on_channels_last_runs_v4_without_conversions(monkeypatch):
    """With wgrad v4 forced on the CPU runtime, channels-last x and dy reach the kernel as
    they are: no NCHW launch, and the reference's values."""
    calls = []
    monkeypatch.setattr(kernels, "_wgrad_launch", lambda *a: calls.append(a))
    g, x, w, _, dy = conv_case(RESNET, np.float16, "wgrad v4 path")
    with gpuconv.use_backend("emulator"), kernels.use_versions(wgrad="v4"):
        dw = gpuconv.grad.conv2d_weight(channels_last(x), w.shape, channels_last(dy), padding=1)
    assert calls == []  # _wgrad_launch (the NCHW launcher) never ran
    assert is_channels_last(dw)
    assert_close(dw, reference.conv2d_weight(x, dy, g), np.float16, what="dw on NHWC, v4")


def test_conv2d_on_an_empty_channels_last_batch():
    x = channels_last(np.zeros((0, 8, 5, 5), np.float16))
    w = np.ones((4, 8, 3, 3), np.float16)
    with gpuconv.use_backend("emulator"):
        y = gpuconv.conv2d(x, w)
    assert y.shape == (0, 4, 3, 3)


# ----------------------------------------------------------------------------------------
# selection


RESNET_3X3 = conv2d_geometry((32, 64, 56, 56), (64, 64, 3, 3), padding=1)


def test_heuristic_takes_v4_for_channels_last_where_it_takes_v3(monkeypatch):
    monkeypatch.delenv(kernels.ENV_TF32, raising=False)
    h = kernels.heuristic_version
    for dtype in SIXTEEN_BIT:
        assert h("fprop", RESNET_3X3, dtype, 90) == "v3"
        assert h("fprop", RESNET_3X3, dtype, 90, layout="nhwc") == "v4"
        assert h("fprop", RESNET_3X3, dtype, 75, layout="nhwc") == "v2"   # no tensor-core mma
        assert h("fprop", RESNET_3X3, dtype, None, layout="nhwc") == "v2"  # CPU runtime
    assert h("fprop", RESNET_3X3, np.float32, 90, layout="nhwc") == "v2"  # TF32 is opt-in
    with kernels.allow_tf32():
        assert h("fprop", RESNET_3X3, np.float32, 90, layout="nhwc") == "v4"
    assert h("fprop", RESNET_3X3, np.float64, 90, layout="nhwc") == "v2"
    assert h("dgrad", RESNET_3X3, np.float16, 90, layout="nhwc") == "v4"
    assert h("dgrad", RESNET_3X3, np.float16, 90) == "v3"
    assert h("wgrad", RESNET_3X3, np.float16, 90, layout="nhwc") == "v4"
    assert h("wgrad", RESNET_3X3, np.float16, 90) == "v3"
    assert h("wgrad", RESNET_3X3, np.float16, None, layout="nhwc") == "v2"


@pytest.mark.parametrize("op", OPS)
def test_v4_exists_for_16_bit_types_and_float32_only(op):
    names = kernels.name_expressions(f"conv2d_{op}.cu")
    for ctype in ("__half", "__nv_bfloat16", "float"):
        assert f"conv2d_{op}_v4_nhwc_mma<{ctype}>" in names
    assert f"conv2d_{op}_v4_nhwc_mma<double>" not in names
    with pytest.raises(ValueError, match="float16"):
        kernels.select_version(op, RESNET_3X3, np.float64, version="v4")


def test_autotune_keeps_channels_last_choices_apart():
    plain = kernels.autotune_key("GPU", "fprop", np.float16, RESNET_3X3)
    nhwc = kernels.autotune_key("GPU", "fprop", np.float16, RESNET_3X3, layout="nhwc")
    assert nhwc == plain.replace("|fprop|", "|fprop/nhwc|")


# ----------------------------------------------------------------------------------------
# v5: fprop, dgrad and wgrad v4 on wgmma (sm_90a; emulated here with mma.m16n8k16 over the
# same shared-memory coordinates: mma.cuh's WgmmaTile (fprop, dgrad: K-major) and WgmmaMnTile
# (wgrad: MN-major, both operands transposed), the layouts the descriptors describe)

V5_OPS = ["fprop", "dgrad", "wgrad"]
# Every v5 kernel: fprop and dgrad also in their 128 x 128 tile configuration ("v5:128x128":
# m64n128k16, two B pieces per thread).
V5_CASES = [(op, v) for op in V5_OPS for v in kernels.variants(op) if kernels.base_version(v) == "v5"]
V5_IDS = [f"{op}-{v}" for op, v in V5_CASES]
WIDE = ConvProblem("nhwc_wide_columns", "136 filters and 136 channels: two column tiles of "
                   "128, the second 8 wide; 42 pixels, a partial row tile", N=1, C=136, H=6,
                   W=7, K=136, R=3, S=3, padding=1)
ODD = ConvProblem("nhwc_odd_columns", "135 filters, 100 channels: no 16-byte pieces (element "
                  "loads) in either operand of fprop or dgrad; a 128-column tile whose second "
                  "pass of rows is partly real (dgrad: 100 of 128), two for fprop (135)", N=1,
                  C=100, H=5, W=6, K=135, R=3, S=3, padding=1)
V5_PROBLEMS = PROBLEMS + [RESNET, WIDE, ODD]


@pytest.mark.parametrize("problem", V5_PROBLEMS, ids=[p.name for p in V5_PROBLEMS])
@pytest.mark.parametrize("dtype", SIXTEEN_BIT, ids=lambda d: d.name)
@pytest.mark.parametrize("op,version", V5_CASES, ids=V5_IDS)
def test_v5_against_the_reference(op, version, dtype, problem):
    out, expected, _ = run_nhwc(get_runtime("emulator"), problem, dtype, version=version, op=op)
    assert compare(out, expected, dtype), f"{op} {version} {problem.name} {dtype.name}"


# fprop x, w; dgrad dy, w (dgrad copies w into an aligned w_t first: that case checks the
# misaligned w is read right, ODD above reaches dgrad's element loads); wgrad x, dy
@pytest.mark.parametrize("operand", ["first", "second"])
@pytest.mark.parametrize("op,version", V5_CASES, ids=V5_IDS)
def test_v5_with_a_misaligned_operand_takes_the_element_loads(op, version, operand):
    offsets = {"x_offset": 1} if operand == "first" else {"w_offset": 1}
    for problem in (PROBLEMS[0], WIDE):
        out, expected, _ = run_nhwc(get_runtime("emulator"), problem, np.dtype(np.float16),
                                    version=version, op=op, **offsets)
        assert compare(out, expected, np.float16), problem.name


@pytest.mark.parametrize("problem", [RESNET, WIDE], ids=[RESNET.name, WIDE.name])
@pytest.mark.parametrize("op,version", V5_CASES, ids=V5_IDS)
def test_v5_gives_v4s_bits_where_v4_sums_alike(op, version, problem):
    """v5 multiplies the same tiles in the same k16 order as v4 (the emulation runs
    mma.m16n8k16 per warp over each k16 slice), so on the CPU runtime its results are v4's,
    bit for bit: the core-matrix layouts and the warpgroup rows are an exact re-arrangement
    (wgrad: with the same split-K and second pass), and 128 columns instead of 64 change no
    accumulator's reduction order."""
    rt = get_runtime("emulator")
    v4, _, _ = run_nhwc(rt, problem, np.dtype(np.float16), version="v4", op=op)
    v5, _, _ = run_nhwc(rt, problem, np.dtype(np.float16), version=version, op=op)
    assert v4.tobytes() == v5.tobytes()


@pytest.mark.parametrize("op,version", V5_CASES, ids=V5_IDS)
def test_swapping_two_lanes_breaks_v5(op, version):
    out, expected, _ = run_nhwc(_emulator_built_with(*SWAP), RESNET, np.dtype(np.float16),
                                version=version, op=op)
    assert not compare(out, expected, np.float16), f"{op} {version}, lanes 1, 5 swapped: matched"


@pytest.mark.parametrize("op,version", V5_CASES, ids=V5_IDS)
def test_dropping_the_barrier_breaks_v5(op, version, monkeypatch):
    rt = _emulator_built_with("-DGPUCONV_TEST_DROP_SYNC=10")
    broken = []
    for order in ("forward", "greedy"):
        monkeypatch.setenv("GPUCONV_CPU_FIBER_ORDER", order)
        out, expected, _ = run_nhwc(rt, RESNET, np.dtype(np.float16), version=version, op=op)
        broken.append(not compare(out, expected, np.float16))
    assert any(broken), f"{op} {version} without barrier 10 still matched"


def test_v5_is_for_16_bit_types_and_never_picked_by_the_heuristic(monkeypatch):
    monkeypatch.delenv(kernels.ENV_TF32, raising=False)
    for op in V5_OPS:
        names = kernels.name_expressions(f"conv2d_{op}.cu")
        assert {f"conv2d_{op}_v5_nhwc_wgmma<{t}>" for t in ("__half", "__nv_bfloat16")} <= set(names)
        assert not any(n.startswith(f"conv2d_{op}_v5_nhwc_wgmma<f") for n in names)
        with pytest.raises(ValueError, match="float16"):
            kernels.select_version(op, RESNET_3X3, np.float32, version="v5")
        for arch in (None, 80, 90):
            assert kernels.base_version(
                kernels.heuristic_version(op, RESNET_3X3, np.float16, arch, "nhwc")) != "v5"
        # autotune times it (in each tile configuration) only where it runs as wgmma (sm_90a
        # on compute capability 9.0)
        for v in (v for o, v in V5_CASES if o == op):
            assert kernels.runs_well_here(op, v, np.float16, 90)
            assert not kernels.runs_well_here(op, v, np.float16, 80)
            assert not kernels.runs_well_here(op, v, np.float16, None)
            assert not kernels.runs_well_here(op, v, np.float32, 90)
