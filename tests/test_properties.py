"""Property-based tests (hypothesis): random valid geometry and data, every op on the CPU
runtime (and on the GPU when present) against the reference, max-pool v3 against v1 and the
fprop / dgrad v2 tile configurations against v2, bit for bit; and the reference itself
against PyTorch (CPU, float64).

Profiles: ``ci`` (default; 150 examples per test, 900 in all) and
``long`` for a run by hand: ``HYPOTHESIS_PROFILE=long python -m pytest tests/test_properties.py``.
Failing examples are kept in hypothesis's database (.hypothesis/) and replayed first; the
minimal failing case is printed.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gpuconv import checking, grad, kernels, reference, use_backend
from gpuconv.functional import conv2d, max_pool2d
from gpuconv.geometry import conv2d_geometry, pool2d_geometry
from gpuconv.runtime import cuda_available

settings.register_profile("ci", max_examples=150, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
# CI's second pass, under the CPU runtime's ASan + UBSan build (several times slower).
settings.register_profile("sanitizer", max_examples=50, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

RUNTIMES = ["emulator", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not cuda_available(), reason="no CUDA device visible to CuPy")])]
DTYPES = st.sampled_from(list(checking.DTYPES))  # float16, bfloat16, float32, float64
small = st.integers


@st.composite
def conv_problems(draw):
    groups = draw(small(1, 3))
    C, K = groups * draw(small(1, 3)), groups * draw(small(1, 3))
    R, S = draw(small(1, 4)), draw(small(1, 4))
    stride = draw(st.one_of(small(1, 3), st.tuples(small(1, 3), small(1, 3))))
    dilation = draw(st.one_of(small(1, 3), st.tuples(small(1, 2), small(1, 3))))
    paddings = [small(0, 3), st.tuples(small(0, 3), small(0, 2)), st.just("valid"), st.just("full")]
    if stride in (1, (1, 1)):
        paddings.append(st.just("same"))
    padding = draw(st.one_of(*paddings))
    x_shape = (draw(small(0, 3)), C, draw(small(1, 12)), draw(small(1, 12)))
    w_shape = (K, C // groups, R, S)
    try:
        g = conv2d_geometry(x_shape, w_shape, stride, padding, dilation, groups)
    except ValueError:
        assume(False)  # e.g. a kernel larger than the padded input: not a valid call
    return g, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@st.composite
def pool_problems(draw):
    kernel = (draw(small(1, 4)), draw(small(1, 4)))
    stride = draw(st.one_of(st.none(), small(1, 3), st.tuples(small(1, 3), small(1, 3))))
    padding = (draw(small(0, kernel[0] // 2)), draw(small(0, kernel[1] // 2)))
    dilation = draw(st.one_of(small(1, 2), st.tuples(small(1, 3), small(1, 2))))
    ceil_mode = draw(st.booleans())
    x_shape = (draw(small(0, 2)), draw(small(1, 3)), draw(small(1, 12)), draw(small(1, 12)))
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
              ceil_mode=ceil_mode)
    try:
        g = pool2d_geometry(x_shape, **kw)
    except ValueError:
        assume(False)
    return g, kw


def _data(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _on(runtime):
    if runtime == "cuda":
        import cupy
        return cupy.asarray, cupy.asnumpy
    return (lambda a: a), np.asarray


@pytest.mark.parametrize("runtime", RUNTIMES)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=conv_problems(), dtype=DTYPES, seed=small(0, 2**16), bias=st.booleans())
def test_conv_ops_match_reference(runtime, problem, dtype, seed, bias):
    g, kw = problem
    to_dev, to_host = _on(runtime)
    x, w, dy = _data(g.x_shape, dtype, seed), _data(g.w_shape, dtype, seed + 1), _data(g.y_shape, dtype, seed + 2)
    b = _data((g.K,), dtype, seed + 3) if bias else None
    with use_backend(runtime):
        y = conv2d(to_dev(x), to_dev(w), None if b is None else to_dev(b), **kw)
        dx = grad.conv2d_input(g.x_shape, to_dev(w), to_dev(dy), **kw)
        dw = grad.conv2d_weight(to_dev(x), g.w_shape, to_dev(dy), **kw)
        db = grad.conv2d_bias(to_dev(dy))
    checking.assert_close(to_host(y), reference.conv2d(x, w, b, g), dtype, what="conv2d")
    checking.assert_close(to_host(dx), reference.conv2d_input(dy, w, g), dtype, what="conv2d_input")
    checking.assert_close(to_host(dw), reference.conv2d_weight(x, dy, g), dtype, what="conv2d_weight")
    checking.assert_close(to_host(db), reference.conv2d_bias(dy), dtype, what="conv2d_bias")


@pytest.mark.parametrize("runtime", RUNTIMES)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=pool_problems(), dtype=DTYPES, seed=small(0, 2**16),
       special=st.sampled_from(["distinct", "ties", "nan_inf"]))
def test_max_pool_matches_reference(runtime, problem, dtype, seed, special):
    g, kw = problem
    to_dev, to_host = _on(runtime)
    rng = np.random.default_rng(seed)
    if special == "distinct":
        x = checking.distinct_values(g.x_shape, dtype, rng)
    else:  # few distinct values: many ties; optionally NaN and +-inf sprinkled in
        choices = [0.0, 1.0, -1.0] + ([np.nan, np.inf, -np.inf] if special == "nan_inf" else [])
        x = rng.choice(choices, size=g.x_shape).astype(dtype)
    dy = _data(g.y_shape, dtype, seed + 1)
    with use_backend(runtime):
        y, idx = max_pool2d(to_dev(x), return_indices=True, **kw)
        dx = grad.max_pool2d_input(to_dev(dy), idx, g.x_shape, **kw)
    want_y, want_idx = reference.max_pool2d(x, g)
    checking.assert_close(to_host(y), want_y, dtype, what="max_pool2d")
    np.testing.assert_array_equal(to_host(idx), want_idx, err_msg="max_pool2d indices")
    checking.assert_close(to_host(dx), reference.max_pool2d_input(dy, want_idx, g), dtype,
                          what="max_pool2d_input")


@pytest.mark.parametrize("runtime", RUNTIMES)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=pool_problems(), dtype=DTYPES, seed=small(0, 2**16),
       special=st.sampled_from(["ties", "nan_inf"]))
def test_max_pool_v3_is_bitwise_v1(runtime, problem, dtype, seed, special):
    """The vectorized max-pool (v3) gives v1's y, indices and dx, bit for bit."""
    g, kw = problem
    to_dev, to_host = _on(runtime)
    rng = np.random.default_rng(seed)
    choices = [0.0, 1.0, -1.0] + ([np.nan, np.inf, -np.inf] if special == "nan_inf" else [])
    x = rng.choice(choices, size=g.x_shape).astype(dtype)
    dy = _data(g.y_shape, dtype, seed + 1)
    runs = []
    for version in ("v1", "v3"):
        with use_backend(runtime), kernels.use_versions(pool_fwd=version, pool_bwd=version):
            y, idx = max_pool2d(to_dev(x), return_indices=True, **kw)
            dx = grad.max_pool2d_input(to_dev(dy), idx, g.x_shape, **kw)
        runs.append([np.ascontiguousarray(to_host(a)).view(np.uint8) for a in (y, idx, dx)])
    for what, a, b in zip(("y", "indices", "dx"), *runs):
        assert np.array_equal(a, b), f"max-pool v3 {what} differ from v1's"


