"""Channels-last (NHWC) bias gradient: bgrad v3 (conv2d_bgrad_v3_nhwc) and the path that hands
it channels-last dy as it is.

* kernels.conv2d_bgrad_nhwc runs every version on NHWC dy (v3 as it is, v1 / v2 through an
  NCHW copy) in every dtype against the reference, on geometries that reach each case of v3's
  launch: K below, not a multiple of and past one 32-filter block; one split and several; a
  grid x capped below the filter blocks (the block-stride loop); a misaligned dy;
* determinism: splits are a function of the geometry alone, and v3's bits do not change with
  the grid cap, dy's alignment, the CPU runtime's worker count or its fiber order; both of
  v3's barriers matter (fault injection);
* grad.conv2d_bias on a channels-last dy (also unbatched) runs v3 with the NCHW path's values
  on every backend, and gpuconv.torch's backward gives PyTorch's bias gradient;
* selection: the heuristic takes v3 for channels-last dy, never for NCHW dy.

The whole problem matrix for v3 (through NCHW arrays) is in tests/test_kernels.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import gpuconv
from gpuconv import checking, dispatch, kernels, reference
from gpuconv.checking import assert_close, compare
from gpuconv.dtypes import bfloat16
from gpuconv.geometry import conv2d_geometry
from gpuconv.problems import CONV_PROBLEMS
from gpuconv.runtime import get_runtime
from gpuconv.validation import is_channels_last

from helpers import rng_for
from test_kernels import host, misaligned, on, poisoned
from test_tensor_core import _emulator_built_with

DTYPES = [np.dtype(np.float16), np.dtype(bfloat16), np.dtype(np.float32), np.dtype(np.float64)]
VERSIONS = list(kernels.VERSIONS["bgrad"])  # v1, v2 (NCHW copies), v3 (NHWC as it is)

# dy (N, P, Q, K): each shape names the case of v3's launch it is for.
SHAPES = {
    "k_below_a_warp": (2, 3, 4, 5),       # K = 5 < 32: most lanes idle; 24 rows, 1 split
    "k_one_block_plus": (1, 7, 9, 33),    # K = 33: a second block with one filter
    "k_not_multiple": (3, 7, 9, 100),     # K = 100: 4 blocks, the last 4 filters wide; 1 split
    "one_pixel": (1, 1, 1, 32),           # a single row: warps 1..7 sum nothing
    "split_k70": (4, 20, 20, 70),         # 1600 rows, 3 filter blocks: 6 splits
    "many_splits": (4, 40, 40, 8),        # 6400 rows of 8 filters: 25 splits
    "uneven_split": (3, 17, 19, 40),      # 969 rows: 3 splits of 323
}
SHAPE_IDS = list(SHAPES)


def geometry(shape):
    """dy (N,P,Q,K) described as grad.conv2d_bias does: a depthwise 1x1 conv's output."""
    N, P, Q, K = shape
    return conv2d_geometry((N, K, P, Q), (K, 1, 1, 1), groups=K)


def dy_nhwc(shape, dtype, tag="bgrad nhwc"):
    rng = rng_for(tag, shape, np.dtype(dtype).name)
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


def run_bgrad_nhwc(rt, shape, dtype, version="v3", offset=0, tag="bgrad nhwc"):
    """(db, reference) of kernels.conv2d_bgrad_nhwc on a random dy of ``shape`` (N,P,Q,K);
    ``offset`` places dy that many elements past an aligned start."""
    g = geometry(shape)
    dy = dy_nhwc(shape, dtype, tag)
    dy_dev = misaligned(dy, offset, rt.xp) if offset else on(rt, dy)
    db = poisoned(rt, (g.K,), dtype)
    kernels.conv2d_bgrad_nhwc(rt, g, dy_dev, db, version=version)
    return host(db), reference.conv2d_bias(dy.transpose(0, 3, 1, 2))


# ----------------------------------------------------------------------------------------
# every version on NHWC dy


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("version", VERSIONS)
def test_bgrad_nhwc_against_the_reference(rt, version, dtype, shape):
    db, expected = run_bgrad_nhwc(rt, shape, dtype, version)
    assert_close(db, expected, dtype, what=f"bgrad {version} on NHWC dy {shape}")


