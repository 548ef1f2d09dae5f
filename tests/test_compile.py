"""Compile check without a GPU: every kernel instance gpuconv.kernels can request compiles
with NVRTC (the compiler the 'cuda' runtime uses) for sm_75, sm_80, sm_90 and sm_90a (what the
runtime builds for compute capability 9.0), and with nvcc where it is installed; no compiler
warnings, and no spills to local memory in any kernel.

The fast (v2) kernels also: declare ``__launch_bounds__`` and use no more registers than it
allows; their tile sizes agree with kernels.py's mirror; and, where ``cuobjdump`` (pip:
``nvidia-cuda-cuobjdump``, which needs ``nvdisasm`` from ``nvidia-cuda-nvdisasm``) is
installed, their sm_90 SASS holds the intended instructions: the implicit-GEMM inner loops
read shared memory only with 128-bit ``LDS.128``, the max-pool v2 and v3 kernels call no
emulated 64-bit integer division routine (v1 does), and max-pool v3 stores 128 bits at a time.

Each kernel's registers, shared memory and spill bytes (from ptxas' ``-v`` report) are printed
(``pytest -s tests/test_compile.py`` or ``python tests/test_compile.py`` shows the table).

NVRTC needs no GPU (FACTS.md); it comes from the ``nvidia-cuda-nvrtc`` wheel, reached through
CuPy's thin wrapper ``cupy.cuda.nvrtc``. Without CuPy the NVRTC tests skip; with CuPy but
without a loadable NVRTC library they fail (CI installs both).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

if __name__ == "__main__":  # run as a script from a checkout: find the package next door
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpuconv import kernels
from gpuconv.sources import source_path, source_text

ARCHS = ("sm_75", "sm_80", "sm_90", "sm_90a")
# nvcc: the standalone build (each file's instance list) on the targets; its ptxas is NVRTC's,
# which covers sm_75 and sm_90a.
NVCC_ARCHS = ("sm_80", "sm_90")
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


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+a?)'")
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


# The compiles below are pure functions of (source, arch) within a run, and several tests
# read the same one: each is done once per process.
@functools.lru_cache(maxsize=None)
def nvrtc_build(source_name: str, arch: str) -> tuple[list[Resources], str, bytes, dict]:
    """Compile one source with every declared name expression: (resources, log, cubin,
    {lowered name: name expression}). The resource and SASS tests share it."""
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
        cubin = nvrtc.getCUBIN(prog)
        assert cubin, "NVRTC produced no cubin"
    finally:
        nvrtc.destroyProgram(prog)
    return parse_ptxas(log, names), log, cubin, names


def nvrtc_compile(source_name: str, arch: str) -> tuple[list[Resources], str]:
    """(resources, log) of one source's NVRTC build (nvrtc_build)."""
    rows, log, _, _ = nvrtc_build(source_name, arch)
    return rows, log


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
    # A defaulted template argument shows in the mangled name: <float, 0> is kernels.py's
    # <float> (the v2 kernels' tile configuration 0).
    readable = [re.sub(r", 0>$", ">", name) for name in readable]
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
@pytest.mark.parametrize("arch", NVCC_ARCHS)
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
            assert re.search(rf"__global__ void\s+(__launch_bounds__\([^)]*\)\s*)?{template}\(",
                             text), (source_name, template)


# ----------------------------------------------------------------------------------------
# the fast kernels: launch bounds, registers, tile-size mirror, SASS

