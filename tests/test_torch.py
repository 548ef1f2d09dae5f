"""gpuconv.torch: autograd functions and nn modules against torch.nn / torch.nn.functional.

CPU tensors run gpuconv's NumPy path (backend ``auto``); the ``gpu`` tests run the same checks
on CUDA tensors through DLPack and PyTorch's current stream, where a GPU and CuPy are present.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import gpuconv  # noqa: E402
import gpuconv.torch as gt  # noqa: E402

# (input shape, weight shape, keyword arguments)
CONV_CASES = [
    ((2, 3, 9, 8), (4, 3, 3, 3), dict()),
    ((2, 3, 9, 8), (4, 3, 3, 3), dict(stride=2, padding=1)),
    ((1, 4, 10, 11), (6, 2, 3, 2), dict(stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=2)),
    ((2, 4, 7, 7), (4, 1, 3, 3), dict(padding="same", groups=4)),  # depthwise
    ((2, 2, 6, 6), (3, 2, 2, 2), dict(padding="same")),  # even kernel: extra pad bottom/right
    ((3, 5, 5), (2, 3, 1, 1), dict(padding="valid")),  # unbatched, 1x1 filter
]

POOL_CASES = [
    ((2, 3, 8, 8), dict(kernel_size=2)),
    ((2, 3, 9, 7), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 10, 9), dict(kernel_size=(3, 2), stride=(2, 1), dilation=(2, 1), ceil_mode=True)),
    ((2, 7, 7), dict(kernel_size=3, stride=2, ceil_mode=True)),  # unbatched
]

# the ops added after conv2d / max_pool2d: (gpuconv.torch function, torch.nn.functional
# function, input shape, weight shape, keyword arguments)
NEW_CONV_CASES = [
    pytest.param(gt.conv1d, F.conv1d, (2, 3, 11), (4, 3, 3), dict(), id="conv1d"),
    pytest.param(gt.conv1d, F.conv1d, (2, 4, 12), (6, 2, 3),
                 dict(stride=2, padding=2, dilation=2, groups=2), id="conv1d-strided-groups"),
    pytest.param(gt.conv1d, F.conv1d, (2, 3, 9), (2, 3, 4), dict(padding="same"),
                 id="conv1d-same-even"),
    pytest.param(gt.conv1d, F.conv1d, (3, 10), (2, 3, 1), dict(padding="valid"),
                 id="conv1d-unbatched"),
    pytest.param(gt.conv3d, F.conv3d, (2, 2, 4, 5, 4), (3, 2, 2, 3, 2), dict(), id="conv3d"),
    pytest.param(gt.conv3d, F.conv3d, (1, 4, 5, 6, 5), (4, 2, 3, 2, 3),
                 dict(stride=(2, 1, 2), padding=(1, 0, 1), dilation=(1, 2, 1), groups=2),
                 id="conv3d-strided-groups"),
    pytest.param(gt.conv3d, F.conv3d, (1, 2, 4, 4, 4), (2, 2, 3, 3, 3), dict(padding="same"),
                 id="conv3d-same"),
    pytest.param(gt.conv3d, F.conv3d, (2, 3, 4, 4), (2, 2, 2, 2, 2), dict(),
                 id="conv3d-unbatched"),
    pytest.param(gt.conv_transpose2d, F.conv_transpose2d, (2, 3, 4, 5), (3, 2, 3, 3), dict(),
                 id="conv_transpose2d"),
    pytest.param(gt.conv_transpose2d, F.conv_transpose2d, (2, 4, 3, 4), (4, 3, 3, 2),
                 dict(stride=2, padding=1, output_padding=1), id="conv_transpose2d-strided"),
    pytest.param(gt.conv_transpose2d, F.conv_transpose2d, (1, 4, 4, 3), (4, 1, 2, 3),
                 dict(stride=(2, 1), padding=(1, 2), output_padding=(1, 1), groups=2,
                      dilation=(1, 2)), id="conv_transpose2d-groups-dilation"),
    pytest.param(gt.conv_transpose2d, F.conv_transpose2d, (3, 4, 4), (3, 2, 2, 2),
                 dict(stride=2), id="conv_transpose2d-unbatched"),
]

# (gpuconv.torch function, torch.nn.functional function, input shape, input offset, kwargs):
# the input is _distinct(shape) + offset, so Lp pooling with non-integer or odd p sees only
# positive values (offset 0.1) and max-style pooling has an unambiguous argmax
NEW_POOL_CASES = [
    pytest.param(gt.avg_pool2d, F.avg_pool2d, (2, 3, 8, 8), -0.5, dict(kernel_size=2),
                 id="avg_pool2d"),
    pytest.param(gt.avg_pool2d, F.avg_pool2d, (2, 3, 9, 7), -0.5,
                 dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), id="avg_pool2d-ceil"),
    pytest.param(gt.avg_pool2d, F.avg_pool2d, (1, 2, 10, 9), -0.5,
                 dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0),
                      count_include_pad=False), id="avg_pool2d-exclude-pad"),
    pytest.param(gt.avg_pool2d, F.avg_pool2d, (2, 7, 7), -0.5,
                 dict(kernel_size=3, stride=2, padding=1, divisor_override=4),
                 id="avg_pool2d-divisor-unbatched"),
    pytest.param(gt.lp_pool2d, F.lp_pool2d, (2, 3, 8, 8), -0.5, dict(norm_type=2, kernel_size=2),
                 id="lp_pool2d-p2-signed"),
    pytest.param(gt.lp_pool2d, F.lp_pool2d, (2, 3, 9, 7), 0.1,
                 dict(norm_type=3, kernel_size=3, stride=2, ceil_mode=True),
                 id="lp_pool2d-p3-ceil"),
    pytest.param(gt.lp_pool2d, F.lp_pool2d, (1, 2, 10, 9), 0.1,
                 dict(norm_type=1.5, kernel_size=(3, 2), stride=(2, 1)), id="lp_pool2d-p1.5"),
    pytest.param(gt.lp_pool2d, F.lp_pool2d, (2, 7, 7), -0.5,
                 dict(norm_type=float("inf"), kernel_size=3, stride=2, ceil_mode=True),
                 id="lp_pool2d-inf-unbatched"),
    pytest.param(gt.lp_pool2d, F.lp_pool2d, (1, 2, 6, 6), -0.5,
                 dict(norm_type=float("-inf"), kernel_size=2), id="lp_pool2d-minus-inf"),
]


def _distinct(shape, generator, dtype):
    """Values all distinct (a permutation plus jitter) so max-pool's argmax is unambiguous."""
    n = 1
    for d in shape:
        n *= d
    values = torch.randperm(n, generator=generator, dtype=torch.float64) / n
    return (values + 1e-3 * torch.rand(n, generator=generator, dtype=torch.float64) / n
            ).reshape(shape).to(dtype)


