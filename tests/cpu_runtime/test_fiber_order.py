"""GPUCONV_CPU_FIBER_ORDER: the threads of a block can be resumed in reverse order, or greedily
(the first runnable thread always goes on), so tests can show that a kernel's result does not
depend on the order threads run between barriers."""

import numpy as np
import pytest

from gpuconv.runtime import cpu_rt

# Each thread takes a ticket from a counter: the tickets record the order threads ran in.
TICKETS = r"""
extern "C" __global__ void take_ticket(int* counter, int* ticket) {
    ticket[threadIdx.x] = atomicAdd(counter, 1);
}
"""


@pytest.mark.parametrize("order,expected", [(None, lambda n: np.arange(n)),
                                            ("forward", lambda n: np.arange(n)),
                                            ("reverse", lambda n: np.arange(n)[::-1])])
def test_fiber_order_switch(monkeypatch, order, expected):
    if order is None:
        monkeypatch.delenv("GPUCONV_CPU_FIBER_ORDER", raising=False)
    else:
        monkeypatch.setenv("GPUCONV_CPU_FIBER_ORDER", order)
    kernel = cpu_rt.RawModule(code=TICKETS).get_function("take_ticket")
    counter = np.zeros(1, np.int32)
    ticket = np.full(64, -1, np.int32)
    kernel((1,), (64,), (counter, ticket))
    np.testing.assert_array_equal(ticket, expected(64))


# Each warp's lanes meet in a shuffle between two tickets, then a __syncthreads. The last lane
# to reach the shuffle completes it and runs on to its second ticket.
WARPS_AHEAD = r"""
extern "C" __global__ void warps_ahead(int* counter, int* ticket) {
    const int t = threadIdx.x;
    ticket[t] = atomicAdd(counter, 1);
    const int v = __shfl_sync(0xffffffffu, t, 0);
    ticket[blockDim.x + t] = atomicAdd(counter, 1) + 0 * v;
    __syncthreads();
    ticket[2 * blockDim.x + t] = atomicAdd(counter, 1);
}
"""


@pytest.mark.parametrize("order", ["forward", "greedy"])
def test_greedy_order_runs_a_warp_ahead_up_to_the_barrier(monkeypatch, order):
    monkeypatch.setenv("GPUCONV_CPU_FIBER_ORDER", order)
    kernel = cpu_rt.RawModule(code=WARPS_AHEAD).get_function("warps_ahead")
    counter = np.zeros(1, np.int32)
    ticket = np.full(3 * 64, -1, np.int32)
    kernel((1,), (64,), (counter, ticket))
    first, second, after = ticket[:64], ticket[64:128], ticket[128:]
    if order == "greedy":
        # Warp 0 takes both its tickets (0-63) before warp 1 starts (64-127).
        np.testing.assert_array_equal(first, np.r_[0:32, 64:96])
        np.testing.assert_array_equal(second, np.r_[33:64, 32, 97:128, 96])
    else:
        # Round robin: warp 1 takes its first tickets before warp 0 (but lane 31) its second.
        np.testing.assert_array_equal(first, np.r_[0:32, 33:65])
        np.testing.assert_array_equal(second[:31], np.arange(66, 97))
    np.testing.assert_array_equal(np.sort(after), np.arange(128, 192))  # all after the barrier
