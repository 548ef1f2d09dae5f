"""Shared fixtures."""

import pytest

from gpuconv.runtime import cuda_available, get_runtime
from helpers import RUNTIMES


@pytest.fixture(params=RUNTIMES)
def rt(request):
    """A kernel runtime: the CPU runtime, and the GPU when CuPy sees one (else skipped)."""
    if request.param == "cuda" and not cuda_available():
        pytest.skip("no CUDA device visible to CuPy (or CuPy not installed)")
    return get_runtime(request.param)
