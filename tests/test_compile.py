"""Compile check without a GPU: every kernel instance gpuconv.kernels can request compiles
with NVRTC (the compiler the 'cuda' runtime uses) for sm_75, sm_80 and sm_90, and with nvcc
where it is installed; no compiler warnings, and no spills to local memory in the v1 kernels.

Each kernel's registers, shared memory and spill bytes (from ptxas' ``-v`` report) are printed
(``pytest -s tests/test_compile.py`` or ``python tests/test_compile.py`` shows the table).

NVRTC needs no GPU (FACTS.md); it comes from the ``nvidia-cuda-nvrtc`` wheel, reached through
CuPy's thin wrapper ``cupy.cuda.nvrtc``. Without CuPy the NVRTC tests skip; with CuPy but
without a loadable NVRTC library they fail (CI installs both).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

if __name__ == "__main__":  # run as a script from a checkout: find the package next door
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpuconv import kernels
from gpuconv.sources import source_path, source_text

ARCHS = ("sm_75", "sm_80", "sm_90")
NVCC = shutil.which("nvcc") or next(
    (p for p in ("/usr/local/cuda/bin/nvcc",) if os.access(p, os.X_OK)), None)


@dataclass
class Resources:
    kernel: str       # name expression (or demangled name)
    arch: str
    registers: int
    smem: int         # static shared memory, bytes
    stack: int        # stack frame, bytes
    spill_stores: int
    spill_loads: int


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas(log: str, names: dict[str, str]) -> list[Resources]:
    """The per-kernel figures of a ``ptxas -v`` report; ``names`` maps mangled -> readable."""
    found: list[Resources] = []
    current = None
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            current = Resources(names.get(m.group(1), m.group(1)), m.group(2), -1, 0, 0, 0, 0)
            found.append(current)
        elif current is not None and (m := _FRAME.search(line)):
            current.stack, current.spill_stores, current.spill_loads = map(int, m.groups())
        elif current is not None and (m := _USED.search(line)):
            current.registers = int(m.group(1))
            if s := _SMEM.search(line):
                current.smem = int(s.group(1))
    return found


def warnings_in(log: str) -> list[str]:
    return [line for line in log.splitlines() if re.search(r"\bwarning\b", line, re.I)]


def format_table(rows: list[Resources]) -> str:
    lines = [f"{'kernel':40s} {'arch':6s} {'regs':>5s} {'smem':>6s} {'stack':>6s} "
             f"{'spill st':>8s} {'spill ld':>8s}"]
    for r in rows:
        lines.append(f"{r.kernel:40s} {r.arch:6s} {r.registers:5d} {r.smem:6d} {r.stack:6d} "
                     f"{r.spill_stores:8d} {r.spill_loads:8d}")
    return "\n".join(lines)


def check_resources(rows: list[Resources], expected: set[str], arch: str, what: str) -> None:
    assert {r.kernel for r in rows} >= expected, (
        f"{what}: ptxas reported {sorted(r.kernel for r in rows)}, expected {sorted(expected)}")
    spilled = [r for r in rows if r.spill_stores or r.spill_loads]
    assert not spilled, f"{what}: spills to local memory:\n" + format_table(spilled)
    assert all(r.arch == arch for r in rows)


# ----------------------------------------------------------------------------------------
# NVRTC


def _nvrtc():
    pytest.importorskip("cupy", reason="CuPy is not installed: the NVRTC compile check needs "
                                       "cupy-cuda13x (or cupy-cuda12x) and nvidia-cuda-nvrtc")
    from cupy.cuda import nvrtc

    nvrtc.getVersion()  # loads libnvrtc: with CuPy installed a missing library is a failure
    return nvrtc


def nvrtc_compile(source_name: str, arch: str) -> tuple[list[Resources], str]:
    """Compile one source with every declared name expression; return (resources, log)."""
    nvrtc = _nvrtc()
    expressions = kernels.name_expressions(source_name)
    prog = nvrtc.createProgram(source_text(source_name), source_name, (), ())
    try:
        for expr in expressions:
            nvrtc.addNameExpression(prog, expr)
        try:
            nvrtc.compileProgram(prog, ("-std=c++17", f"-arch={arch}", "-Xptxas=-v"))
        except nvrtc.NVRTCError as error:
            raise AssertionError(f"NVRTC failed on {source_name} for {arch}: {error}\n"
                                 f"{nvrtc.getProgramLog(prog)}") from None
        log = nvrtc.getProgramLog(prog)
        names = {nvrtc.getLoweredName(prog, expr): expr for expr in expressions}
        assert nvrtc.getCUBIN(prog), "NVRTC produced no cubin"
    finally:
        nvrtc.destroyProgram(prog)
    return parse_ptxas(log, names), log


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source_name", sorted(kernels.KERNELS))
def test_nvrtc_compiles_every_instance(source_name, arch):
    rows, log = nvrtc_compile(source_name, arch)
    print(f"\nNVRTC {source_name} {arch}\n" + format_table(rows))
    assert not warnings_in(log), f"NVRTC warnings for {source_name} ({arch}):\n{log}"
    check_resources(rows, set(kernels.name_expressions(source_name)), arch,
                    f"NVRTC {source_name} {arch}")


# ----------------------------------------------------------------------------------------
# nvcc (standalone build of each file: its own instantiation list, see the end of each .cu)


def _demangle(names: list[str]) -> dict[str, str]:
    filt = shutil.which("c++filt")
    if not filt or not names:
        return {}
    out = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True)
    readable = [re.sub(r"\(.*", "", line).replace("void ", "") for line in out.stdout.splitlines()]
    return dict(zip(names, readable))


def nvcc_compile(source_name: str, arch: str, tmp_path: Path) -> tuple[list[Resources], str]:
    result = subprocess.run(
        [NVCC, "-cubin", f"-arch={arch}", "-std=c++17", "-Xptxas", "-v",
         "-o", str(tmp_path / f"{source_name}.{arch}.cubin"), str(source_path(source_name))],
        capture_output=True, text=True)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"nvcc failed on {source_name} for {arch}:\n{log}"
    rows = parse_ptxas(log, {})
    names = _demangle([r.kernel for r in rows])
    for r in rows:
        r.kernel = names.get(r.kernel, r.kernel)
    return rows, log


@pytest.mark.skipif(NVCC is None, reason="nvcc not found (neither on PATH nor in /usr/local/cuda/bin)")
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source_name", sorted(kernels.KERNELS))
def test_nvcc_compiles_every_instance(source_name, arch, tmp_path):
    rows, log = nvcc_compile(source_name, arch, tmp_path)
    print(f"\nnvcc {source_name} {arch}\n" + format_table(rows))
    assert not warnings_in(log), f"nvcc warnings for {source_name} ({arch}):\n{log}"
    # The standalone build instantiates every template for every dtype, like kernels.py.
    check_resources(rows, set(kernels.name_expressions(source_name)), arch,
                    f"nvcc {source_name} {arch}")


def test_every_declared_instance_names_a_template_in_its_file():
    for source_name, templates in kernels.KERNELS.items():
        text = source_path(source_name).read_text()
        for template in templates:
            assert re.search(rf"__global__ void {template}\(", text), (source_name, template)


if __name__ == "__main__":  # python tests/test_compile.py: the resource table, sm_90
    table = []
    for name in sorted(kernels.KERNELS):
        table += nvrtc_compile(name, "sm_90")[0]
    print(format_table(table))