def _bias_size(op, w_shape, kwargs):
    """Output channels: weight.shape[0], or C_out/groups x groups for a transposed conv."""
    if op in (gt.conv_transpose2d, F.conv_transpose2d):
        return w_shape[1] * kwargs.get("groups", 1)
    return w_shape[0]


# ----------------------------------------------------------------------------------------
# gradcheck (float64, CPU)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", CONV_CASES)
def test_conv2d_gradcheck(x_shape, w_shape, kwargs):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(x_shape, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(w_shape, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(w_shape[0], generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: gt.conv2d(x, w, b, **kwargs), (x, w, b))


@pytest.mark.parametrize("x_shape, kwargs", POOL_CASES)
def test_max_pool2d_gradcheck(x_shape, kwargs):
    x = _distinct(x_shape, torch.Generator().manual_seed(1), torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: gt.max_pool2d(x, **kwargs), (x,))


@pytest.mark.parametrize("ours, theirs, x_shape, w_shape, kwargs", NEW_CONV_CASES)
def test_new_conv_gradcheck(ours, theirs, x_shape, w_shape, kwargs):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(x_shape, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(w_shape, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(_bias_size(ours, w_shape, kwargs), generator=g, dtype=torch.float64,
                    requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: ours(x, w, b, **kwargs), (x, w, b))


@pytest.mark.parametrize("ours, theirs, x_shape, offset, kwargs", NEW_POOL_CASES)
def test_new_pool_gradcheck(ours, theirs, x_shape, offset, kwargs):
    x = (_distinct(x_shape, torch.Generator().manual_seed(1), torch.float64) + offset
         ).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ours(x, **kwargs), (x,))


# ----------------------------------------------------------------------------------------
# forward and backward equal torch.nn.functional (float32)


def _conv_against_torch(x_shape, w_shape, kwargs, device):
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(x_shape, generator=g).to(device)
    w0 = torch.randn(w_shape, generator=g).to(device)
    b0 = torch.randn(w_shape[0], generator=g).to(device)
    results = []
    for conv in (gt.conv2d, F.conv2d):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        y = conv(x, w, b, **kwargs)
        dy = torch.linspace(-1, 1, y.numel(), device=device).reshape(y.shape)
        y.backward(dy)
        results.append((y, x.grad, w.grad, b.grad))
    for ours, theirs, name in zip(*results, ("y", "dx", "dw", "db")):
        assert ours.device == theirs.device and ours.dtype == theirs.dtype, name
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4, msg=name)


def _pool_against_torch(x_shape, kwargs, device):
    x0 = _distinct(x_shape, torch.Generator().manual_seed(3), torch.float32).to(device)
    results = []
    for pool in (gt.max_pool2d, F.max_pool2d):
        x = x0.clone().requires_grad_()
        y, idx = pool(x, return_indices=True, **kwargs)
        y.backward(torch.linspace(-1, 1, y.numel(), device=device).reshape(y.shape))
        results.append((y, idx, x.grad))
    for ours, theirs, name in zip(*results, ("y", "indices", "dx")):
        assert ours.device == theirs.device and ours.dtype == theirs.dtype, name
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6, msg=name)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CONV_CASES)
def test_conv2d_matches_torch(x_shape, w_shape, kwargs):
    _conv_against_torch(x_shape, w_shape, kwargs, "cpu")


