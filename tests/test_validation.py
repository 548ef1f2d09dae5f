"""Every invalid call raises ValueError/TypeError naming the argument, before any launch.

Each case: (id, exception type, word that must appear in the message, call).
"""

import numpy as np
import pytest

import gpuconv
from gpuconv import grad

f32 = np.float32
x = np.zeros((2, 4, 8, 8), f32)
w = np.zeros((6, 4, 3, 3), f32)
b = np.zeros(6, f32)
dy = np.zeros((2, 6, 6, 6), f32)                      # conv2d(x, w) output
py, pidx = gpuconv.max_pool2d(x, 2, return_indices=True)  # (2, 4, 4, 4)

CASES = [
    # conv2d: ranks, types, dtypes
    ("input_rank", ValueError, "input", lambda: gpuconv.conv2d(x[0, 0], w)),
    ("weight_rank", ValueError, "weight", lambda: gpuconv.conv2d(x, w[0])),
    ("bias_rank", ValueError, "bias", lambda: gpuconv.conv2d(x, w, b[None])),
    ("input_not_array", TypeError, "input", lambda: gpuconv.conv2d(x.tolist(), w)),
    ("weight_not_array", TypeError, "weight", lambda: gpuconv.conv2d(x, 3.0)),
    ("integer_dtype", TypeError, "input", lambda: gpuconv.conv2d(x.astype(np.int32), w)),
    ("complex_dtype", TypeError, "weight", lambda: gpuconv.conv2d(x, w.astype(np.complex64))),
    ("bool_dtype", TypeError, "input", lambda: gpuconv.conv2d(x.astype(bool), w)),
    ("mixed_dtypes", TypeError, "weight", lambda: gpuconv.conv2d(x, w.astype(np.float64))),
    ("mixed_bias_dtype", TypeError, "bias", lambda: gpuconv.conv2d(x, w, b.astype(np.float16))),
    # conv2d: hyper-parameters
    ("stride_zero", ValueError, "stride", lambda: gpuconv.conv2d(x, w, stride=0)),
    ("stride_negative", ValueError, "stride", lambda: gpuconv.conv2d(x, w, stride=(1, -2))),
    ("stride_float", TypeError, "stride", lambda: gpuconv.conv2d(x, w, stride=1.5)),
    ("stride_triple", TypeError, "stride", lambda: gpuconv.conv2d(x, w, stride=(1, 1, 1))),
    ("dilation_zero", ValueError, "dilation", lambda: gpuconv.conv2d(x, w, dilation=0)),
    ("padding_negative", ValueError, "padding", lambda: gpuconv.conv2d(x, w, padding=-1)),
    ("padding_unknown_string", ValueError, "padding", lambda: gpuconv.conv2d(x, w, padding="half")),
    ("padding_same_strided", ValueError, "same", lambda: gpuconv.conv2d(x, w, stride=2, padding="same")),
    ("groups_zero", ValueError, "groups", lambda: gpuconv.conv2d(x, w, groups=0)),
    ("groups_float", TypeError, "groups", lambda: gpuconv.conv2d(x, w, groups=2.0)),
    ("groups_not_dividing_C", ValueError, "groups",
     lambda: gpuconv.conv2d(np.zeros((1, 6, 5, 5), f32), np.zeros((4, 2, 3, 3), f32), groups=4)),
    ("groups_not_dividing_K", ValueError, "groups",
     lambda: gpuconv.conv2d(np.zeros((1, 4, 5, 5), f32), np.zeros((3, 2, 3, 3), f32), groups=2)),
    ("weight_channels", ValueError, "weight",
     lambda: gpuconv.conv2d(x, np.zeros((6, 3, 3, 3), f32))),
    ("bias_shape", ValueError, "bias", lambda: gpuconv.conv2d(x, w, np.zeros(5, f32))),
    ("kernel_larger_than_padded_input", ValueError, "kernel",
     lambda: gpuconv.conv2d(np.zeros((1, 4, 2, 8), f32), w)),
    ("dilated_kernel_too_large", ValueError, "kernel",
     lambda: gpuconv.conv2d(np.zeros((1, 4, 4, 4), f32), w, dilation=2)),
    ("zero_channels", ValueError, "input",
     lambda: gpuconv.conv2d(np.zeros((1, 0, 5, 5), f32), np.zeros((2, 0, 3, 3), f32))),
    ("zero_height", ValueError, "input", lambda: gpuconv.conv2d(np.zeros((1, 4, 0, 5), f32), w)),
    ("zero_kernel", ValueError, "weight",
     lambda: gpuconv.conv2d(x, np.zeros((6, 4, 0, 3), f32))),
    ("zero_out_channels", ValueError, "weight", lambda: gpuconv.conv2d(x, np.zeros((0, 4, 3, 3), f32))),
    # max_pool2d
    ("pool_input_rank", ValueError, "input", lambda: gpuconv.max_pool2d(x[0, 0], 2)),
    ("pool_integer_dtype", TypeError, "input", lambda: gpuconv.max_pool2d(x.astype(np.int64), 2)),
    ("pool_kernel_zero", ValueError, "kernel_size", lambda: gpuconv.max_pool2d(x, 0)),
    ("pool_kernel_string", TypeError, "kernel_size", lambda: gpuconv.max_pool2d(x, "2")),
    ("pool_stride_zero", ValueError, "stride", lambda: gpuconv.max_pool2d(x, 2, stride=0)),
    ("pool_padding_negative", ValueError, "padding", lambda: gpuconv.max_pool2d(x, 2, padding=-1)),
    ("pool_padding_string", TypeError, "padding", lambda: gpuconv.max_pool2d(x, 3, padding="same")),
    ("pool_padding_over_half", ValueError, "padding", lambda: gpuconv.max_pool2d(x, 3, padding=2)),
    ("pool_dilation_zero", ValueError, "dilation", lambda: gpuconv.max_pool2d(x, 2, dilation=0)),
    ("pool_kernel_too_large", ValueError, "kernel_size", lambda: gpuconv.max_pool2d(x, 9)),
    ("pool_window_all_padding", ValueError, "padding",
     lambda: gpuconv.max_pool2d(np.zeros((1, 1, 1, 1), f32), (1, 2), padding=(0, 1), dilation=2)),
    ("pool_ceil_mode_type", TypeError, "ceil_mode", lambda: gpuconv.max_pool2d(x, 2, ceil_mode="yes")),
    # grad.conv2d_input
    ("dgrad_input_size_len", ValueError, "input_size", lambda: grad.conv2d_input((2, 4, 8), w, dy)),
    ("dgrad_input_size_type", TypeError, "input_size", lambda: grad.conv2d_input(5, w, dy)),
    ("dgrad_input_size_disagrees", ValueError, "grad_output",
     lambda: grad.conv2d_input((2, 4, 9, 8), w, dy)),
    ("dgrad_batch_disagrees", ValueError, "grad_output",
     lambda: grad.conv2d_input((3, 4, 8, 8), w, dy)),
    ("dgrad_K_disagrees", ValueError, "grad_output",
     lambda: grad.conv2d_input(x.shape, np.zeros((5, 4, 3, 3), f32), dy)),
    ("dgrad_dtype", TypeError, "grad_output", lambda: grad.conv2d_input(x.shape, w, dy.astype(np.float64))),
    ("dgrad_stride", ValueError, "stride", lambda: grad.conv2d_input(x.shape, w, dy, stride=0)),
    # grad.conv2d_weight
    ("wgrad_weight_size_len", ValueError, "weight", lambda: grad.conv2d_weight(x, (6, 4, 3), dy)),
    ("wgrad_weight_size_type", TypeError, "weight_size", lambda: grad.conv2d_weight(x, None, dy)),
    ("wgrad_weight_size_disagrees", ValueError, "grad_output",
     lambda: grad.conv2d_weight(x, (6, 4, 2, 2), dy)),
    ("wgrad_rank_mismatch", ValueError, "grad_output", lambda: grad.conv2d_weight(x, w.shape, dy[0])),
    ("wgrad_mixed_dtypes", TypeError, "grad_output",
     lambda: grad.conv2d_weight(x, w.shape, dy.astype(np.float16))),
    ("wgrad_groups", ValueError, "groups", lambda: grad.conv2d_weight(x, w.shape, dy, groups=4)),
    # grad.conv2d_bias
    ("bgrad_rank", ValueError, "grad_output", lambda: grad.conv2d_bias(dy[0, 0])),
    ("bgrad_dtype", TypeError, "grad_output", lambda: grad.conv2d_bias(dy.astype(np.int8))),
    ("bgrad_empty_plane", ValueError, "grad_output", lambda: grad.conv2d_bias(np.zeros((2, 3, 0, 4), f32))),
    # grad.max_pool2d_input
    ("pool_bwd_indices_dtype", TypeError, "indices",
     lambda: grad.max_pool2d_input(py, pidx.astype(np.int32), x.shape, 2)),
    ("pool_bwd_indices_float", TypeError, "indices",
     lambda: grad.max_pool2d_input(py, pidx.astype(f32), x.shape, 2)),
    ("pool_bwd_indices_shape", ValueError, "indices",
     lambda: grad.max_pool2d_input(py, pidx[:, :, :3], x.shape, 2)),
    ("pool_bwd_indices_negative", ValueError, "indices",
     lambda: grad.max_pool2d_input(py, pidx - 1, x.shape, 2)),
    ("pool_bwd_indices_too_large", ValueError, "indices",
     lambda: grad.max_pool2d_input(py, pidx + 64, x.shape, 2)),
    ("pool_bwd_grad_output_shape", ValueError, "grad_output",
     lambda: grad.max_pool2d_input(py, pidx, x.shape, 3)),
    ("pool_bwd_input_size_len", ValueError, "input_size",
     lambda: grad.max_pool2d_input(py, pidx, (2, 4, 8, 8, 1), 2)),
    ("pool_bwd_padding", ValueError, "padding",
     lambda: grad.max_pool2d_input(py, pidx, x.shape, 2, padding=2)),
    # backends
    ("unknown_backend", ValueError, "backend", lambda: gpuconv.use_backend("tpu").__enter__()),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_invalid_argument_raises_naming_it(case, monkeypatch):
    _, exc_type, word, call = case
    launched = []
    import gpuconv.dispatch
    real_run = gpuconv.dispatch.run
    monkeypatch.setattr(gpuconv.dispatch, "run",
                        lambda *a, **k: launched.append(a) or real_run(*a, **k))
    with pytest.raises(exc_type) as info:
        call()
    assert word in str(info.value), f"message does not name {word!r}: {info.value}"
    assert not launched, "the error must come before any computation"


def test_bad_env_backend_is_named(monkeypatch):
    monkeypatch.setenv("GPUCONV_BACKEND", "gpu")
    with pytest.raises(ValueError, match="GPUCONV_BACKEND"):
        gpuconv.conv2d(x, w)


class _Device:
    """Stands in for cupy.cuda.Device: an id, and a context that makes it current."""

    def __init__(self, id):
        self.id = id

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _fake_cupy_array(shape, dtype=np.float32, device=0):
    """An object that passes for a cupy.ndarray in the library checks (no GPU needed): the
    checks read only its class's module and name, ndim, shape, dtype and device."""
    cls = type("ndarray", (), {"__module__": "cupy._core.core"})
    a = cls()
    a.shape, a.ndim, a.dtype, a.device = tuple(shape), len(shape), np.dtype(dtype), _Device(device)
    return a


def test_mixed_array_libraries_are_refused_before_anything_runs(monkeypatch):
    import gpuconv.dispatch
    monkeypatch.setattr(gpuconv.dispatch, "run", lambda *a, **k: pytest.fail("launched"))
    with pytest.raises(TypeError, match="one library.*input: cupy.*weight: numpy"):
        gpuconv.conv2d(_fake_cupy_array(x.shape), w)
    with pytest.raises(TypeError, match="one library"):
        grad.max_pool2d_input(_fake_cupy_array(py.shape), pidx, x.shape, 2)


def test_arrays_on_two_gpus_are_refused(monkeypatch):
    import gpuconv.dispatch
    monkeypatch.setattr(gpuconv.dispatch, "run", lambda *a, **k: pytest.fail("launched"))
    with pytest.raises(ValueError, match="one GPU.*input: device 0.*weight: device 1"):
        gpuconv.conv2d(_fake_cupy_array(x.shape), _fake_cupy_array(w.shape, device=1))


def test_public_functions_run_on_their_cupy_inputs_device():
    """Every public function of gpuconv.functional and gpuconv.grad makes its first CuPy
    array's device current (CuPy's element-wise work and allocations go to the current
    device: arrays on another GPU would otherwise be read from the wrong one). No GPU here:
    a stand-in for a CuPy array on device 3 records it."""
    import inspect

    from gpuconv import functional, grad, validation

    entered = []

    class Device:
        def __enter__(self):
            entered.append("enter 3")

        def __exit__(self, *exc):
            entered.append("exit 3")

    StandIn = type("ndarray", (), {"__module__": "cupy._core.core", "device": Device()})
    assert validation.library(StandIn()) == "cupy"
    seen = validation.on_inputs_device(lambda *a, **k: entered.append("run") or "result")
    assert seen(np.ones(2), None, weight=StandIn()) == "result"
    assert entered == ["enter 3", "run", "exit 3"]
    entered.clear()
    assert seen(np.ones(2), 7) == "result" and entered == ["run"]  # no CuPy array: as it is
    wrapper = validation.on_inputs_device(len).__code__
    public = [f for module in (functional, grad) for name, f in vars(module).items()
              if inspect.isfunction(f) and not name.startswith("_")
              and f.__module__ in (module.__name__, "gpuconv.validation")
              and getattr(f, "__wrapped__", f).__module__ == module.__name__]
    assert len(public) == 33
    assert all(f.__code__ is wrapper for f in public), [
        f.__name__ for f in public if f.__code__ is not wrapper]