@pytest.mark.parametrize("runtime", RUNTIMES)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=conv_problems(), dtype=DTYPES, seed=small(0, 2**16), bias=st.booleans())
def test_conv_v2_tile_configurations_match_the_reference_bitwise_alike(runtime, problem, dtype,
                                                                      seed, bias):
    """fprop and dgrad v2 in every tile configuration (kernels.TILE_CONFIGS) on random
    geometry: within tolerance of the reference, and each configuration bit for bit v2's."""
    g, kw = problem
    to_dev, to_host = _on(runtime)
    x, w, dy = _data(g.x_shape, dtype, seed), _data(g.w_shape, dtype, seed + 1), _data(g.y_shape, dtype, seed + 2)
    b = _data((g.K,), dtype, seed + 3) if bias else None
    configs = [v for v in kernels.variants("fprop") if v.split(":")[0] == "v2"]
    runs = []
    for version in configs:
        with use_backend(runtime), kernels.use_versions(fprop=version, dgrad=version):
            y = conv2d(to_dev(x), to_dev(w), None if b is None else to_dev(b), **kw)
            dx = grad.conv2d_input(g.x_shape, to_dev(w), to_dev(dy), **kw)
        runs.append([np.ascontiguousarray(to_host(a)) for a in (y, dx)])
    checking.assert_close(runs[0][0], reference.conv2d(x, w, b, g), dtype, what="conv2d v2")
    checking.assert_close(runs[0][1], reference.conv2d_input(dy, w, g), dtype,
                          what="conv2d_input v2")
    for version, (y, dx) in zip(configs[1:], runs[1:]):
        assert y.tobytes() == runs[0][0].tobytes(), f"conv2d {version} differs from v2"
        assert dx.tobytes() == runs[0][1].tobytes(), f"conv2d_input {version} differs from v2"