@pytest.mark.parametrize("x_shape, kwargs", POOL_CASES)
def test_max_pool2d_matches_torch(x_shape, kwargs):
    _pool_against_torch(x_shape, kwargs, "cpu")


def _new_conv_against_torch(ours, theirs, x_shape, w_shape, kwargs, device):
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(x_shape, generator=g).to(device)
    w0 = torch.randn(w_shape, generator=g).to(device)
    b0 = torch.randn(_bias_size(ours, w_shape, kwargs), generator=g).to(device)
    results = []
    for conv in (ours, theirs):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        y = conv(x, w, b, **kwargs)
        y.backward(torch.linspace(-1, 1, y.numel(), device=device).reshape(y.shape))
        results.append((y, x.grad, w.grad, b.grad))
    for mine, ref, name in zip(*results, ("y", "dx", "dw", "db")):
        assert mine.device == ref.device and mine.dtype == ref.dtype, name
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-4, msg=name)


def _new_pool_against_torch(ours, theirs, x_shape, offset, kwargs, device):
    x0 = (_distinct(x_shape, torch.Generator().manual_seed(3), torch.float32) + offset
          ).to(device)
    results = []
    for pool in (ours, theirs):
        x = x0.clone().requires_grad_()
        y = pool(x, **kwargs)
        y.backward(torch.linspace(-1, 1, y.numel(), device=device).reshape(y.shape))
        results.append((y, x.grad))
    for mine, ref, name in zip(*results, ("y", "dx")):
        assert mine.device == ref.device and mine.dtype == ref.dtype, name
        torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("ours, theirs, x_shape, w_shape, kwargs", NEW_CONV_CASES)
def test_new_conv_matches_torch(ours, theirs, x_shape, w_shape, kwargs):
    _new_conv_against_torch(ours, theirs, x_shape, w_shape, kwargs, "cpu")


@pytest.mark.parametrize("ours, theirs, x_shape, offset, kwargs", NEW_POOL_CASES)
def test_new_pool_matches_torch(ours, theirs, x_shape, offset, kwargs):
    _new_pool_against_torch(ours, theirs, x_shape, offset, kwargs, "cpu")


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")),
                    reason="the emulator backend builds the CUDA kernels with g++")
def test_emulator_backend_and_backward_keeps_forward_backend(monkeypatch):
    """CPU tensors run the CUDA kernels on the CPU runtime; backward reuses forward's backend."""
    seen = []
    resolve = gpuconv.backend.resolve
    monkeypatch.setattr(gpuconv.backend, "resolve",
                        lambda on_gpu_arrays: seen.append(resolve(on_gpu_arrays)) or seen[-1])
    g = torch.Generator().manual_seed(7)
    x0, w0, b0 = (torch.randn(s, generator=g) for s in ((2, 3, 8, 8), (4, 3, 3, 3), (4,)))
    results = []
    for conv, pool in ((gt.conv2d, gt.max_pool2d), (F.conv2d, F.max_pool2d)):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        with gpuconv.use_backend("emulator"):
            y = pool(conv(x, w, b, padding=1), 2)
        y.backward(torch.linspace(-1, 1, y.numel()).reshape(y.shape))  # outside the block
        results.append((y, x.grad, w.grad, b.grad))
    for ours, theirs in zip(*results):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert len(seen) == 6 and set(seen) == {"emulator"}, seen  # 2 forward + 4 backward ops


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")),
                    reason="the emulator backend builds the CUDA kernels with g++")
