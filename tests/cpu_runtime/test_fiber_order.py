"""GPUCONV_CPU_FIBER_ORDER: the threads of a block can be resumed in reverse order, so tests can
show that a kernel's result does not depend on the order threads run between barriers."""

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