# ----------------------------------------------------------------------------------------
# the reference against PyTorch itself (CPU, float64) on random geometry: the rules the
# reference encodes (padding strings, asymmetric 'same' padding, dilation, groups, ceil_mode,
# which window an index names, how gradients are routed) are PyTorch's, not only on the
# curated problems


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # PyTorch's note: a padded copy
@given(problem=conv_problems(), seed=small(0, 2**16), bias=st.booleans())
def test_reference_conv_ops_match_torch(problem, seed, bias):
    torch = _torch()
    g, kw = problem
    assume(kw["padding"] != "full")  # gpuconv's own padding string; PyTorch has none
    x, w, dy = (_data(s, np.float64, seed + i) for i, s in enumerate(
        (g.x_shape, g.w_shape, g.y_shape)))
    b = _data((g.K,), np.float64, seed + 3) if bias else None
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    ty = torch.nn.functional.conv2d(tx, tw, tb, **kw)
    ty.backward(torch.tensor(dy))
    close = dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(reference.conv2d(x, w, b, g), ty.detach().numpy(), **close)
    np.testing.assert_allclose(reference.conv2d_input(dy, w, g), tx.grad.numpy(), **close)
    np.testing.assert_allclose(reference.conv2d_weight(x, dy, g), tw.grad.numpy(), **close)
    if bias:
        np.testing.assert_allclose(reference.conv2d_bias(dy), tb.grad.numpy(), **close)


@given(problem=pool_problems(), seed=small(0, 2**16),
       special=st.sampled_from(["distinct", "ties", "nan_inf"]))
def test_reference_max_pool_matches_torch(problem, seed, special):
    """Values and indices element by element, ties, NaN and +-inf included (PyTorch's CPU
    max-pool), and the gradient routed through the indices."""
    torch = _torch()
    g, kw = problem
    assume(g.N > 0)
    rng = np.random.default_rng(seed)
    if special == "distinct":
        x = checking.distinct_values(g.x_shape, np.float64, rng)
    else:
        choices = [0.0, 1.0, -1.0] + ([np.nan, np.inf, -np.inf] if special == "nan_inf" else [])
        x = rng.choice(choices, size=g.x_shape).astype(np.float64)
    dy = _data(g.y_shape, np.float64, seed + 1)
    tx = torch.tensor(x, requires_grad=True)
    ty, tidx = torch.nn.functional.max_pool2d(tx, return_indices=True, **kw)
    ty.backward(torch.tensor(dy))
    y, idx = reference.max_pool2d(x, g)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    np.testing.assert_allclose(reference.max_pool2d_input(dy, idx, g), tx.grad.numpy(),
                               rtol=1e-12, atol=0)