@pytest.mark.parametrize("backend", ["numpy", "emulator"])
def test_bfloat16_tensors_forward_and_backward(backend):
    """torch.bfloat16 tensors go through (as ml_dtypes.bfloat16 arrays) and come back as
    torch.bfloat16: conv2d + max_pool2d, forward and backward, against PyTorch in float64 on
    the same bfloat16-rounded values (one bfloat16 rounding per result: rtol 2e-2), and the
    max-pool indices equal to PyTorch's own bfloat16 max-pool."""
    g = torch.Generator().manual_seed(11)
    x0, w0, b0 = (torch.randn(s, generator=g).to(torch.bfloat16)
                  for s in ((2, 3, 9, 8), (5, 3, 3, 3), (5,)))
    results = []
    for conv, pool, dtype in ((gt.conv2d, gt.max_pool2d, torch.bfloat16),
                              (F.conv2d, F.max_pool2d, torch.float64)):
        x, w, b = (t.detach().to(dtype).clone().requires_grad_() for t in (x0, w0, b0))
        with gpuconv.use_backend(backend):
            y, idx = pool(conv(x, w, b, padding=1), 2, return_indices=True)
            y.backward(torch.linspace(-1, 1, y.numel(), dtype=dtype).reshape(y.shape))
        results.append((y, x.grad, w.grad, b.grad, idx))
    for ours, truth, name in zip(*results, ("y", "dx", "dw", "db", "indices")):
        assert ours.dtype == (torch.int64 if name == "indices" else torch.bfloat16), name
        if name != "indices":
            torch.testing.assert_close(ours.double(), truth, rtol=2e-2, atol=2e-2, msg=name)
    conv_out = F.conv2d(x0, w0, b0, padding=1)
    _, torch_idx = F.max_pool2d(conv_out, 2, return_indices=True)
    with gpuconv.use_backend(backend):
        _, our_idx = gt.max_pool2d(conv_out, 2, return_indices=True)
    assert torch.equal(our_idx, torch_idx)


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")),
                    reason="the emulator backend builds the CUDA kernels with g++")
@pytest.mark.parametrize("backend", ["numpy", "emulator"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_channels_last_tensors_stay_channels_last(backend, dtype):
    """torch.channels_last input and weight (as a model after .to(memory_format=
    torch.channels_last) has them): the output is channels_last, as PyTorch's is, with
    PyTorch's values, and the gradients flow."""
    g = torch.Generator().manual_seed(13)
    x0, w0, b0 = (torch.randn(s, generator=g).to(dtype)  # the truth: on the same rounded values
                  for s in ((2, 16, 9, 8), (24, 16, 3, 3), (24,)))
    cl = torch.channels_last
    results = []
    for conv, kind in ((gt.conv2d, dtype), (F.conv2d, torch.float64)):
        x, w = (t.to(kind).contiguous(memory_format=cl).requires_grad_() for t in (x0, w0))
        b = b0.detach().to(kind).clone().requires_grad_()
        with gpuconv.use_backend(backend):
            y = conv(x, w, b, padding=1)
            dy = torch.linspace(-1, 1, y.numel()).to(dtype)  # rounded alike for the truth
            y.backward(dy.to(kind).reshape(y.shape))
        results.append((y, x.grad, w.grad, b.grad))
    y = results[0][0]
    assert y.dtype == dtype and y.is_contiguous(memory_format=cl) and not y.is_contiguous()
    for ours, truth, name in zip(*results, ("y", "dx", "dw", "db")):
        torch.testing.assert_close(ours.double(), truth, rtol=2e-2, atol=2e-2, msg=name)
        if name in ("dx", "dw"):
            assert ours.is_contiguous(memory_format=cl) == truth.is_contiguous(
                memory_format=cl), name


@pytest.mark.parametrize("layouts", [("cl", "nchw"), ("nchw", "cl"), ("cl", "cl"),
                                     ("nchw", "nchw")])
def test_conv2d_weight_follows_torch_layout_rule(layouts):
    """gpuconv.grad.conv2d_weight returns a channels-last dw exactly when
    torch.nn.grad.conv2d_weight does (a channels-last input), with its values."""
    g = torch.Generator().manual_seed(5)
    x, dy = torch.randn(2, 8, 7, 6, generator=g), torch.randn(2, 12, 7, 6, generator=g)
    x, dy = (t.contiguous(memory_format=torch.channels_last) if layout == "cl" else t
             for t, layout in zip((x, dy), layouts))
    truth = torch.nn.grad.conv2d_weight(x, (12, 8, 3, 3), dy, padding=1)
    ours = gpuconv.grad.conv2d_weight(x.numpy(), (12, 8, 3, 3), dy.numpy(), padding=1)
    assert gpuconv.functional.is_channels_last(ours) == truth.is_contiguous(
        memory_format=torch.channels_last) == (layouts[0] == "cl")
    torch.testing.assert_close(torch.from_numpy(ours).contiguous(), truth.contiguous(),
                               rtol=1e-4, atol=1e-4)


def test_needs_input_grad_respected():
    x = torch.randn(1, 2, 5, 5)
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    b = torch.randn(3)
    gt.conv2d(x, w, b).sum().backward()
    assert x.grad is None and b.grad is None and w.grad is not None


@pytest.mark.parametrize("ours, name, x_shape, w_shape, c_out", [
    (gt.conv1d, "conv1d", (1, 2, 7), (3, 2, 3), 3),
    (gt.conv3d, "conv3d", (1, 2, 4, 4, 4), (3, 2, 2, 2, 2), 3),
    (gt.conv_transpose2d, "conv_transpose2d", (1, 2, 4, 4), (2, 3, 3, 3), 3),
])
def test_new_convs_respect_needs_input_grad(monkeypatch, ours, name, x_shape, w_shape, c_out):
    """Only the gradients asked for are computed: here the bias's alone."""
    def refuse(*args, **kwargs):
        raise AssertionError("computed a gradient nobody needs")

    for which in ("input", "weight"):
        monkeypatch.setattr(gpuconv.grad, f"{name}_{which}", refuse)
    x, w, b = torch.randn(x_shape), torch.randn(w_shape), torch.randn(c_out, requires_grad=True)
    y = ours(x, w, b)
    y.sum().backward()
    assert x.grad is None and w.grad is None
    torch.testing.assert_close(b.grad, torch.full((c_out,), y[0, 0].numel() * 1.0))


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")),
                    reason="the emulator backend builds the CUDA kernels with g++")
def test_new_ops_on_emulator_backend_and_backward_keeps_forward_backend(monkeypatch):
    """The new ops run the CUDA kernels on the CPU runtime (outputs from torch's allocator);
    their backward passes reuse forward's backend although they run outside the block."""
    seen = []
    resolve = gpuconv.backend.resolve
    monkeypatch.setattr(gpuconv.backend, "resolve",
                        lambda on_gpu_arrays: seen.append(resolve(on_gpu_arrays)) or seen[-1])
    g = torch.Generator().manual_seed(8)
    x1, w1 = torch.randn(2, 3, 10, generator=g), torch.randn(4, 3, 3, generator=g)
    x3, w3 = torch.randn(1, 2, 4, 5, 5, generator=g), torch.randn(3, 2, 2, 3, 3, generator=g)
    xt, wt = torch.randn(2, 3, 4, 4, generator=g), torch.randn(3, 2, 3, 3, generator=g)
    xp = torch.rand(2, 2, 7, 7, generator=g) + 0.1
    leaves = (x1, w1, x3, w3, xt, wt, xp)

    def run(conv1d, conv3d, conv_transpose2d, avg_pool2d, lp_pool2d):
        x1, w1, x3, w3, xt, wt, xp = (t.clone().requires_grad_() for t in leaves)
        with gpuconv.use_backend("emulator"):
            ys = [conv1d(x1, w1, padding=1), conv3d(x3, w3, padding=(0, 1, 1)),
                  conv_transpose2d(xt, wt, stride=2, padding=1, output_padding=1),
                  avg_pool2d(xp, 3, 2, 1, count_include_pad=False),
                  lp_pool2d(xp, 2, 2, ceil_mode=True)]
        sum(y.square().sum() for y in ys).backward()  # outside the block
        return ys + [x1.grad, w1.grad, x3.grad, w3.grad, xt.grad, wt.grad, xp.grad]

    ours = run(gt.conv1d, gt.conv3d, gt.conv_transpose2d, gt.avg_pool2d, gt.lp_pool2d)
    theirs = run(F.conv1d, F.conv3d, F.conv_transpose2d, F.avg_pool2d, F.lp_pool2d)
    for mine, ref in zip(ours, theirs):
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-4)
    # 5 forward launches; backward: 2 for each conv (no bias), 1 for avg, 2 for Lp pooling
    assert len(seen) == 14 and set(seen) == {"emulator"}, seen