# kernel template -> (source, threads per block, minimum resident blocks per dtype)
LAUNCH_BOUNDS = {
    "conv2d_fprop_v2_implicit_gemm": ("conv2d_fprop.cu", kernels.FPROP_V2.threads,
                                      {t: kernels.FPROP_V2.min_blocks for t in ("__half", "__nv_bfloat16", "float", "double")}),
    "conv2d_dgrad_v2_implicit_gemm": ("conv2d_dgrad.cu", kernels.DGRAD_V2.threads,
                                      {t: kernels.DGRAD_V2.min_blocks for t in ("__half", "__nv_bfloat16", "float", "double")}),
    "conv2d_wgrad_v2_implicit_gemm": ("conv2d_wgrad.cu", kernels.WGRAD_V2.threads,
                                      {"__half": kernels.WGRAD_V2.min_blocks,
                                       "__nv_bfloat16": kernels.WGRAD_V2.min_blocks,
                                       "float": kernels.WGRAD_V2.min_blocks, "double": 1}),
    "conv2d_bgrad_v2_tree": ("conv2d_wgrad.cu", kernels.BGRAD_V2_THREADS,
                             {"__half": 1, "__nv_bfloat16": 1, "float": 1, "double": 1}),
    "conv2d_bgrad_v3_nhwc": ("conv2d_wgrad.cu", kernels.BGRAD_V3_BLOCK[0] * kernels.BGRAD_V3_BLOCK[1],
                             {"__half": 1, "__nv_bfloat16": 1, "float": 1, "double": 1}),
    "maxpool2d_fwd_v2_plane": ("maxpool2d.cu", kernels.POOL_V2_BLOCK[0] * kernels.POOL_V2_BLOCK[1],
                               {"__half": 1, "__nv_bfloat16": 1, "float": 1, "double": 1}),
    "maxpool2d_bwd_v2_plane": ("maxpool2d.cu", kernels.POOL_V2_BLOCK[0] * kernels.POOL_V2_BLOCK[1],
                               {"__half": 1, "__nv_bfloat16": 1, "float": 1, "double": 1}),
    "maxpool2d_fwd_v3_vec": ("maxpool2d.cu", kernels.POOL_V3_BLOCK[0] * kernels.POOL_V3_BLOCK[1],
                             {"__half": 1, "__nv_bfloat16": 1, "float": 1, "double": 1}),
    "maxpool2d_bwd_v3_vec": ("maxpool2d.cu", kernels.POOL_V3_BLOCK[0] * kernels.POOL_V3_BLOCK[1],
                             {"__half": 1, "__nv_bfloat16": 1, "float": 1, "double": 1}),
}
REGISTER_FILE = 65536  # 32-bit registers per SM, sm_75 .. sm_90


def _macro_defaults(source_name: str) -> dict[str, int]:
    text = source_path(source_name).read_text()
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^#define\s+(\w+)\s+(\d+)\b", text, re.M)}


def test_tile_sizes_match_the_python_mirror():
    for tiles, source in ((kernels.FPROP_V2, "conv2d_fprop.cu"),
                          (kernels.DGRAD_V2, "conv2d_dgrad.cu"),
                          (kernels.WGRAD_V2, "conv2d_wgrad.cu")):
        defaults = _macro_defaults(source)
        for field in ("BM", "BN", "BK", "TM", "TN"):
            assert defaults[f"{tiles.prefix}_{field}"] == getattr(tiles, field), (source, field)
        assert defaults[f"{tiles.prefix}_MIN_BLOCKS"] == tiles.min_blocks
    assert _macro_defaults("conv2d_wgrad.cu")["WGRAD_V2_MIN_BLOCKS_FP64"] == 1
    assert _macro_defaults("conv2d_wgrad.cu")["BGRAD_V2_THREADS"] == kernels.BGRAD_V2_THREADS
    wgrad = _macro_defaults("conv2d_wgrad.cu")
    assert (wgrad["BGRAD_V3_BLOCK_X"], wgrad["BGRAD_V3_BLOCK_Y"]) == kernels.BGRAD_V3_BLOCK
    pool = _macro_defaults("maxpool2d.cu")
    assert (pool["POOL_V2_BLOCK_X"], pool["POOL_V2_BLOCK_Y"]) == kernels.POOL_V2_BLOCK
    assert (pool["POOL_V3_BLOCK_X"], pool["POOL_V3_BLOCK_Y"]) == kernels.POOL_V3_BLOCK
    assert pool["POOL_V3_VEC"] == kernels.POOL_V3_VEC


def test_v2_tile_configurations_match_the_python_mirror():
    """common.cuh's GemmV2Config table (CFG 1, 2) against kernels.TILE_CONFIGS; CFG 0 is each
    kernel's -D defaults (above)."""
    text = source_path("common.cuh").read_text()
    table = {int(m.group(1)): tuple(int(v) for v in m.group(2).split(","))
             for m in re.finditer(r"struct GemmV2Config<(\d+), Default> : GemmV2Tiles<([\d, ]+)>",
                                  text)}
    for (op, version), configs in kernels.TILE_CONFIGS.items():
        if version != "v2":
            continue
        assert configs[0].config == 0 and configs[0] == getattr(kernels, f"{op.upper()}_V2")
        assert sorted(t.config for t in configs[1:]) == sorted(table), op
        for t in configs[1:]:
            assert table[t.config] == (t.BM, t.BN, t.BK, t.TM, t.TN, t.min_blocks), (op, t)
            assert t.BK == configs[0].BK  # the same reduction order: the same bits