def test_the_shapes_reach_the_cases_they_are_for():
    blocks = lambda s: -(-s[3] // kernels.BGRAD_V3_BLOCK[0])  # noqa: E731
    splits = {name: kernels.bgrad_splits(geometry(s)) for name, s in SHAPES.items()}
    assert splits == {"k_below_a_warp": 1, "k_one_block_plus": 1, "k_not_multiple": 1,
                      "one_pixel": 1, "split_k70": 6, "many_splits": 25, "uneven_split": 3}
    assert [blocks(SHAPES[n]) for n in ("k_below_a_warp", "k_one_block_plus",
                                         "k_not_multiple")] == [1, 2, 4]
    assert all(s[3] % kernels.BGRAD_V3_BLOCK[0] for n, s in SHAPES.items()
               if n.startswith("k_"))


def test_splits_are_a_function_of_the_geometry_alone(monkeypatch):
    """The split count (hence the summation order, hence db's bits) depends on N*P*Q and K
    only: not on the grid-x cap, nor on anything about the device."""
    for shape in SHAPES.values():
        g = geometry(shape)
        splits = kernels.bgrad_splits(g)
        rows = g.N * g.P * g.Q
        per = -(-rows // splits)
        assert 1 <= splits <= kernels.MAX_GRID_YZ
        assert (splits - 1) * per < rows <= splits * per  # the kernel's chunks: none empty
        assert splits == 1 or per >= kernels.BGRAD_V3_MIN_ROWS_PER_SPLIT
        monkeypatch.setattr(kernels, "BGRAD_V3_MAX_GRID_X", 1)
        assert kernels.bgrad_splits(g) == splits
        monkeypatch.undo()
    # The same sizes give the same count however they are spread over N, P and Q.
    assert kernels.bgrad_splits(geometry((4, 20, 20, 70))) == kernels.bgrad_splits(
        geometry((1, 1600, 1, 70)))
    # A huge reduction stays within the grid's y limit.
    huge = geometry((2**15, 1024, 1024, 1))
    assert kernels.bgrad_splits(huge) <= kernels.MAX_GRID_YZ
    assert kernels.supports("bgrad", "v3", huge)


@pytest.mark.parametrize("shape", [SHAPES["k_not_multiple"], SHAPES["split_k70"]],
                         ids=["one_split", "six_splits"])
def test_a_capped_grid_covers_every_filter_block_bitwise_alike(rt, shape, monkeypatch):
    """Grid x capped at 1 and 2 blocks (below the 3-4 filter blocks): the block-stride loop
    covers every filter, with the bits of the uncapped launch (each filter's sum does not
    depend on which block computes it)."""
    want, expected = run_bgrad_nhwc(rt, shape, np.float32)
    assert_close(want, expected, np.float32)
    for cap in (1, 2):
        monkeypatch.setattr(kernels, "BGRAD_V3_MAX_GRID_X", cap)
        got, _ = run_bgrad_nhwc(rt, shape, np.float32)
        assert got.tobytes() == want.tobytes(), f"grid x capped at {cap}"


@pytest.mark.parametrize("dtype", [np.dtype(np.float16), np.dtype(np.float64)],
                         ids=lambda d: d.name)
@pytest.mark.parametrize("version", VERSIONS)
def test_misaligned_dy(rt, version, dtype):
    """dy one element past an aligned start: right, and v3 gives the aligned run's bits."""
    shape = SHAPES["split_k70"]
    moved, expected = run_bgrad_nhwc(rt, shape, dtype, version, offset=1)
    assert_close(moved, expected, dtype, what=f"bgrad {version}, misaligned dy")
    aligned, _ = run_bgrad_nhwc(rt, shape, dtype, version)
    assert moved.tobytes() == aligned.tobytes()


def test_v3_through_nchw_arrays_is_v3_on_nhwc_arrays():
    """kernels.conv2d_bgrad(version='v3') copies NCHW dy to NHWC: the same kernel, the same
    bits."""
    rt = get_runtime("emulator")
    shape = SHAPES["split_k70"]
    g, dy = geometry(shape), dy_nhwc(shape, np.float32)
    db = poisoned(rt, (g.K,), np.float32)
    kernels.conv2d_bgrad(rt, g, np.ascontiguousarray(dy.transpose(0, 3, 1, 2)), db,
                         version="v3")
    nhwc, _ = run_bgrad_nhwc(rt, shape, np.float32)
    assert db.tobytes() == nhwc.tobytes()


def test_empty_batch_launches_nothing():
    rt = get_runtime("emulator")
    g = geometry((0, 3, 3, 40))
    db = poisoned(rt, (g.K,), np.float32)
    kernels.conv2d_bgrad_nhwc(rt, g, rt.xp.zeros((0, 3, 3, 40), np.float32), db, version="v3")
    assert np.isnan(db).all()  # contract: nothing launched, db untouched


# ----------------------------------------------------------------------------------------
# determinism and fault injection


_DIGEST = """
import hashlib, sys
sys.path.insert(0, {tests!r})
import numpy as np
import test_bgrad_nhwc as t
from gpuconv.runtime import get_runtime
rt = get_runtime("emulator")
outs = [t.run_bgrad_nhwc(rt, t.SHAPES[name], dtype, "v3", tag="digest")[0]
        for name in ("split_k70", "many_splits", "k_not_multiple")
        for dtype in (np.float16, np.float32, np.float64)]
print(hashlib.sha256(b"".join(a.tobytes() for a in outs)).hexdigest())
"""


def test_v3_is_bitwise_identical_across_cpu_worker_counts_and_fiber_orders():
    """As tests/test_reliability.py does for every op: 1 and 3 worker threads (the blocks, and
    the splits' partial sums, finish in other orders) and the threads of a block resumed
    forward, in reverse or greedily between barriers: one digest."""
    digests = set()
    for workers, order in (("1", "forward"), ("3", "forward"), ("2", "reverse"),
                           ("2", "greedy")):
        env = dict(os.environ, GPUCONV_CPU_WORKERS=workers, GPUCONV_CPU_FIBER_ORDER=order)
        run = subprocess.run(
            [sys.executable, "-c", _DIGEST.format(tests=os.path.dirname(__file__))],
            capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
        digests.add(run.stdout.strip())
    assert len(digests) == 1


@pytest.mark.parametrize("barrier", [8, 9])
def test_dropping_a_barrier_breaks_v3(barrier, monkeypatch):
    """Built without barrier 8 (partial sums stored before warp 0 adds them) or 9 (added
    before the next filter block's partials overwrite them; reached with the grid x capped
    at 1, so one block loops over the filter blocks), v3 is wrong in at least one fiber
    order; with both, right in every order."""
    monkeypatch.setattr(kernels, "BGRAD_V3_MAX_GRID_X", 1)
    shape = SHAPES["split_k70"]
    broken_rt = _emulator_built_with(f"-DGPUCONV_TEST_DROP_SYNC={barrier}")
    broken = []
    for order in ("forward", "reverse", "greedy"):
        monkeypatch.setenv("GPUCONV_CPU_FIBER_ORDER", order)
        db, expected = run_bgrad_nhwc(get_runtime("emulator"), shape, np.float32)
        assert_close(db, expected, np.float32, what=f"bgrad v3, every barrier, {order} order")
        db, expected = run_bgrad_nhwc(broken_rt, shape, np.float32)
        broken.append(not compare(db, expected, np.float32))
    assert any(broken), f"bgrad v3 without barrier {barrier} still matched in all 3 orders"


# ----------------------------------------------------------------------------------------
# grad.conv2d_bias and gpuconv.torch on channels-last dy


def channels_last(a):
    """``a``'s values in a channels-last buffer (what torch.channels_last gives)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_conv2d_bias_of_channels_last_dy(backend, dtype, monkeypatch):
    """grad.conv2d_bias on a channels-last dy (batched, and unbatched (K,P,Q) from a (P,Q,K)
    buffer) has the NCHW path's values: within tolerance (v3 and the NCHW versions sum in
    other orders; the reference's float64 sums too), and on the CPU runtime bit for bit
    what v3 gives through the NCHW path. Channels-last dy reaches the NHWC op as it is."""
    shape = SHAPES["split_k70"]
    dy = np.ascontiguousarray(dy_nhwc(shape, dtype, "grad").transpose(0, 3, 1, 2))  # NCHW
    ops = []
    run = dispatch.run
    monkeypatch.setattr(dispatch, "run", lambda op, *a: ops.append(op) or run(op, *a))
    with gpuconv.use_backend(backend):
        cl, cl1 = (gpuconv.grad.conv2d_bias(channels_last(dy)),
                   gpuconv.grad.conv2d_bias(channels_last(dy[:1])[0]))
        assert ops == ["conv2d_bgrad_nhwc"] * 2
        nchw, nchw1 = gpuconv.grad.conv2d_bias(dy), gpuconv.grad.conv2d_bias(dy[0])
        with kernels.use_versions(bgrad="v3"):
            v3 = gpuconv.grad.conv2d_bias(dy)
    assert cl.shape == (shape[3],) and cl.dtype == dtype and cl1.shape == (shape[3],)
    assert_close(cl, nchw, dtype, what=f"{backend}: channels-last vs NCHW dy")
    assert_close(cl1, nchw1, dtype, what=f"{backend}: unbatched channels-last vs NCHW dy")
    if backend == "emulator":
        assert cl.tobytes() == v3.tobytes()


@pytest.mark.parametrize("problem", [p for p in CONV_PROBLEMS if p.name in
                                     ("resnet_3x3_layer", "odd_sizes")], ids=lambda p: p.name)
def test_the_check_runs_v3_on_channels_last_dy_only(problem):
    for dtype in DTYPES:
        assert checking.kernel_versions("conv2d_bias_channels_last", problem, dtype) == ("v3",)
        assert "v3" not in checking.kernel_versions("conv2d_bias", problem, dtype)
    with gpuconv.use_backend("emulator"):
        result = checking.check_case("conv2d_bias_channels_last", problem, np.float16, version="v3")
    assert result, result.report


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
def test_torch_channels_last_backward_gives_torch_bias_grad(backend, monkeypatch):
    """A channels_last tensor through gpuconv.torch.conv2d, with a channels_last output
    gradient: the bias gradient is PyTorch's, computed by the NHWC op."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    import gpuconv.torch as gt

    gen = torch.Generator().manual_seed(5)
    x0, w0, b0 = (torch.randn(s, generator=gen, dtype=torch.float64)
                  for s in ((2, 8, 9, 7), (40, 8, 3, 3), (40,)))
    cl = torch.channels_last
    ops = []
    run = dispatch.run
    monkeypatch.setattr(dispatch, "run", lambda op, *a: ops.append(op) or run(op, *a))
    grads = []
    for conv in (gt.conv2d, F.conv2d):
        x, w = (t.contiguous(memory_format=cl).requires_grad_() for t in (x0, w0))
        b = b0.clone().requires_grad_()
        with gpuconv.use_backend(backend):
            y = conv(x, w, b, padding=1)
            dy = torch.randn(y.shape, generator=gen.manual_seed(6), dtype=torch.float64)
            y.backward(dy.contiguous(memory_format=cl))
        grads.append(b.grad)
    assert "conv2d_bgrad_nhwc" in ops and "conv2d_bgrad" not in ops
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------------------
# selection


RESNET_3X3 = conv2d_geometry((32, 64, 56, 56), (64, 64, 3, 3), padding=1)
SMALL = geometry((1, 3, 3, 8))


@pytest.mark.parametrize("g", [RESNET_3X3, SMALL, geometry(SHAPES["many_splits"])],
                         ids=["resnet_3x3", "small", "many_splits"])
def test_heuristic_takes_v3_for_channels_last_dy_only(g):
    h = kernels.heuristic_version
    for dtype in [None, *DTYPES]:
        for arch in (None, 75, 90):  # not a tensor-core kernel: every device, the CPU runtime
            assert h("bgrad", g, dtype, arch, layout="nhwc") == "v3"
            assert h("bgrad", g, dtype, arch) in ("v1", "v2")
            assert h("bgrad", g, dtype, arch, layout="nchw") in ("v1", "v2")


def test_default_launches_follow_the_layout():
    from test_selection import A, Recorder
    rt = Recorder()
    kernels.conv2d_bgrad(rt, RESNET_3X3, A(), A())
    assert rt.launches == ["conv2d_bgrad_v2_tree"]
    rt = Recorder()
    kernels.conv2d_bgrad_nhwc(rt, RESNET_3X3, A(), A())
    assert rt.launches == ["conv2d_bgrad_v3_nhwc", "conv2d_wgrad_v2_sum_splits"]
    rt = Recorder()
    kernels.conv2d_bgrad_nhwc(rt, SMALL, A(), A())  # one split: no second pass
    assert rt.launches == ["conv2d_bgrad_v3_nhwc"]
    rt = Recorder()
    kernels.conv2d_bgrad_nhwc(rt, RESNET_3X3, A(), A(), version="v1")  # an NCHW copy
    assert rt.launches == ["conv2d_bgrad_v1_direct"]


def test_autotune_keeps_the_layouts_apart():
    key = kernels.autotune_key("GPU", "bgrad", np.float32, RESNET_3X3, layout="nhwc")
    assert "|bgrad/nhwc|" in key
    assert key != kernels.autotune_key("GPU", "bgrad", np.float32, RESNET_3X3)


def test_is_channels_last_sees_the_dy_this_path_takes():
    dy = np.zeros((2, 40, 3, 4), np.float32)
    assert is_channels_last(channels_last(dy)) and not is_channels_last(dy)
    assert not is_channels_last(channels_last(dy[:, :1]))  # K = 1: both layouts, NCHW path