def test_errors():
    x = torch.randn(1, 2, 5, 5)
    with pytest.raises(TypeError, match="dtype"):
        gt.conv2d(x.to(torch.complex64), torch.randn(3, 2, 3, 3).to(torch.complex64))
    with pytest.raises(ValueError, match="padding_mode"):
        gt.Conv2d(2, 3, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="stride"):  # torch.nn.Conv2d's own check
        gt.Conv2d(2, 3, 3, stride=2, padding="same")
    for module in (gt.Conv1d, gt.Conv3d, gt.ConvTranspose2d):
        with pytest.raises(ValueError, match="padding_mode"):
            module(2, 3, 3, padding_mode="circular")
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        gt.avg_pool2d(x.numpy(), 2)
    with pytest.raises(ValueError, match="output_padding"):  # gpuconv's check, before running
        gt.conv_transpose2d(x, torch.randn(2, 3, 3, 3), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="norm_type"):
        gt.lp_pool2d(x, 0, 2)


# ----------------------------------------------------------------------------------------
# modules


def test_modules_are_drop_in():
    torch.manual_seed(4)
    ours = gt.Conv2d(3, 6, (3, 5), stride=2, padding=(1, 2), groups=3, dtype=torch.float64)
    torch.manual_seed(4)
    theirs = nn.Conv2d(3, 6, (3, 5), stride=2, padding=(1, 2), groups=3, dtype=torch.float64)
    assert ours.weight.dtype == torch.float64
    for name, tensor in theirs.state_dict().items():  # same names, same initialization
        torch.testing.assert_close(ours.state_dict()[name], tensor, rtol=0, atol=0)
    assert not gt.Conv2d(3, 6, 3, bias=False).load_state_dict(
        nn.Conv2d(3, 6, 3, bias=False).state_dict()).missing_keys
    x = torch.randn(2, 3, 11, 12, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x))
    assert "gpuconv" in type(ours).__module__ and isinstance(ours, nn.Conv2d)

    pool, ref = gt.MaxPool2d(3, 2, 1, ceil_mode=True, return_indices=True), \
        nn.MaxPool2d(3, 2, 1, ceil_mode=True, return_indices=True)
    for a, b in zip(pool(x), ref(x)):
        torch.testing.assert_close(a, b)
    assert repr(gt.MaxPool2d(2)) == repr(nn.MaxPool2d(2))


