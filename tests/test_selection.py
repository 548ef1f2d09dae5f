"""Kernel selection in gpuconv.kernels: the heuristic, the overrides (``version=`` and
$GPUCONV_KERNEL_VERSION), and autotuning's choice and cache file (with a fake timer and a
fake device, so it runs without a GPU; on the CPU runtime autotune falls back to the
heuristic).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpuconv import kernels
from gpuconv.geometry import conv2d_geometry, pool2d_geometry


class Recorder:
    """A runtime stand-in that records which kernels launch instead of running them."""

    xp = np

    def __init__(self, name="emulator"):
        self.name = name
        self.launches = []     # kernel templates
        self.expressions = []  # full name expressions (dtype, tile configuration)

    def function(self, source_name, name_expression):
        def launch(grid, block, args):
            self.launches.append(name_expression.split("<")[0])
            self.expressions.append(name_expression)
        return launch


class A:
    """Just enough of an array for kernels.py: a dtype (and a transpose, for the launchers
    that convert between layouts)."""

    shape = (1, 1, 1, 1)

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)

    def transpose(self, *axes):
        return self

    def __setitem__(self, index, value):  # a layout copy back into the result
        pass


class LayoutCopies:
    """The array module of a Recorder whose launchers convert layouts (A in, A out)."""

    ascontiguousarray = staticmethod(lambda a: a)
    empty = zeros = staticmethod(lambda shape, dtype: A(dtype))


@pytest.fixture(autouse=True)
def clean(monkeypatch, tmp_path):
    monkeypatch.delenv(kernels.ENV_VERSION, raising=False)
    monkeypatch.delenv(kernels.ENV_AUTOTUNE, raising=False)
    monkeypatch.setenv(kernels.ENV_SELF_CHECK, "0")  # a Recorder computes nothing to check
    monkeypatch.setenv("GPUCONV_CACHE_DIR", str(tmp_path / "cache"))
    kernels.clear_autotune_memory()
    yield
    kernels.clear_autotune_memory()


RESNET_3X3 = conv2d_geometry((32, 64, 56, 56), (64, 64, 3, 3), padding=1)
RESNET_1X1 = conv2d_geometry((1, 1024, 14, 14), (256, 1024, 1, 1))
DEPTHWISE = conv2d_geometry((32, 512, 14, 14), (512, 1, 3, 3), padding=1, groups=512)
DEPTHWISE_SMALL = conv2d_geometry((1, 8, 6, 6), (8, 1, 3, 3), padding=1, groups=8)
TINY = conv2d_geometry((1, 1, 5, 5), (1, 1, 3, 3))
STEM_POOL = pool2d_geometry((32, 64, 112, 112), 3, stride=2, padding=1)


# ----------------------------------------------------------------------------------------
# heuristic


@pytest.mark.parametrize("g,expected", [
    (RESNET_3X3, {"fprop": "v2", "dgrad": "v2", "wgrad": "v2", "bgrad": "v2"}),
    (RESNET_1X1, {"fprop": "v2", "dgrad": "v2", "wgrad": "v2", "bgrad": "v1"}),
    # depthwise: 1 filter and 1 channel per group -> the GEMM tiles would be 1/64 full; but the
    # weight gradient's 200k-long reduction is split-K's case.
    (DEPTHWISE, {"fprop": "v1", "dgrad": "v1", "wgrad": "v2", "bgrad": "v2"}),
    (DEPTHWISE_SMALL, {"fprop": "v1", "dgrad": "v1", "wgrad": "v1", "bgrad": "v1"}),
    (TINY, {"fprop": "v1", "dgrad": "v1", "wgrad": "v1", "bgrad": "v1"}),
], ids=["resnet_3x3", "resnet_1x1_batch1", "depthwise", "depthwise_small", "tiny"])
def test_heuristic(g, expected):
    assert {op: kernels.heuristic_version(op, g) for op in expected} == expected


def test_tile_configurations_are_versions_of_their_own():
    assert kernels.variants("fprop") == ("v1", "v2", "v2:128x128", "v2:64x32", "v3", "v4", "v5",
                                         "v5:128x128")
    assert kernels.variants("dgrad") == kernels.variants("fprop")
    assert kernels.variants("wgrad") == kernels.VERSIONS["wgrad"]  # none for wgrad (split-K)
    base, tiles = kernels.split_version("fprop", "v2:128x128")
    assert base == "v2"
    assert (tiles.BM, tiles.BN, tiles.TM, tiles.TN, tiles.config) == (128, 128, 8, 8, 1)
    assert kernels.split_version("dgrad", "v2")[1] == kernels.DGRAD_V2
    assert kernels.split_version("fprop", "v3") == ("v3", None)
    base, tiles = kernels.split_version("dgrad", "v5:128x128")
    assert base == "v5" and (tiles.BM, tiles.BN, tiles.BK, tiles.threads, tiles.config) == (
        128, 128, 32, 256, 1)
    assert kernels.split_version("dgrad", "v5")[1] == kernels.DGRAD_V3
    assert [kernels.base_version(v) for v in ("v5:128x128", "v2:64x32", "v3")] == ["v5", "v2", "v3"]
    for op, bad in (("fprop", "v2:32x32"), ("fprop", "v3:128x128"), ("wgrad", "v2:128x128"),
                    ("wgrad", "v5:128x128"), ("fprop", "v5:64x32"), ("fprop", "v2:")):
        with pytest.raises(ValueError, match="has versions"):
            kernels.select_version(op, RESNET_3X3, np.float32, version=bad)
    # each configuration is its own kernel instance: <T, CFG>
    names = kernels.name_expressions("conv2d_fprop.cu")
    assert {"conv2d_fprop_v2_implicit_gemm<float>", "conv2d_fprop_v2_implicit_gemm<float, 1>",
            "conv2d_fprop_v2_implicit_gemm<double, 2>", "conv2d_fprop_v5_nhwc_wgmma<__half, 1>",
            "conv2d_fprop_v5_nhwc_wgmma<__nv_bfloat16, 1>"} <= set(names)
    assert "conv2d_fprop_v5_nhwc_wgmma<float, 1>" not in names  # v5: 16-bit types only


def test_heuristic_takes_small_v2_tiles_where_128x64_leaves_multiprocessors_idle():
    """RESNET_1X1 (batch 1, 14 x 14): 2 x 4 = 8 blocks of 128 x 64 for 132 SMs: 64 x 32 tiles
    (32 blocks); the batch-32 3 x 3 layer fills the device with 784 blocks: 128 x 64. No SM count
    (the CPU runtime): 128 x 64. Never 128 x 128 (not timed yet)."""
    h = kernels.heuristic_version
    for op in ("fprop", "dgrad"):
        assert h(op, RESNET_1X1, np.float32, 90, sms=132) == "v2:64x32"
        assert h(op, RESNET_1X1, np.float32, 90, sms=8) == "v2"   # 8 blocks, 8 SMs: full
        assert h(op, RESNET_1X1, np.float32, 90) == "v2"
        assert h(op, RESNET_3X3, np.float32, 90, sms=132) == "v2"
        assert h(op, RESNET_3X3, np.float16, 90, sms=132) == "v3"  # tensor cores first
        assert h(op, RESNET_1X1, np.float16, 90, sms=132) == "v2:64x32"  # M = 196: no v3
        assert h(op, TINY, np.float32, 90, sms=132) == "v1"
        for g in (RESNET_1X1, RESNET_3X3, TINY, DEPTHWISE):
            for sms in (None, 1, 132, 10**6):
                assert h(op, g, np.float32, 90, sms=sms) != "v2:128x128"
    assert h("wgrad", RESNET_1X1, np.float32, 90, sms=132) == "v2"


def test_heuristic_pools_take_v2_unless_a_plane_is_too_large():
    assert kernels.heuristic_version("pool_fwd", STEM_POOL) == "v2"
    assert kernels.heuristic_version("pool_bwd", STEM_POOL) == "v2"
    # v3 (vectorized) runs the stem too, but is not the default before a GPU has timed it.
    assert kernels.supports("pool_fwd", "v3", STEM_POOL)
    assert kernels.supports("pool_bwd", "v3", STEM_POOL)
    huge_plane = pool2d_geometry((1, 1, 2**16, 2**16), 2)  # H*W = 2^32
    assert kernels.heuristic_version("pool_fwd", huge_plane) == "v1"
    for version in ("v2", "v3"):
        assert "64-bit in-plane" in kernels.unsupported_reason("pool_bwd", version, huge_plane)


def test_a_plane_past_2_to_the_31_pixels_keeps_the_conv_gemms_off():
    """The fprop / dgrad GEMM kernels (v2 to v5) split a GEMM row into image and in-plane
    index with a 32-bit in-plane part, and the wgrad GEMMs (v2 to v4) walk their pixels as
    32-bit (n, p, q) digits (P*Q in int): a plane of 2^31 pixels or more goes to v1."""
    huge = conv2d_geometry((1, 16, 46341, 46341), (16, 16, 1, 1))  # 46341^2 > 2^31 pixels
    for op in ("fprop", "dgrad", "wgrad"):
        for version in kernels.VERSIONS[op][1:]:
            assert "32-bit in-plane" in kernels.unsupported_reason(op, version, huge), (op, version)
        assert kernels.heuristic_version(op, huge, np.float16, 90) == "v1"
    fine = conv2d_geometry((1, 16, 46340, 46340), (16, 16, 1, 1))   # 46340^2 < 2^31
    assert all(kernels.supports(op, v, fine) for op in ("fprop", "dgrad", "wgrad")
               for v in kernels.VERSIONS[op][1:])


def test_heuristic_never_picks_an_unsupported_version():
    many_groups = conv2d_geometry((1, 70000 * 16, 4, 4), (70000 * 16, 16, 1, 1), groups=70000)
    assert not kernels.supports("fprop", "v2", many_groups)
    assert kernels.heuristic_version("fprop", many_groups) == "v1"
    assert kernels.heuristic_version("wgrad", many_groups) == "v1"


def test_unknown_op_or_version_is_refused():
    with pytest.raises(ValueError, match="op must be"):
        kernels.heuristic_version("conv3d", TINY)
    with pytest.raises(ValueError, match="versions"):
        kernels.unsupported_reason("fprop", "v9", TINY)


def test_wgrad_splits_are_a_function_of_the_geometry_alone():
    assert kernels.wgrad_splits(RESNET_3X3) == kernels.wgrad_splits(RESNET_3X3)
    # 1 x 9 tiles: split until ~264 blocks (the reduction is 100352 long: plenty of tiles).
    assert kernels.wgrad_splits(RESNET_3X3) == 30
    # A short reduction is not split below WGRAD_MIN_TILES_PER_SPLIT tiles per piece.
    assert kernels.wgrad_splits(TINY) == 1
    # Many groups: groups * splits stays within the grid's z limit.
    g = conv2d_geometry((64, 60000, 8, 8), (60000, 1, 3, 3), padding=1, groups=60000)
    assert g.groups * kernels.wgrad_splits(g) <= kernels.MAX_GRID_YZ


# ----------------------------------------------------------------------------------------
# overrides


def run_conv_ops(rt, g, **kw):
    a = A()
    kernels.conv2d_fprop(rt, g, a, a, None, a, **kw)
    kernels.conv2d_dgrad(rt, g, a, a, a, **kw)
    kernels.conv2d_wgrad(rt, g, a, a, a, **kw)
    kernels.conv2d_bgrad(rt, g, a, a, **kw)
    return rt.launches


def test_default_launches_follow_the_heuristic():
    launched = run_conv_ops(Recorder(), DEPTHWISE)
    # (512 groups already make 512 wgrad blocks: no split, so no second pass)
    assert launched == ["conv2d_fprop_v1_direct", "conv2d_dgrad_v1_direct",
                        "conv2d_wgrad_v2_implicit_gemm", "conv2d_bgrad_v2_tree"]
    launched = run_conv_ops(Recorder(), RESNET_3X3)
    assert launched == ["conv2d_fprop_v2_implicit_gemm", "conv2d_dgrad_v2_implicit_gemm",
                        "conv2d_wgrad_v2_implicit_gemm", "conv2d_wgrad_v2_sum_splits",
                        "conv2d_bgrad_v2_tree"]


def test_env_override_for_every_op(monkeypatch):
    monkeypatch.setenv(kernels.ENV_VERSION, "v1")
    assert run_conv_ops(Recorder(), RESNET_3X3) == [
        "conv2d_fprop_v1_direct", "conv2d_dgrad_v1_direct", "conv2d_wgrad_v1_direct",
        "conv2d_bgrad_v1_direct"]


def test_env_override_per_op(monkeypatch):
    monkeypatch.setenv(kernels.ENV_VERSION, " fprop=v2, wgrad = v1 ,")
    assert kernels.env_versions() == {"fprop": "v2", "wgrad": "v1"}
    launched = run_conv_ops(Recorder(), DEPTHWISE)  # fprop v2 even for depthwise
    assert launched == ["conv2d_fprop_v2_implicit_gemm", "conv2d_dgrad_v1_direct",
                        "conv2d_wgrad_v1_direct", "conv2d_bgrad_v2_tree"]


@pytest.mark.parametrize("text,match", [("fprop=v9", "versions"), ("conv=v1", "unknown op"),
                                        ("v7", "versions")])
def test_bad_env_override_is_refused(monkeypatch, text, match):
    monkeypatch.setenv(kernels.ENV_VERSION, text)
    with pytest.raises(ValueError, match=match):
        kernels.env_versions()


def test_argument_beats_env(monkeypatch):
    monkeypatch.setenv(kernels.ENV_VERSION, "v1")
    assert run_conv_ops(Recorder(), RESNET_3X3, version="v2")[0] == "conv2d_fprop_v2_implicit_gemm"


def test_an_unsupported_explicit_version_is_refused(monkeypatch):
    huge = conv2d_geometry((2**16, 1, 2048, 2048), (16, 1, 1, 1))
    with pytest.raises(ValueError, match="version="):
        kernels.select_version("fprop", huge, version="v2")
    monkeypatch.setenv(kernels.ENV_VERSION, "fprop=v2")
    with pytest.raises(ValueError, match="GPUCONV_KERNEL_VERSION"):
        kernels.select_version("fprop", huge)


# ----------------------------------------------------------------------------------------
# autotune (fake timer, fake device)


class FakeTimer:
    def __init__(self, times):
        self.times = times  # version -> ms
        self.calls = []

    def __call__(self, rt, launch):
        first = len(rt.launches)
        launch()  # the candidate really is launched (on the recorder)
        # its first kernel names it (a split-K second pass may follow), with its tiles
        version = next((v for v in ("v5", "v4", "v3", "v2") if f"_{v}_" in rt.launches[first]),
                       "v1")
        op = rt.launches[first].split("_")[1]  # conv2d_<op>_...
        for tiles in kernels.TILE_CONFIGS.get((op, version), ())[1:]:
            if rt.expressions[first].endswith(f", {tiles.config}>"):
                version += f":{tiles.shape}"
        self.calls.append(version)
        return self.times[version]


@pytest.fixture
def autotuning(monkeypatch):
    monkeypatch.setenv(kernels.ENV_AUTOTUNE, "1")
    monkeypatch.setattr(kernels, "_device_key", lambda rt: "Fake GPU sm_90")
    # v1 "faster", against the heuristic
    timer = FakeTimer({"v1": 1.0, "v2": 3.0, "v2:128x128": 3.5, "v2:64x32": 3.2, "v3": 4.0})
    monkeypatch.setattr(kernels, "_time_launch", timer)
    return timer


def test_autotune_times_every_candidate_once_and_caches(autotuning, monkeypatch):
    rt = Recorder("cuda")
    a = A()
    kernels.conv2d_fprop(rt, RESNET_3X3, a, a, None, a)
    # every version, v2 in each tile configuration
    assert sorted(autotuning.calls) == ["v1", "v2", "v2:128x128", "v2:64x32"]
    assert rt.launches[-1] == "conv2d_fprop_v1_direct"  # the winner runs last
    # In memory: no timing the second time.
    kernels.conv2d_fprop(rt, RESNET_3X3, a, a, None, a)
    assert len(autotuning.calls) == 4 and rt.launches[-1] == "conv2d_fprop_v1_direct"
    # On disk: a new process (memory cleared) reads the file, no timing.
    path = kernels.autotune_cache_path()
    data = json.loads(path.read_text())
    key = kernels.autotune_key("Fake GPU sm_90", "fprop", np.float32, RESNET_3X3)
    assert data["entries"] == {key: {"version": "v1",
                                     "candidates": ["v1", "v2", "v2:128x128", "v2:64x32"]}}
    kernels.clear_autotune_memory()
    kernels.conv2d_fprop(rt, RESNET_3X3, a, a, None, a)
    assert len(autotuning.calls) == 4
    # Another dtype, op or device is another entry.
    kernels.conv2d_fprop(rt, RESNET_3X3, A(np.float16), a, None, A(np.float16))
    monkeypatch.setattr(kernels, "_device_key", lambda rt: "Other GPU sm_80")
    kernels.conv2d_fprop(rt, RESNET_3X3, a, a, None, a)
    assert len(autotuning.calls) == 12
    assert len(json.loads(path.read_text())["entries"]) == 3


def test_autotune_can_pick_a_tile_configuration(autotuning):
    autotuning.times["v2:128x128"] = 0.5
    rt = Recorder("cuda")
    kernels.conv2d_dgrad(rt, RESNET_3X3, A(), A(), A())
    assert rt.expressions[-1] == "conv2d_dgrad_v2_implicit_gemm<float, 1>"
    key = kernels.autotune_key("Fake GPU sm_90", "dgrad", np.float32, RESNET_3X3)
    entry = json.loads(kernels.autotune_cache_path().read_text())["entries"][key]
    assert entry["version"] == "v2:128x128"


def test_autotune_times_wgmma_in_both_tile_configurations_on_sm90(autotuning, monkeypatch):
    """On compute capability 9.0 (the fake device's sm_90), channels-last float16: v4, v5 and
    v5:128x128 are candidates too, and the fastest runs."""
    monkeypatch.setattr(kernels, "device_arch", lambda rt: 90)
    autotuning.times.update({"v4": 2.0, "v5": 1.5, "v5:128x128": 0.2})
    rt = Recorder("cuda")
    rt.xp = LayoutCopies
    h = A(np.float16)
    kernels.conv2d_fprop_nhwc(rt, RESNET_3X3, h, h, None, h)
    assert sorted(autotuning.calls) == ["v1", "v2", "v2:128x128", "v2:64x32", "v3", "v4", "v5",
                                        "v5:128x128"]
    assert rt.expressions[-1] == "conv2d_fprop_v5_nhwc_wgmma<__half, 1>"
    key = kernels.autotune_key("Fake GPU sm_90", "fprop", np.float16, RESNET_3X3, layout="nhwc")
    assert json.loads(kernels.autotune_cache_path().read_text())["entries"][key]["version"] == (
        "v5:128x128")


def test_autotune_times_max_pool_v3_too(autotuning):
    """Every max-pool version is a candidate, v3 included (which the heuristic does not pick
    yet): it wins where it is fastest."""
    autotuning.times["v3"] = 0.5
    rt = Recorder("cuda")
    kernels.maxpool2d_fwd(rt, STEM_POOL, A(), A(), A(np.int64))
    kernels.maxpool2d_bwd(rt, STEM_POOL, A(), A(np.int64), A())
    assert sorted(autotuning.calls) == ["v1", "v1", "v2", "v2", "v3", "v3"]
    # each op: the three timed candidates, then the winner
    assert rt.launches[3] == "maxpool2d_fwd_v3_vec" and rt.launches[7] == "maxpool2d_bwd_v3_vec"


def test_autotune_skips_unsupported_candidates(autotuning):
    huge = conv2d_geometry((2**16, 1, 2048, 2048), (16, 1, 1, 1))
    assert kernels.select_version("fprop", huge, np.float32, Recorder("cuda"),
                                  launch=lambda v: None) == "v1"
    assert autotuning.calls == []  # a single candidate: nothing is timed
    assert not kernels.autotune_cache_path().exists()


def test_autotune_ignores_a_corrupt_or_stale_cache_file(autotuning):
    path = kernels.autotune_cache_path()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    rt = Recorder("cuda")
    kernels.conv2d_bgrad(rt, RESNET_3X3, A(), A())
    # (bgrad v3 is a candidate on NCHW arrays too, timed with its conversion to NHWC)
    assert autotuning.calls == ["v1", "v2", "v3"]
    assert json.loads(path.read_text())["entries"]  # rewritten whole
    # An entry naming a version that no longer exists is re-tuned ...
    data = json.loads(path.read_text())
    for entry in data["entries"].values():
        entry["version"] = "v0"
    path.write_text(json.dumps(data))
    kernels.clear_autotune_memory()
    kernels.conv2d_bgrad(rt, RESNET_3X3, A(), A())
    assert autotuning.calls == ["v1", "v2", "v3"] * 2
    # ... and so is one chosen among other candidates (a version added since), or one of the
    # first format (a bare version string).
    for stale in ({"version": "v2", "candidates": ["v1", "v2"]}, "v2"):
        data["entries"] = {k: stale for k in data["entries"]}
        path.write_text(json.dumps(data))
        kernels.clear_autotune_memory()
        kernels.conv2d_bgrad(rt, RESNET_3X3, A(), A())
    assert autotuning.calls == ["v1", "v2", "v3"] * 4


def test_autotune_on_the_cpu_runtime_is_the_heuristic(autotuning):
    rt = Recorder("emulator")
    kernels.conv2d_fprop(rt, RESNET_3X3, A(), A(), None, A())
    assert autotuning.calls == [] and rt.launches == ["conv2d_fprop_v2_implicit_gemm"]


def test_env_override_names_a_tile_configuration(monkeypatch):
    monkeypatch.setenv(kernels.ENV_VERSION, "fprop=v2:128x128,dgrad=v2:64x32")
    rt = Recorder()
    kernels.conv2d_fprop(rt, RESNET_3X3, A(), A(), None, A())
    kernels.conv2d_dgrad(rt, RESNET_3X3, A(np.float16), A(np.float16), A(np.float16))
    assert rt.expressions == ["conv2d_fprop_v2_implicit_gemm<float, 1>",
                              "conv2d_dgrad_v2_implicit_gemm<__half, 2>"]


def test_explicit_versions_beat_autotune(autotuning, monkeypatch):
    rt = Recorder("cuda")
    kernels.conv2d_fprop(rt, RESNET_3X3, A(), A(), None, A(), version="v2")
    monkeypatch.setenv(kernels.ENV_VERSION, "fprop=v2")
    kernels.conv2d_fprop(rt, RESNET_3X3, A(), A(), None, A())
    assert autotuning.calls == [] and rt.launches == ["conv2d_fprop_v2_implicit_gemm"] * 2


def test_cache_path(monkeypatch, tmp_path):
    monkeypatch.setenv("GPUCONV_CACHE_DIR", str(tmp_path / "a"))
    assert kernels.autotune_cache_path() == tmp_path / "a" / "autotune.json"
    monkeypatch.delenv("GPUCONV_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert kernels.autotune_cache_path() == tmp_path / "x" / "gpuconv" / "autotune.json"
