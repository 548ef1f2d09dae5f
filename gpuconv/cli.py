"""Command line: ``gpuconv check | bench | demo`` (also ``python -m gpuconv ...``).

``check`` runs every op x dtype x problem of the curated matrix through the public API on
the best runtime present (the GPU when CuPy sees one, else the CUDA kernels on the CPU
runtime, else the NumPy reference) and compares each result with the NumPy reference.
It prints one row per case and exits non-zero if any case fails.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

import numpy as np

from . import backend, checking
from .dtypes import NAMES as DTYPE_NAMES, by_name as dtype_by_name


def best_runtime() -> str:
    """'cuda' when CuPy sees a GPU, else 'emulator' when the CPU runtime can build, else 'numpy'."""
    try:
        from .runtime import cuda_available
    except ImportError:  # no kernel layer in this build
        return "numpy"
    if cuda_available():
        return "cuda"
    if shutil.which("g++") or shutil.which("c++"):
        return "emulator"
    return "numpy"


# CUDA errors after which the context is unusable: every later launch in the process fails
# with the same error, so the check stops at the case that caused it.
STICKY_CUDA_ERRORS = ("illegal memory access", "ILLEGAL_ADDRESS", "IllegalAddress",
                      "misaligned address", "MISALIGNED_ADDRESS", "MisalignedAddress",
                      "illegal instruction", "ILLEGAL_INSTRUCTION", "IllegalInstruction",
                      "unspecified launch failure", "LAUNCH_FAILED", "LaunchFailure",
                      "HARDWARE_STACK_ERROR", "HardwareStackError")


def is_sticky_cuda_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a CUDA error that leaves the context unusable (a kernel fault)."""
    return any(s in f"{type(exc).__name__}: {exc}" for s in STICKY_CUDA_ERRORS)


def _movers(runtime: str):
    """(to_device, to_host) for the arrays a runtime works on."""
    if runtime == "cuda":
        import cupy
        return cupy.asarray, cupy.asnumpy
    return (lambda a: a), np.asarray


def check(runtime: str | None = None, ops=checking.OPS, dtypes=checking.DTYPES,
          out=sys.stdout) -> int:
    """Run the matrix; return the number of failed cases (and of cases a kernel fault on the
    GPU left unrun: the run stops there, since every later launch would fail the same way)."""
    runtime = runtime or best_runtime()
    to_device, to_host = _movers(runtime)
    # On a kernel runtime every version of every kernel runs; the reference has no versions.
    todo = list(checking.cases(ops, dtypes, versions=runtime != "numpy"))
    print(f"gpuconv check: {len(todo)} cases on runtime '{runtime}' against the NumPy "
          f"reference", file=out)
    op_width = max(len(op) for op, *_ in todo) if todo else 2
    name_width = max(len(problem.name) for _, _, problem, _ in todo) if todo else 7
    counter_width = 2 * len(str(len(todo))) + 3
    kernel_width = max([6] + [len(version or "auto") for *_, version in todo])
    header = f"{'':>{counter_width}} {'op':<{op_width}} {'dtype':<8} {'problem':<{name_width}} " \
             f"{'runtime':<9} {'kernel':<{kernel_width}} {'max error':>10} {'tolerance':>22}  result"
    print(header, file=out)
    failures = []
    sticky = None
    start = time.perf_counter()
    with backend.use_backend(runtime):
        for i, (op, dtype, problem, version) in enumerate(todo, 1):
            if sticky is not None:
                break
            try:
                result = checking.check_case(op, problem, dtype, to_device, to_host, version)
                error, ok, report = result.max_error, result.ok, result.report
                tol = f"{result.atol:.0e}+{result.rtol:.0e}*|ref|" + ("+tf32" if result.bounded
                                                                      else "")
            except Exception as exc:  # a crash is a failure with its message, not an abort
                error, ok, report, tol = float("nan"), False, f"{type(exc).__name__}: {exc}", "-"
                if is_sticky_cuda_error(exc):  # ... unless it leaves the GPU unusable
                    sticky = (i, op, dtype.name, problem.name, version or "auto")
            print(f"[{i:{len(str(len(todo)))}d}/{len(todo)}] {op:<{op_width}} {dtype.name:<8} "
                  f"{problem.name:<{name_width}} {runtime:<9} {version or 'auto':<{kernel_width}} "
                  f"{error:10.2e} {tol:>22}  {'pass' if ok else 'FAIL'}",
                  file=out, flush=True)
            if not ok:
                failures.append((f"{op} [{version or 'auto'}]", dtype.name, problem.name, report))
    seconds = time.perf_counter() - start
    for op, dtype, name, report in failures:
        print(f"\nFAIL {op} {dtype} {name}:\n{report}", file=out)
    not_run = 0
    if sticky is not None:
        i, op, dtype_name, name, version = sticky
        not_run = len(todo) - i
        print(f"\nSTOPPED after case {i}, {op} [{version}] {dtype_name} {name}: a kernel fault "
              f"leaves the CUDA context unusable, so the {not_run} cases after it did not run "
              "(narrow the run with --op / --dtype to go past it)", file=out)
    print(f"\n{len(todo) - len(failures) - not_run} passed, {len(failures)} failed"
          + (f", {not_run} not run" if not_run else "")
          + f" ({seconds:.1f} s on runtime '{runtime}')", file=out)
    return len(failures) + not_run  # a case not run is not a pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gpuconv", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="check every kernel against the NumPy reference")
    p_check.add_argument("--runtime", choices=("cuda", "emulator", "numpy"),
                         help="where to run (default: the best one present)")
    p_check.add_argument("--op", action="append", choices=checking.OPS,
                         help="only this op (repeatable)")
    p_check.add_argument("--dtype", action="append", choices=DTYPE_NAMES,
                         help="only this dtype (repeatable)")
    sub.add_parser("bench", add_help=False,
                   help="time the kernels against cuDNN and CuPy im2col on a GPU; writes JSON "
                        "(gpuconv bench --help)")
    sub.add_parser("demo", add_help=False,
                   help="filter and pool an image through the kernels; writes a PNG grid "
                        "(gpuconv demo --help)")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:  # demo and bench parse their own options
        from .demo import main as demo_main
        return demo_main(argv[1:])
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main
        return bench_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "check":
        failed = check(args.runtime, ops=tuple(args.op or checking.OPS),
                       dtypes=tuple(dtype_by_name(d) for d in args.dtype) if args.dtype
                       else checking.DTYPES)
        return 1 if failed else 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