@pytest.mark.parametrize("ours_cls, theirs_cls, args, kwargs, x_shape", [
    (gt.Conv1d, nn.Conv1d, (4, 6, 3), dict(stride=2, padding=1, groups=2), (2, 4, 13)),
    (gt.Conv1d, nn.Conv1d, (3, 5, 4), dict(padding="same", dilation=2), (3, 9)),
    (gt.Conv3d, nn.Conv3d, (2, 4, (2, 3, 3)), dict(stride=(1, 2, 2), padding=(0, 1, 1)),
     (2, 2, 5, 7, 6)),
    (gt.Conv3d, nn.Conv3d, (4, 4, 3), dict(padding="same", groups=4), (4, 4, 5, 5)),
    (gt.ConvTranspose2d, nn.ConvTranspose2d, (4, 6, 3),
     dict(stride=2, padding=1, output_padding=1, groups=2), (2, 4, 5, 6)),
    (gt.ConvTranspose2d, nn.ConvTranspose2d, (3, 2, (2, 3)), dict(dilation=(2, 1)), (3, 4, 4)),
])
def test_new_conv_modules_are_drop_in(ours_cls, theirs_cls, args, kwargs, x_shape):
    torch.manual_seed(9)
    ours = ours_cls(*args, **kwargs, dtype=torch.float64)
    torch.manual_seed(9)
    theirs = theirs_cls(*args, **kwargs, dtype=torch.float64)
    assert ours.weight.dtype == torch.float64 and repr(ours) == repr(theirs)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for name, tensor in theirs.state_dict().items():  # same names, same initialization
        torch.testing.assert_close(ours.state_dict()[name], tensor, rtol=0, atol=0)
    assert not ours_cls(*args, **kwargs, bias=False).load_state_dict(
        theirs_cls(*args, **kwargs, bias=False).state_dict()).missing_keys
    x = torch.randn(x_shape, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x))
    assert "gpuconv" in type(ours).__module__ and isinstance(ours, theirs_cls)


def test_conv_transpose2d_module_output_size():
    """forward(input, output_size) picks the output size as torch.nn.ConvTranspose2d does."""
    torch.manual_seed(10)
    ours = gt.ConvTranspose2d(3, 2, 3, stride=(2, 3), padding=1, dilation=(1, 2))
    theirs = nn.ConvTranspose2d(3, 2, 3, stride=(2, 3), padding=1, dilation=(1, 2))
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    for size in [None, (7, 15), (8, 17), [8, 16], torch.Size([2, 2, 7, 17])]:
        y, ref = ours(x, output_size=size), theirs(x, output_size=size)
        assert y.shape == ref.shape, size
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
        dy = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
        grads = [torch.autograd.grad(out, (x, ours.weight if out is y else theirs.weight,
                                           ours.bias if out is y else theirs.bias), dy)
                 for out in (y, ref)]
        for mine, other in zip(*grads):
            torch.testing.assert_close(mine, other, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours(x[0], output_size=(8, 16)), theirs(x[0], output_size=(8, 16)),
                               rtol=1e-5, atol=1e-5)  # unbatched
    with pytest.raises(ValueError, match="output size"):  # torch's helper's own check
        ours(x, output_size=(9, 15))


def test_new_pool_modules_are_drop_in():
    x0 = _distinct((2, 3, 9, 8), torch.Generator().manual_seed(11), torch.float64) + 0.1
    for ours, theirs in [
        (gt.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
         nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)),
        (gt.AvgPool2d((2, 3), divisor_override=5), nn.AvgPool2d((2, 3), divisor_override=5)),
        (gt.LPPool2d(2, 3, 2, ceil_mode=True), nn.LPPool2d(2, 3, 2, ceil_mode=True)),
        (gt.LPPool2d(1.5, (2, 3)), nn.LPPool2d(1.5, (2, 3))),
        (gt.LPPool2d(float("inf"), 2), nn.LPPool2d(float("inf"), 2)),
    ]:
        assert repr(ours) == repr(theirs) and isinstance(ours, type(theirs))
        results = []
        for pool in (ours, theirs):
            x = x0.clone().requires_grad_()
            y = pool(x)
            y.backward(torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape))
            results.append((y, x.grad))
        for mine, ref in zip(*results):
            torch.testing.assert_close(mine, ref, msg=repr(ours))


