"""Atomics from many blocks running on several workers."""
import numpy as np

from conftest import module


def test_atomics_all_types(monkeypatch):
    monkeypatch.setenv("GPUCONV_CPU_WORKERS", "2")
    kern = module("atomics.cu").get_function("atomics")
    blocks, threads = 40, 128
    n = blocks * threads
    i = np.array([5, 0], np.int32)
    u = np.array([0, 1000000], np.uint32)
    ull = np.array([0, 0], np.uint64)
    f = np.array([0.0, -1.0], np.float32)
    d = np.zeros(1, np.float64)
    imin, imax = np.array([0], np.int32), np.array([-1], np.int32)
    umin, umax = np.array([0xFFFFFFFF], np.uint32), np.array([0], np.uint32)
    ullmax = np.array([0], np.uint64)
    exch = np.zeros(n + 2, np.int32)
    exch[0] = n  # the first exchange hands back the sentinel n -> counted in the last slot
    cas = np.zeros(2, np.int32)
    kern((blocks,), (threads,), (i, u, ull, f, d, imin, imax, umin, umax, ullmax, exch, cas))
    assert i[0] == 5 + n and i[1] == -2 * n
    assert u[0] == 3 * n and u[1] == 1000000 - n
    assert ull[0] == n << 33 and ull[1] == 3 * n
    assert f[0] == 0.5 * n and 0 <= f[1] < n and f[1] == int(f[1])
    assert d[0] == 0.25 * n
    assert imin[0] == -(n - 1) and imax[0] == n - 1
    assert umin[0] == 5 and umax[0] == n - 1
    assert ullmax[0] == (n - 1) << 40
    # every value but the final one left in exch[0] was handed out exactly once
    counts = exch[1:]
    assert counts.sum() == n and set(np.unique(counts)) <= {0, 1}
    assert counts[exch[0]] == 0
    assert cas[0] == n and cas.view(np.uint32)[1] == 2 * n