def test_fast_kernels_declare_launch_bounds():
    for template, (source, _, _) in LAUNCH_BOUNDS.items():
        text = source_path(source).read_text()
        assert re.search(rf"__global__ void __launch_bounds__\([^)]*\)\s*{template}\(", text), template


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source_name", sorted({s for s, _, _ in LAUNCH_BOUNDS.values()}))
def test_fast_kernels_fit_their_launch_bounds(source_name, arch):
    """No spills, and registers x threads x minimum blocks within the register file."""
    rows, _ = nvrtc_compile(source_name, arch)
    configs = {kernels.TEMPLATES[key][1]: tiles for key, tiles in kernels.TILE_CONFIGS.items()}
    checked = 0
    for r in rows:
        template, _, args = r.kernel.partition("<")
        if template not in LAUNCH_BOUNDS:
            continue
        _, threads, min_blocks = LAUNCH_BOUNDS[template]
        dtype, _, config = args.rstrip(">").partition(", ")
        blocks = min_blocks[dtype]
        if config:  # a tile configuration (kernels.TILE_CONFIGS) has its own launch bounds
            tiles = configs[template][int(config)]
            threads, blocks = tiles.threads, tiles.min_blocks
        limit = min(255, REGISTER_FILE // (threads * blocks))
        assert r.registers <= limit, f"{r.kernel} {arch}: {r.registers} registers > {limit}"
        assert r.spill_stores == r.spill_loads == 0, f"{r.kernel} {arch} spills"
        assert r.smem <= 48 * 1024, f"{r.kernel}: {r.smem} bytes of static shared memory"
        checked += 1
    assert checked == len(kernels.CUDA_TYPES) * sum(
        len(configs.get(t, (None,))) for t, (s, _, _) in LAUNCH_BOUNDS.items() if s == source_name)


def find_cuobjdump() -> str | None:
    """cuobjdump on PATH, else the one the nvidia-cuda-cuobjdump wheel installs."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    try:
        import nvidia
    except ImportError:
        return None
    for root in getattr(nvidia, "__path__", []):
        for sub in ("cu13/bin", "cu12/bin", "cuda_cuobjdump/bin"):
            candidate = Path(root) / sub / "cuobjdump"
            if os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def sass_by_kernel(cubin: bytes, names: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """{readable kernel name: its SASS text} of a cubin, through cuobjdump -sass."""
    tool = find_cuobjdump()
    path = tmp_path / "k.cubin"
    path.write_bytes(cubin)
    env = dict(os.environ)
    env["PATH"] = str(Path(tool).parent) + os.pathsep + env.get("PATH", "")  # nvdisasm next door
    out = subprocess.run([tool, "-sass", str(path)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        if "nvdisasm" in out.stderr:
            pytest.skip("cuobjdump needs nvdisasm: pip install nvidia-cuda-nvdisasm")
        raise AssertionError(out.stderr)
    sections = re.split(r"^\s*Function : (\S+)\s*$", out.stdout, flags=re.M)
    return {names.get(sections[i], sections[i]): sections[i + 1]
            for i in range(1, len(sections) - 1, 2)}


def _whole_elf(image: bytes) -> bytes:
    """The cubin padded to the length its ELF header implies. CuPy's ``getCUBIN`` (14.x)
    drops the image's last byte (it sizes the buffer like a C string), which cuobjdump then
    rejects as "does not contain device code"; the missing byte is the zero padding at the
    end of the program headers."""
    import struct

    if image[:4] != b"\x7fELF" or image[4] != 2:  # only 64-bit ELF is expected
        return image
    phoff, shoff = struct.unpack_from("<QQ", image, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", image, 0x36)
    end = max(phoff + phentsize * phnum, shoff + shentsize * shnum)
    return image + b"\0" * max(0, end - len(image))


@functools.lru_cache(maxsize=None)
@functools.lru_cache(maxsize=None)
def nvrtc_sass(source_name: str, arch: str) -> dict[str, str]:
    """SASS of every instance of one source, by name expression (compiled and disassembled
    once per process)."""
    _, _, cubin, names = nvrtc_build(source_name, arch)
    cubin = _whole_elf(cubin)
    with tempfile.TemporaryDirectory() as folder:
        return sass_by_kernel(cubin, names, Path(folder))


_needs_cuobjdump = pytest.mark.skipif(
    find_cuobjdump() is None,
    reason="cuobjdump not found: pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm")

GEMM_V2 = {"conv2d_fprop.cu": ("conv2d_fprop_v2_implicit_gemm", kernels.FPROP_V2),
           "conv2d_dgrad.cu": ("conv2d_dgrad_v2_implicit_gemm", kernels.DGRAD_V2),
           "conv2d_wgrad.cu": ("conv2d_wgrad_v2_implicit_gemm", kernels.WGRAD_V2)}


def lds_counts(sass: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in re.finditer(r"\b(LDS(?:\.[A-Z0-9]+)*)\b", sass):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


@_needs_cuobjdump
@pytest.mark.parametrize("source_name", sorted(GEMM_V2))
def test_sass_gemm_v2_reads_shared_memory_128_bits_at_a_time(source_name, tmp_path):
    template, default = GEMM_V2[source_name]
    sass = nvrtc_sass(source_name, "sm_90")
    configs = next((t for key, t in kernels.TILE_CONFIGS.items()
                    if kernels.TEMPLATES[key][1] == template), (default,))
    for dtype, tiles in ((d, t) for d in ("__half", "float", "double") for t in configs):
        kernel = f"{template}<{dtype}, {tiles.config}>" if tiles.config else f"{template}<{dtype}>"
        counts = lds_counts(sass[kernel])
        print(kernel, counts)
        # The unrolled inner loop: BK steps x (TM + TN)/4 fragments, one LDS.128 each (two
        # for double), and no narrower shared-memory load anywhere in the kernel.
        per_fragment = 2 if dtype == "double" else 1
        expected = tiles.BK * (tiles.TM + tiles.TN) // 4 * per_fragment
        assert counts.get("LDS.128", 0) >= expected, (kernel, counts)
        assert set(counts) == {"LDS.128"}, (kernel, counts)


@_needs_cuobjdump
def test_sass_maxpool_v2_has_no_emulated_64_bit_division(tmp_path):
    sass = nvrtc_sass("maxpool2d.cu", "sm_90")
    for dtype in ("__half", "float", "double"):
        for kernel in ("maxpool2d_fwd_v2_plane", "maxpool2d_bwd_v2_plane",
                       "maxpool2d_fwd_v3_vec", "maxpool2d_bwd_v3_vec"):
            assert "CALL" not in sass[f"{kernel}<{dtype}>"], f"{kernel}<{dtype}> calls a routine"
        # The check can see the difference: v1 splits 64-bit flat indices by calling the
        # emulated division routine.
        assert "CALL" in sass[f"maxpool2d_fwd_v1_direct<{dtype}>"]


def stg_128_count(sass: str) -> int:
    """How many global stores of 128 bits (STG.E.128, or any STG form with .128) a kernel has."""
    return sum(1 for m in re.finditer(r"\bSTG((?:\.[A-Z0-9]+)*)", sass)
               if "128" in m.group(1).split("."))


@_needs_cuobjdump
def test_sass_maxpool_v3_stores_128_bits_at_a_time(tmp_path):
    """Max-pool v3 stores a thread's POOL_V3_VEC outputs in 128-bit stores: forward <float>
    one for y's 4 values and two for idx's 4 int64 (<double>: two and two), backward one for
    dx (<double>: two). v2, one element per thread, has none: the check tells them apart."""
    sass = nvrtc_sass("maxpool2d.cu", "sm_90")
    vec = kernels.POOL_V3_VEC
    for dtype, size in (("float", 4), ("double", 8)):
        fwd = stg_128_count(sass[f"maxpool2d_fwd_v3_vec<{dtype}>"])
        bwd = stg_128_count(sass[f"maxpool2d_bwd_v3_vec<{dtype}>"])
        print(dtype, "fwd", fwd, "bwd", bwd)
        assert fwd >= (vec * size + vec * 8) // 16, (dtype, fwd)
        assert bwd >= vec * size // 16, (dtype, bwd)
        for kernel in ("maxpool2d_fwd_v2_plane", "maxpool2d_bwd_v2_plane"):
            assert stg_128_count(sass[f"{kernel}<{dtype}>"]) == 0, kernel


# ----------------------------------------------------------------------------------------
# the tensor-core kernels (fprop / dgrad / wgrad v3): tiles, registers, the instructions in their SASS

# template -> (source, tile mirror, how many of its two operand tiles cp.async copies)
V3_KERNELS = {"conv2d_fprop_v3_mma": ("conv2d_fprop.cu", kernels.FPROP_V3, 1),
              "conv2d_fprop_v4_nhwc_mma": ("conv2d_fprop.cu", kernels.FPROP_V3, 2),
              "conv2d_dgrad_v3_mma": ("conv2d_dgrad.cu", kernels.DGRAD_V3, 0),
              "conv2d_dgrad_v4_nhwc_mma": ("conv2d_dgrad.cu", kernels.DGRAD_V3, 2),
              "conv2d_wgrad_v3_mma": ("conv2d_wgrad.cu", kernels.WGRAD_V3, 1),
              "conv2d_wgrad_v4_nhwc_mma": ("conv2d_wgrad.cu", kernels.WGRAD_V3, 2)}
# ... whose shared tiles are reduction-major, transposed as fragments are read (ldmatrix.trans)
KMAJOR_KERNELS = {"conv2d_wgrad_v4_nhwc_mma"}


@pytest.mark.parametrize("template", sorted(V3_KERNELS))
def test_v3_tile_sizes_match_the_python_mirror(template):
    source_name, t, _ = V3_KERNELS[template]
    defaults = _macro_defaults(source_name)
    for field in ("BM", "BN", "BK", "WM", "WN"):
        assert defaults[f"{t.prefix}_{field}"] == getattr(t, field), field
    assert defaults[f"{t.prefix}_MIN_BLOCKS"] == t.min_blocks
    text = source_path(source_name).read_text()
    assert re.search(rf"__global__ void __launch_bounds__\({t.prefix}_THREADS, "
                     rf"{t.prefix}_LAUNCH_MIN_BLOCKS\)\s*{template}\(", text)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("template", sorted(V3_KERNELS))
def test_v3_fits_its_launch_bounds(template, arch):
    """sm_80+ (real mma): 2 resident blocks of 256 threads, so at most 128 registers; sm_75
    runs the shuffle emulation under a 1-block bound (more registers, no spills either)."""
    source_name, t, _ = V3_KERNELS[template]
    rows, _ = nvrtc_compile(source_name, arch)
    mine = [r for r in rows if r.kernel.split("<")[0] == template]
    assert sorted(r.kernel for r in mine) == sorted(kernels.name_expressions(source_name)[i]
                                                    for i, e in enumerate(
                                                        kernels.name_expressions(source_name))
                                                    if e.startswith(template + "<"))
    blocks = t.min_blocks if arch != "sm_75" else 1
    limit = min(255, REGISTER_FILE // (t.threads * blocks))
    for r in mine:
        print(f"{r.kernel} {arch}: {r.registers} registers (limit {limit}), {r.smem} B smem")
        assert r.registers <= limit and r.spill_stores == r.spill_loads == 0
        assert r.smem <= 48 * 1024


def sass_counts(sass: str, pattern: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in re.finditer(pattern, sass):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


@_needs_cuobjdump
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("template", sorted(V3_KERNELS))
@pytest.mark.parametrize("ctype", ["__half", "__nv_bfloat16"])
def test_sass_v3_runs_on_tensor_cores(template, arch, ctype, tmp_path):
    """HMMA.16816.F32 (mma.m16n8k16 with fp32 accumulation; .BF16 for bfloat16 operands):
    (BK/16) x (WM/16) x (WN/8) per tile in the unrolled loop; LDSM.16.M88.4 (ldmatrix.x4) for
    the fragments (LDSM.16.MT88.4, ldmatrix.x4.trans, for reduction-major tiles); LDGSTS
    (cp.async) for the tiles copied straight to shared memory; no local memory and no shuffles
    (no emulation)."""
    source_name, t, copied_tiles = V3_KERNELS[template]
    kernel = f"{template}<{ctype}>"
    sass = nvrtc_sass(source_name, arch)[kernel]
    counts = sass_counts(sass, r"\b((?:HMMA|LDSM|LDGSTS|LDL|STL|SHFL)(?:\.[A-Z0-9]+)*)\b")
    print(kernel, arch, counts)
    hmma = "HMMA.16816.F32.BF16" if ctype == "__nv_bfloat16" else "HMMA.16816.F32"
    assert counts.get(hmma, 0) >= (t.BK // 16) * (t.WM // 16) * (t.WN // 8)
    ldsm = "LDSM.16.MT88.4" if template in KMAJOR_KERNELS else "LDSM.16.M88.4"
    assert counts.get(ldsm, 0) >= (t.BK // 16) * (t.WM // 16 + t.WN // 16)
    assert any(k.startswith("LDGSTS") for k in counts) == (copied_tiles > 0), counts
    assert not any(k.startswith(("LDL", "STL", "SHFL")) for k in counts), counts


@_needs_cuobjdump
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("template", sorted(V3_KERNELS))
def test_sass_v3_float_runs_on_tf32_tensor_cores(template, arch, tmp_path):
    """The float instances: HMMA.1688.F32.TF32 (mma.m16n8k8 .tf32), (BK/8) x (WM/16) x (WN/8)
    per tile; LDGSTS where a tile is copied by cp.async; no local memory, no shuffles."""
    source_name, t, copied_tiles = V3_KERNELS[template]
    kernel = f"{template}<float>"
    sass = nvrtc_sass(source_name, arch)[kernel]
    counts = sass_counts(sass, r"\b((?:HMMA|LDGSTS|LDL|STL|SHFL)(?:\.[A-Z0-9]+)*)\b")
    print(kernel, arch, counts)
    assert counts.get("HMMA.1688.F32.TF32", 0) >= (kernels.TF32_BK // 8) * (t.WM // 16) * (
        t.WN // 8)
    assert any(k.startswith("LDGSTS") for k in counts) == (copied_tiles > 0), counts
    assert not any(k.startswith(("LDL", "STL", "SHFL")) for k in counts), counts



@_needs_cuobjdump
@pytest.mark.parametrize("ctype", ["__half", "float"])
@pytest.mark.parametrize("op", ["fprop", "dgrad", "wgrad"])
def test_sass_v4_copies_both_tiles(op, ctype, tmp_path):
    """The NHWC kernels (v4) copy their activation tile with cp.async too: per tile, 2 pieces
    of it and 1 filter (wgrad: dy) piece per thread, where fprop v3 copies the filter piece
    only (dgrad v3 nothing), so at least 3 times fprop v3's LDGSTS. And they pipeline
    MMA_COPY_STAGES tiles: each waits for its copies with MMA_COPY_STAGES - 2 groups still in
    flight (DEPBAR.LE SB0, 0x1 for 3 stages), never for all of them, as the double-buffered
    v3 does (0x0)."""
    ldgsts, sass = {}, {}
    for source, template in (("conv2d_fprop.cu", "conv2d_fprop_v3_mma"),
                             (f"conv2d_{op}.cu", f"conv2d_{op}_v4_nhwc_mma")):
        sass[template] = nvrtc_sass(source, "sm_90")[f"{template}<{ctype}>"]
        ldgsts[template] = sum(sass_counts(sass[template],
                                           r"\b(LDGSTS(?:\.[A-Z0-9]+)*)\b").values())
    print(ctype, ldgsts)
    v3, v4 = ldgsts["conv2d_fprop_v3_mma"], ldgsts[f"conv2d_{op}_v4_nhwc_mma"]
    assert v3 > 0 and v4 >= 3 * v3, ldgsts
    waits = set(re.findall(r"DEPBAR\.LE SB0, (0x[0-9a-f]+)", sass[f"conv2d_{op}_v4_nhwc_mma"]))
    assert waits == {hex(kernels.MMA_COPY_STAGES - 2)}, waits
    assert "0x0" in re.findall(r"DEPBAR\.LE SB0, (0x[0-9a-f]+)", sass["conv2d_fprop_v3_mma"])


def test_copy_stages_match_the_python_mirror():
    assert _macro_defaults("mma.cuh")["MMA_COPY_STAGES"] == kernels.MMA_COPY_STAGES >= 3


def test_tf32_tile_sizes_match_the_python_mirror():
    for source_name, t in (("conv2d_fprop.cu", "FPROP"), ("conv2d_dgrad.cu", "DGRAD"),
                           ("conv2d_wgrad.cu", "WGRAD")):
        assert _macro_defaults(source_name)[f"{t}_TF32_BK"] == kernels.TF32_BK


# ----------------------------------------------------------------------------------------
# the wgmma kernels (v5): wgmma on sm_90a, the mma.sync emulation elsewhere

# template -> (source, tile mirror)
WGMMA_KERNELS = {"conv2d_fprop_v5_nhwc_wgmma": ("conv2d_fprop.cu", kernels.FPROP_V3),
                 "conv2d_dgrad_v5_nhwc_wgmma": ("conv2d_dgrad.cu", kernels.DGRAD_V3),
                 "conv2d_wgrad_v5_nhwc_wgmma": ("conv2d_wgrad.cu", kernels.WGRAD_V3)}


def v5_configs(template: str) -> tuple:
    """The tiles of each tile configuration of a v5 kernel, CFG 0 first (kernels.TILE_CONFIGS;
    wgrad v5 has only its default)."""
    op = template.split("_")[1]
    return kernels.TILE_CONFIGS.get((op, "v5"), (WGMMA_KERNELS[template][1],))


def v5_instance(template: str, ctype: str, config: int) -> str:
    return f"{template}<{ctype}, {config}>" if config else f"{template}<{ctype}>"


def test_v5_tile_configurations_match_the_python_mirror():
    """mma.cuh's WgmmaColumns (CFG 1: 128 columns) against kernels.TILE_CONFIGS: the rows, the
    reduction tile and the launch bounds stay v3's, so the same bits and the same threads."""
    text = source_path("mma.cuh").read_text()
    wide = int(re.search(r"enum \{ BN = CFG == 1 \? (\d+) : BN_ \}", text).group(1))
    for op in ("fprop", "dgrad"):
        default, large = kernels.TILE_CONFIGS[(op, "v5")]
        assert default == WGMMA_KERNELS[f"conv2d_{op}_v5_nhwc_wgmma"][1]
        assert (large.config, large.BN, large.BM, large.BK) == (1, wide, default.BM, default.BK)
        assert (large.threads, large.min_blocks) == (default.threads, default.min_blocks)
# wgrad v5 reads both operands MN-major (transposed): WgmmaMnTile, whose row groups of 8 are
# BK * 16 + 16 bytes apart; fprop and dgrad K-major (WgmmaTile, BK * 16 bytes).
MN_MAJOR_V5 = {"conv2d_wgrad_v5_nhwc_wgmma"}


def v5_stage_bytes(template: str, t) -> int:
    """Shared memory of one v5 stage pair (the A and B tiles)."""
    if template in MN_MAJOR_V5:
        return (t.BM + t.BN) // 8 * (t.BK * 16 + 16)
    return (t.BM + t.BN) * t.BK * 2


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("template", sorted(WGMMA_KERNELS))
def test_v5_fits_its_launch_bounds(template, arch):
    """Two warpgroups (v3's 256 threads): 2 resident blocks on sm_80+ (128 registers each at
    most), no spills; MMA_COPY_STAGES stages of the 128 x 32 and 64 x 32 tiles (128 x 32 and
    128 x 32 for the 128 x 128 configuration) in static shared memory."""
    source_name, _ = WGMMA_KERNELS[template]
    rows, _ = nvrtc_compile(source_name, arch)
    mine = {r.kernel: r for r in rows if r.kernel.split("<")[0] == template}
    configs = v5_configs(template)
    assert sorted(mine) == sorted(v5_instance(template, c, t.config) for c in
                                  ("__half", "__nv_bfloat16") for t in configs)
    for t in configs:
        blocks = t.min_blocks if arch != "sm_75" else 1
        limit = min(255, REGISTER_FILE // (t.threads * blocks))
        for ctype in ("__half", "__nv_bfloat16"):
            r = mine[v5_instance(template, ctype, t.config)]
            print(f"{r.kernel} {arch}: {r.registers} registers (limit {limit}), {r.smem} B smem")
            assert r.registers <= limit and r.spill_stores == r.spill_loads == 0
            assert r.smem == kernels.MMA_COPY_STAGES * v5_stage_bytes(template, t) <= 48 * 1024


V5_INSTANCES = [(template, t.config) for template in sorted(WGMMA_KERNELS)
                for t in v5_configs(template)]


@_needs_cuobjdump
@pytest.mark.parametrize("template,config", V5_INSTANCES,
                         ids=[f"{t}-cfg{c}" for t, c in V5_INSTANCES])
@pytest.mark.parametrize("ctype", ["__half", "__nv_bfloat16"])
def test_sass_v5_runs_wgmma_on_sm90a(template, config, ctype, tmp_path):
    """sm_90a: HGMMA.64xBNx16.F32 (wgmma m64n64k16; m64n128k16 in the 128 x 128 tile
    configuration; .BF16 for bfloat16), BK/16 per tile, between WARPGROUP.ARRIVE (wgmma.fence)
    and WARPGROUP.DEPBAR (wgmma.wait_group); FENCE.VIEW.ASYNC.S (fence.proxy.async: the copies
    made visible to the tensor cores); both tiles copied by LDGSTS (more in the 128 x 128
    configuration, whose B tile is two pieces per thread); no ldmatrix, no mma.sync, no local memory, no shuffles;
    wgrad's both operands transposed (.tnspA.tnspB: imm-trans 1, MN-major), fprop's and
    dgrad's neither. sm_90 without the 'a' features: the emulation on mma.sync (HMMA), no
    HGMMA."""
    source_name, _ = WGMMA_KERNELS[template]
    t = v5_configs(template)[config]
    kernel = v5_instance(template, ctype, config)
    sass = nvrtc_sass(source_name, "sm_90a")[kernel]
    counts = sass_counts(sass, r"\b((?:HGMMA|HMMA|LDSM|LDGSTS|LDL|STL|SHFL|WARPGROUP|FENCE)"
                               r"(?:\.[A-Z0-9x]+)*)\b")
    print(template, ctype, counts)
    hgmma = f"HGMMA.64x{t.BN}x16.F32" + (".BF16" if ctype == "__nv_bfloat16" else "")
    assert counts.get(hgmma, 0) >= t.BK // 16, counts
    for needed in ("WARPGROUP.ARRIVE", "WARPGROUP.DEPBAR.LE", "FENCE.VIEW.ASYNC.S"):
        assert counts.get(needed, 0) > 0, (needed, counts)
    ldgsts = sum(n for k, n in counts.items() if k.startswith("LDGSTS"))
    assert ldgsts > 0, counts
    if config:  # the 128-column B tile: two pieces per thread per tile where CFG 0 has one
        base = nvrtc_sass(source_name, "sm_90a")[v5_instance(template, ctype, 0)]
        assert ldgsts > sum(sass_counts(base, r"\b(LDGSTS(?:\.[A-Z0-9]+)*)\b").values())
    assert not any(k.startswith(("HMMA", "LDSM", "LDL", "STL", "SHFL")) for k in counts), counts
    hgmma_lines = [line for line in sass.splitlines() if "HGMMA" in line]
    transposed = [".tnspA.tnspB" in line for line in hgmma_lines]
    assert all(transposed) if template in MN_MAJOR_V5 else not any("tnsp" in line
                                                                   for line in hgmma_lines)
    emulated = nvrtc_sass(source_name, "sm_90")[kernel]
    assert "HGMMA" not in emulated and "HMMA.16816.F32" in emulated


@_needs_cuobjdump
@pytest.mark.parametrize("template", sorted(V3_KERNELS))
def test_sass_v3_on_sm75_is_the_shuffle_emulation(template, tmp_path):
    """sm_75 has no mma.m16n8k16 (nor cp.async): v3 compiles to mma.cuh's shuffle emulation."""
    source_name = V3_KERNELS[template][0]
    kernel = f"{template}<__half>"
    sass = nvrtc_sass(source_name, "sm_75")[kernel]
    assert "HMMA" not in sass and "LDSM" not in sass and "LDGSTS" not in sass
    assert "SHFL" in sass


if __name__ == "__main__":  # python tests/test_compile.py: the resource table, sm_90
    table: list[Resources] = []
    for name in sorted(kernels.KERNELS):
        table += nvrtc_compile(name, "sm_90")[0]
    print(format_table(table))