def test_docstring_examples_run():
    import doctest
    result = doctest.testmod(gt)
    assert result.attempted > 0 and result.failed == 0
    for name in gt.__all__:
        assert ">>>" in (getattr(gt, name).__doc__ or "") or name.endswith("Function"), name


def _small_cnn(conv, pool):
    return nn.Sequential(conv(1, 4, 3, padding=1), nn.ReLU(), pool(2),
                         conv(4, 8, 3, padding="same"), nn.ReLU(), pool(2),
                         nn.Flatten(), nn.Linear(8 * 3 * 3, 5))


def _train(model, x, labels, steps=5):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _train_both(device):
    torch.manual_seed(5)
    reference = _small_cnn(nn.Conv2d, nn.MaxPool2d).to(device)
    ours = _small_cnn(gt.Conv2d, gt.MaxPool2d).to(device)
    ours.load_state_dict(reference.state_dict())
    g = torch.Generator().manual_seed(6)
    x = torch.randn(16, 1, 12, 12, generator=g).to(device)
    labels = torch.randint(0, 5, (16,), generator=g).to(device)
    return _train(ours, x, labels), _train(reference, x, labels)


def test_small_cnn_trains_like_torch_nn():
    ours, theirs = _train_both("cpu")
    assert ours == pytest.approx(theirs, rel=1e-4, abs=1e-5)
    assert ours[-1] < ours[0]


def test_import_gpuconv_does_not_import_torch():
    code = "import sys, gpuconv; gpuconv.conv2d; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_torch_message():
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import gpuconv.torch\nexcept ImportError as e:\n"
            "    assert 'pip install gpuconv[torch]' in str(e), e\nelse:\n    raise SystemExit(1)")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")),
                    reason="the CPU runtime needs g++")
def test_kernel_outputs_come_from_torch_allocator(monkeypatch):
    """On the kernel path the outputs are torch.empty tensors handed to the kernels."""
    made = []
    real_empty = torch.empty

    def recording_empty(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        made.append(t)
        return t

    monkeypatch.setattr(torch, "empty", recording_empty)
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    with gpuconv.use_backend("emulator"):
        y = gt.conv2d(x, w, padding=1)
        p, idx = gt.max_pool2d(y, 2, return_indices=True)
    assert len(made) == 3  # y, p and idx
    for out in (y, p, idx):
        assert any(out.data_ptr() == t.data_ptr() for t in made)
    torch.testing.assert_close(y, F.conv2d(x, w, padding=1), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------
# CUDA tensors


@pytest.fixture(autouse=True)
def torch_without_tf32():
    """PyTorch's CUDA convolutions default to TF32 (cudnn.allow_tf32): the CUDA comparisons
    below are against float32 arithmetic, as gpuconv's float32 kernels do."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _need_cuda():
    if not torch.cuda.is_available():
        pytest.skip("torch.cuda.is_available() is False: no CUDA device for PyTorch")
    pytest.importorskip("cupy", reason="CUDA tensors need CuPy (pip install gpuconv[cuda12])")


class _FakeCudaTensor:
    is_cuda = True

    def __init__(self, index):
        self.device = type("Device", (), {"index": index, "type": "cuda"})()


@pytest.mark.parametrize("protocol", [True, False], ids=["stream_protocol", "raw_pointer"])
def test_kernels_run_on_torchs_stream_on_the_tensors_device(monkeypatch, protocol):
    """gpuconv.torch._stream (no GPU here: PyTorch's and CuPy's stream objects stand in): the
    tensor's device becomes CuPy's current device first, then PyTorch's current stream there
    CuPy's current stream, through the CUDA stream protocol where PyTorch has it (2.10+), else
    through its raw pointer (cupy.cuda.ExternalStream)."""
    cupy = pytest.importorskip("cupy")
    entered = []

    class Context:
        def __init__(self, *what):
            self.what = what

        def __enter__(self):
            entered.append(self.what)

        def __exit__(self, *exc):
            entered.append(("exit",) + self.what)

    class TorchStream:
        cuda_stream = 0x1234

    if protocol:
        TorchStream.__cuda_stream__ = lambda self: (0, 0x1234)
    seen = []
    monkeypatch.setattr(torch.cuda, "current_stream",
                        lambda device: seen.append(device) or TorchStream())
    monkeypatch.setattr(cupy.cuda, "Device", lambda index: Context("device", index))
    monkeypatch.setattr(cupy.cuda.Stream, "from_external",
                        lambda stream: Context("from_external", stream.cuda_stream),
                        raising=False)
    monkeypatch.setattr(cupy.cuda, "ExternalStream",
                        lambda ptr, device: Context("external", ptr, device))
    with gt._stream(_FakeCudaTensor(1)):
        pass
    stream = ("from_external", 0x1234) if protocol else ("external", 0x1234, 1)
    assert seen == [1]
    assert entered == [("device", 1), stream, ("exit",) + stream, ("exit", "device", 1)]


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CONV_CASES)
def test_conv2d_matches_torch_cuda(x_shape, w_shape, kwargs):
    _need_cuda()
    _conv_against_torch(x_shape, w_shape, kwargs, "cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("x_shape, kwargs", POOL_CASES)
def test_max_pool2d_matches_torch_cuda(x_shape, kwargs):
    _need_cuda()
    _pool_against_torch(x_shape, kwargs, "cuda")


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("ours, theirs, x_shape, w_shape, kwargs", NEW_CONV_CASES)
def test_new_conv_matches_torch_cuda(ours, theirs, x_shape, w_shape, kwargs):
    _need_cuda()
    _new_conv_against_torch(ours, theirs, x_shape, w_shape, kwargs, "cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("ours, theirs, x_shape, offset, kwargs", NEW_POOL_CASES)
def test_new_pool_matches_torch_cuda(ours, theirs, x_shape, offset, kwargs):
    _need_cuda()
    _new_pool_against_torch(ours, theirs, x_shape, offset, kwargs, "cuda")


@pytest.mark.gpu
def test_new_modules_on_cuda():
    """The new modules moved to CUDA give torch.nn's results, outputs counted by torch."""
    _need_cuda()
    torch.manual_seed(12)
    pairs = [(gt.Conv1d(3, 4, 3, padding=1), nn.Conv1d(3, 4, 3, padding=1), (2, 3, 16)),
             (gt.Conv3d(3, 4, 3, padding=1), nn.Conv3d(3, 4, 3, padding=1), (2, 3, 4, 8, 8)),
             (gt.ConvTranspose2d(3, 4, 3, stride=2), nn.ConvTranspose2d(3, 4, 3, stride=2),
              (2, 3, 8, 8)),
             (gt.AvgPool2d(2), nn.AvgPool2d(2), (2, 3, 8, 8)),
             (gt.LPPool2d(2, 2), nn.LPPool2d(2, 2), (2, 3, 8, 8))]
    for ours, theirs, x_shape in pairs:
        theirs.load_state_dict(ours.state_dict())
        ours, theirs = ours.cuda(), theirs.cuda()
        x = torch.rand(x_shape, device="cuda") + 0.1
        before = torch.cuda.memory_allocated()
        y = ours(x)
        assert torch.cuda.memory_allocated() - before >= y.numel() * y.element_size()
        torch.testing.assert_close(y, theirs(x), rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_cuda_runs_on_torch_current_stream():
    _need_cuda()
    x = torch.randn(4, 3, 32, 32, device="cuda")
    w = torch.randn(8, 3, 3, 3, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        # a side stream must see x and w ready and order its own work after them
        stream.wait_stream(torch.cuda.default_stream())
        y = gt.conv2d(x * 2, w, padding=1)
        expected = F.conv2d(x * 2, w, padding=1)
    torch.cuda.current_stream().wait_stream(stream)
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_small_cnn_trains_like_torch_nn_cuda():
    _need_cuda()
    ours, theirs = _train_both("cuda")
    assert ours == pytest.approx(theirs, rel=1e-3, abs=1e-4)


@pytest.mark.gpu
def test_cuda_outputs_count_in_torch_memory():
    _need_cuda()
    x = torch.randn(8, 16, 64, 64, device="cuda")
    w = torch.randn(32, 16, 3, 3, device="cuda")
    before = torch.cuda.memory_allocated()
    y = gt.conv2d(x, w, padding=1)
    assert torch.cuda.memory_allocated() - before >= y.numel() * y.element_size()


def test_cuda_results_are_views_of_the_tensors_pytorch_allocated():
    """On CUDA a result comes back as a view of the tensor PyTorch's allocator made for it, not
    a DLPack import (memory the caching allocator would not own: record_stream would be
    ignored). No GPU here: a stand-in for a CuPy array over a CPU tensor's memory."""
    owner = torch.empty((2, 3, 4, 5), dtype=torch.bfloat16)

    class StandIn:  # a CuPy view a[1, :, 1:] of owner, as the kernels' result
        dtype, shape = gpuconv.dtypes.bfloat16, (3, 3, 5)
        strides, size = (40, 10, 2), 45
        data = type("Pointer", (), {"ptr": owner.data_ptr() + 2 * (60 + 5)})()

    token = gt._allocated.set([torch.empty(7), owner])
    try:
        view = gt._to_tensor(StandIn())
    finally:
        gt._allocated.reset(token)
    assert view.dtype == torch.bfloat16 and view.shape == (3, 3, 5)
    assert view.untyped_storage().data_ptr() == owner.untyped_storage().data_ptr()
    assert view.data_ptr() == owner[1, :, 1:].data_ptr() and view.stride() == (20, 5, 1)
    assert gt._allocated.get() is None  # outside a call: nothing to map to (DLPack then)
