"""CPU runtime: run the project's unmodified CUDA C kernels on the CPU, with CuPy's RawModule API.

    mod = RawModule(code=src, options=("-DTILE=16",), name_expressions=("conv2d_fprop_v1_direct<float>",))
    k = mod.get_function("conv2d_fprop_v1_direct<float>")
    k((grid_x, grid_y), (16, 16), (x, w, y, numpy.int32(H)), shared_mem=0)

How it works
  * Build: the code is compiled by g++ (-std=c++17 -O2) with ``cuda_cpu.h`` force-included; that header
    maps the CUDA language onto C++ and contains the runtime (blocks on a pool of worker threads, CUDA
    threads as cooperative fibers, real barriers and warp rendezvous; see its header comment).  A generated
    wrapper exports one ``int gpuconv_kN(grid[3], block[3], smem, void** args)`` entry per kernel (every
    non-template ``__global__`` function found in the code, plus each name expression) and its parameter
    signature; a second generated translation unit defines the ``extern __shared__`` arrays.
    NVRTC-only options are dropped; ``-D``/``-U``/``-I`` options are passed on.
  * Cache: ``$GPUCONV_CACHE_DIR/cpu`` (else ``$XDG_CACHE_HOME/gpuconv/cpu``, else ``~/.cache/gpuconv/cpu``),
    keyed by a hash of sources, flags, compiler version and the header.  Builds go to a temporary file
    and are published with ``os.replace`` under a file lock, with a checksum file written last, so
    concurrent or interrupted builds never leave a bad library in use.  Loaded modules are also cached
    in-process.  ``GPUCONV_CXX`` (or ``CXX``) chooses the compiler.
  * Launch: arguments are checked against the kernel's signature (count, C-contiguous NumPy arrays of the
    pointee's dtype for pointers, read-only arrays only for ``const`` pointers, NumPy scalars of the exact
    width and kind for scalars) and a TypeError names the position.  Faults inside the kernel (divergent
    barrier, deadlock, warp mask naming an exited lane, invalid launch configuration, fiber stack
    overflow, ``__trap``) raise KernelError with the CUDA block and thread.  ``GPUCONV_CPU_WORKERS``
    sets the number of worker threads (default: all CPUs).
  * Sanitizer mode: with ``GPUCONV_CPU_SANITIZE=1`` modules are built with
    ``-fsanitize=address,undefined``; array arguments are copied into exact-size heap blocks so an
    out-of-bounds access is reported (with the argument and the CUDA block/thread), dynamic shared memory
    past ``shared_mem`` is poisoned and simple static ``__shared__`` arrays become exact-size heap blocks.
    The process must preload the ASan runtime: run it as ``subprocess.run(..., env=sanitizer_env())``.
"""
from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy

__all__ = ["RawModule", "RawKernel", "KernelError", "CompileError", "CompilerNotFoundError", "sanitizer_env",
           "cache_dir"]

HEADER = Path(__file__).with_name("cuda_cpu.h")
_DYN_SMEM_MAX = 227 * 1024
_RUNTIME_VERSION = "1"


class KernelError(RuntimeError):
    """A fault detected while running a kernel (the message names the CUDA block and thread)."""


class CompileError(RuntimeError):
    """g++ rejected the kernel source; the message contains the compiler's log."""


class CompilerNotFoundError(CompileError):
    """No C++ compiler: the CPU runtime needs g++."""


# ------------------------------------------------------------------------------------------ build helpers
def cache_dir() -> Path:
    root = os.environ.get("GPUCONV_CACHE_DIR")
    if root:
        return Path(root) / "cpu"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "gpuconv" / "cpu"


def _compiler() -> str:
    cxx = os.environ.get("GPUCONV_CXX") or os.environ.get("CXX") or "g++"
    path = shutil.which(cxx)
    if path is None:
        raise CompilerNotFoundError(
            f"C++ compiler {cxx!r} not found: the gpuconv CPU runtime compiles CUDA kernels with g++. "
            "Install it (Debian/Ubuntu: `apt-get install g++`) or point GPUCONV_CXX at a g++ binary.")
    return path


_version_cache: dict[str, str] = {}


def _compiler_version(cxx: str) -> str:
    if cxx not in _version_cache:
        r = subprocess.run([cxx, "--version"], capture_output=True, text=True)
        _version_cache[cxx] = r.stdout
    return _version_cache[cxx]


def _sanitize() -> bool:
    return os.environ.get("GPUCONV_CPU_SANITIZE", "") not in ("", "0")


_PASS_PREFIXES = ("-D", "-U", "-I")
_LONG_OPTIONS = {"--define-macro=": "-D", "--undefine-macro=": "-U", "--include-path=": "-I"}


def _filter_options(options) -> list[str]:
    """Keep the options that mean something to g++ (-D/-U/-I); drop NVRTC-only ones (-arch, -std, ...)."""
    out = []
    for opt in options:
        opt = str(opt)
        for long, short in _LONG_OPTIONS.items():
            if opt.startswith(long):
                opt = short + opt[len(long):]
        if opt.startswith(_PASS_PREFIXES) and len(opt) > 2:
            out.append(opt)
    return out


def _strip_comments(code: str) -> str:
    code = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group()), code, flags=re.S)
    return re.sub(r"//[^\n]*", "", code)


_GLOBAL_RE = re.compile(r"\b__global__\b")
_NAME_AFTER_GLOBAL = re.compile(
    r"\s*(?:(?:void|static|inline|__launch_bounds__\s*\([^)]*\)|__noinline__|__forceinline__)\s*)*"
    r"([A-Za-z_]\w*)\s*\(")


def _plain_kernels(code: str) -> list[str]:
    """Names of the non-template __global__ functions (template kernels need name_expressions)."""
    code = _strip_comments(code)
    names = []
    for m in _GLOBAL_RE.finditer(code):
        start = max(code.rfind(";", 0, m.start()), code.rfind("}", 0, m.start()), code.rfind("{", 0, m.start()))
        if re.search(r"\btemplate\b", code[start + 1:m.start()]):
            continue
        n = _NAME_AFTER_GLOBAL.match(code, m.end())
        if n and n.group(1) not in names:
            names.append(n.group(1))
    return names


_EXTERN_SHARED_RE = re.compile(r"\bextern\s+__shared__\b[^;]*?([A-Za-z_]\w*)\s*\[\s*\]\s*;")


def _dyn_shared_source(code: str) -> str:
    """Second translation unit: one definition per `extern __shared__` name, filled with 0xff per block."""
    names = sorted(set(_EXTERN_SHARED_RE.findall(_strip_comments(code))))
    lines = ["#include <stddef.h>", "#include <string.h>",
             "#if defined(__SANITIZE_ADDRESS__)", "#include <sanitizer/asan_interface.h>", "#endif",
             f"#define GPUCONV_DYN_MAX {_DYN_SMEM_MAX}"]
    for n in names:
        lines.append(f"alignas(128) thread_local unsigned char {n}[GPUCONV_DYN_MAX];")
    lines.append('extern "C" __attribute__((visibility("hidden"))) void gpuconv_dyn_smem_prepare(size_t n) {')
    for n in names:
        lines += ["#if defined(__SANITIZE_ADDRESS__)",
                  f"  __asan_unpoison_memory_region({n}, GPUCONV_DYN_MAX);",
                  f"  __asan_poison_memory_region({n} + n, GPUCONV_DYN_MAX - n);",
                  "#endif",
                  f"  memset({n}, 0xff, n);  // reads before writes show as NaN"]
    lines.append("}")
    return "\n".join(lines) + "\n"


_STATIC_SHARED_RE = re.compile(
    r"\b__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([A-Za-z_][\w:\s\*]*?)\s*\b([A-Za-z_]\w*)\s*"
    r"((?:\[[^\]\[;,]+\]\s*)+);")


def _sanitize_rewrite(code: str) -> str:
    """Sanitizer mode: `__shared__ T name[dims];` inside a function -> an exact-size heap block (ASan sees
    thread_local and template statics without redzones)."""
    def repl(m):
        before = code[:m.start()]
        if re.search(r"\bextern\s*$", before) or before.count("{") <= before.count("}"):
            return m.group()
        return f"GPUCONV_SAN_SHARED({m.group(1).strip()}, {m.group(2)}, {m.group(3).strip()});"
    return _STATIC_SHARED_RE.sub(repl, code)


def _wrapper_source(code: str, entries: list[str]) -> str:
    parts = ['#line 1 "kernel.cu"', code, "", '#line 1 "gpuconv_cpu_exports.cpp"']
    for i, expr in enumerate(entries):
        parts.append(f"GPUCONV_EXPORT_KERNEL({i}, &{expr})")
    return "\n".join(parts) + "\n"


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _valid(so: Path, ok: Path) -> bool:
    try:
        return ok.read_text().strip() == _file_hash(so)
    except OSError:
        return False


def _build(key: str, wrapper: str, dyn: str, flags: list[str], cxx: str) -> Path:
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    so, ok = d / f"{key}.so", d / f"{key}.ok"
    if _valid(so, ok):
        return so
    with open(d / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; the others then find a valid build
        if _valid(so, ok):
            return so
        tmpdir = Path(tempfile.mkdtemp(prefix=f"build-{key[:12]}-", dir=d))
        try:
            (tmpdir / "kernel_wrapper.cpp").write_text(wrapper)
            (tmpdir / "dyn_shared.cpp").write_text(dyn)
            out = tmpdir / "module.so"
            # The extern __shared__ definitions must not see cuda_cpu.h (-include applies to every source).
            cmds = [[cxx, *flags, "-c", str(tmpdir / "dyn_shared.cpp"), "-o", str(tmpdir / "dyn_shared.o")],
                    [cxx, *flags, "-include", str(HEADER), str(tmpdir / "kernel_wrapper.cpp"),
                     str(tmpdir / "dyn_shared.o"), "-o", str(out), "-lpthread"]]
            for cmd in cmds:
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    raise CompileError(f"g++ failed to compile the kernel module (exit {r.returncode}).\n"
                                       f"command: {' '.join(cmd)}\n{r.stderr}{r.stdout}")
            digest = _file_hash(out)
            os.replace(out, so)  # atomic: readers see the old file or the complete new one
            tmp_ok = tmpdir / "ok"
            tmp_ok.write_text(digest)
            os.replace(tmp_ok, ok)  # the checksum is written last: its presence means `so` is complete
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return so


# ------------------------------------------------------------------------------------------ modules
_modules: dict[str, tuple] = {}
_modules_lock = threading.Lock()
_launch_lock = threading.Lock()


def _asan_loaded() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "__asan_init")
    except OSError:
        return False


def _load(code: str, options, name_expressions):
    cxx = _compiler()
    sanitize = _sanitize()
    entries = list(dict.fromkeys([*_plain_kernels(code), *map(str, name_expressions)]))
    src = _sanitize_rewrite(code) if sanitize else code
    wrapper = _wrapper_source(src, entries)
    dyn = _dyn_shared_source(code)
    flags = ["-std=c++17", "-fPIC", "-shared", "-fvisibility=hidden", "-Wno-unknown-pragmas"]
    flags += (["-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer"] if sanitize else ["-O2"])
    flags += _filter_options(options)
    h = hashlib.sha256()
    for part in (_RUNTIME_VERSION, wrapper, dyn, "\0".join(flags), _compiler_version(cxx), HEADER.read_text()):
        h.update(part.encode())
        h.update(b"\0\1")
    key = h.hexdigest()[:32]
    with _modules_lock:
        if key in _modules:
            return _modules[key]
        if sanitize and not _asan_loaded():
            raise RuntimeError("GPUCONV_CPU_SANITIZE=1 needs the ASan runtime preloaded: run Python with "
                               "env=gpuconv.runtime.cpu_rt.sanitizer_env() (sets LD_PRELOAD)")
        so = _build(key, wrapper, dyn, flags, cxx)
        lib = ctypes.CDLL(str(so), mode=os.RTLD_LOCAL)
        lib.gpuconv_last_error.restype = ctypes.c_char_p
        lib.gpuconv_set_arg_sizes.argtypes = [ctypes.c_void_p]
        kernels = {}
        for i, expr in enumerate(entries):
            fn = getattr(lib, f"gpuconv_k{i}")
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
            fn.restype = ctypes.c_int
            sigf = getattr(lib, f"gpuconv_k{i}_sig")
            sigf.restype = ctypes.c_char_p
            sig = sigf().decode()
            kernels[expr] = (fn, tuple(sig.split(",")) if sig else ())
        _modules[key] = (lib, kernels, sanitize)
        return _modules[key]


class RawModule:
    """CPU counterpart of ``cupy.RawModule(code=..., options=..., name_expressions=...)``."""

    def __init__(self, code: str | None = None, *, path: str | None = None, options: tuple = (),
                 name_expressions: tuple = (), backend: str = "nvrtc", translate_cucomplex: bool = False,
                 jitify: bool = False):
        if (code is None) == (path is None):
            raise TypeError("RawModule needs exactly one of code= or path=")
        if code is None:
            code = Path(path).read_text()
        self.code = code
        self.options = tuple(options)
        self.name_expressions = tuple(name_expressions)
        self._lib, self._kernels, self._sanitize = _load(code, self.options, self.name_expressions)

    def get_function(self, name: str) -> "RawKernel":
        if name not in self._kernels:
            raise KernelError(f"no kernel named {name!r} in the module (known: {sorted(self._kernels)}); "
                              "template kernels must be listed in name_expressions")
        fn, sig = self._kernels[name]
        return RawKernel(self, name, fn, sig)


def _dims(v, what):
    if isinstance(v, (int, numpy.integer)):
        v = (v,)
    if not isinstance(v, (tuple, list)) or not 1 <= len(v) <= 3:
        raise TypeError(f"{what} must be an int or a tuple of 1-3 ints, got {v!r}")
    if not all(isinstance(x, (int, numpy.integer)) and x >= 0 for x in v):
        raise ValueError(f"{what} must hold non-negative ints, got {v!r}")
    v = tuple(int(x) for x in v) + (1,) * (3 - len(v))
    if any(x > 0xFFFFFFFF for x in v):
        raise ValueError(f"{what} {v} exceeds 32 bits")
    return (ctypes.c_uint * 3)(*v)


_KIND = {"i": "i", "u": "u", "f": "f", "b": "b"}
_NAMES = {"i1": "int8", "i2": "int16", "i4": "int32", "i8": "int64", "u1": "uint8", "u2": "uint16",
          "u4": "uint32", "u8": "uint64", "f2": "float16 (__half)", "f4": "float32", "f8": "float64", "b1": "bool",
          "bf16": "bfloat16 (__nv_bfloat16)"}


def _describe(code: str) -> str:
    if code[0] in "pP":
        pointee = code[1:]
        const = "const " if code[0] == "P" else ""
        if pointee in _NAMES:
            return f"a C-contiguous numpy {_NAMES[pointee]} array ({const}pointer)"
        return f"a C-contiguous numpy array ({const}pointer)"
    if code[0] == "s":
        return f"a numpy structured scalar of {code[1:]} bytes (struct by value)"
    return f"a numpy.{_NAMES.get(code, code).split()[0]} scalar"


def _dtype_code(dt: numpy.dtype) -> str:
    if dt.name == "bfloat16":  # ml_dtypes' bfloat16 (NumPy kind 'V')
        return "bf16"
    return f"{dt.kind}{dt.itemsize}" if dt.kind in _KIND else ""


class RawKernel:
    """A kernel of a RawModule; call it like CuPy's: ``kern(grid, block, args, shared_mem=0)``."""

    def __init__(self, module: RawModule, name: str, fn, signature: tuple):
        self.module, self.name, self._fn, self.signature = module, name, fn, signature

    def _pack(self, args):
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"{self.name}: args must be a tuple, got {type(args).__name__}")
        sig = self.signature
        if len(args) != len(sig):
            raise TypeError(f"{self.name}: expected {len(sig)} arguments ({', '.join(map(_describe, sig))}), "
                            f"got {len(args)}")
        n = len(sig)
        argv = (ctypes.c_void_p * max(n, 1))()
        ptrs = (ctypes.c_void_p * max(n, 1))()
        keep, sizes = [], [0] * n
        for i, (a, code) in enumerate(zip(args, sig)):
            if code[0] in "pP":
                if not isinstance(a, numpy.ndarray):
                    raise TypeError(f"{self.name}: argument {i} must be {_describe(code)}, got {type(a).__name__}")
                if not a.flags.c_contiguous:
                    raise TypeError(f"{self.name}: argument {i} must be C-contiguous (use numpy.ascontiguousarray)")
                pointee = code[1:]
                if pointee in _NAMES and _dtype_code(a.dtype) != pointee:
                    raise TypeError(f"{self.name}: argument {i} must be {_describe(code)}, got a {a.dtype} array")
                if code[0] == "p" and not a.flags.writeable:
                    raise TypeError(f"{self.name}: argument {i} is a read-only array but the kernel parameter "
                                    "is a non-const pointer")
                ptrs[i] = a.ctypes.data
                argv[i] = ctypes.addressof(ptrs) + i * ctypes.sizeof(ctypes.c_void_p)
                sizes[i] = a.nbytes
            elif code[0] == "s":
                if not isinstance(a, numpy.generic) or a.dtype.itemsize != int(code[1:]):
                    raise TypeError(f"{self.name}: argument {i} must be {_describe(code)}, got {a!r}")
                buf = ctypes.create_string_buffer(a.tobytes(), len(a.tobytes()))
                keep.append(buf)
                argv[i] = ctypes.addressof(buf)
            else:
                if not isinstance(a, numpy.generic) or _dtype_code(a.dtype) != code:
                    got = f"a numpy.{a.dtype} scalar" if isinstance(a, numpy.generic) else \
                        f"{type(a).__name__} {a!r}"
                    raise TypeError(f"{self.name}: argument {i} must be {_describe(code)}, got {got}"
                                    + (" (Python numbers are refused: wrap them, e.g. numpy.int32(n))"
                                       if isinstance(a, (int, float, bool)) else ""))
                buf = ctypes.create_string_buffer(a.tobytes(), a.dtype.itemsize)
                keep.append(buf)
                argv[i] = ctypes.addressof(buf)
        keep += [argv, ptrs]
        return argv, keep, sizes

    def __call__(self, grid, block, args, *, shared_mem: int = 0, stream=None, enable_cooperative_groups=False):
        if enable_cooperative_groups:
            raise KernelError(f"{self.name}: cooperative launches are not supported by the CPU runtime")
        g, b = _dims(grid, "grid"), _dims(block, "block")
        shared_mem = int(shared_mem)
        if shared_mem < 0:
            raise ValueError(f"shared_mem must be >= 0, got {shared_mem}")
        argv, keep, sizes = self._pack(args)
        lib = self.module._lib
        with _launch_lock:
            if self.module._sanitize:
                arr = (ctypes.c_ulonglong * max(len(sizes), 1))(*sizes)
                keep.append(arr)
                lib.gpuconv_set_arg_sizes(ctypes.addressof(arr))
            rc = self._fn(ctypes.addressof(g), ctypes.addressof(b), shared_mem, ctypes.addressof(argv))
            msg = lib.gpuconv_last_error().decode(errors="replace") if rc else ""
        if rc:
            raise KernelError(f"{self.name}: {msg}")


# ------------------------------------------------------------------------------------------ sanitizer
def sanitizer_env(base: dict | None = None) -> dict:
    """Environment for a subprocess that runs kernels in sanitizer mode (ASan + UBSan preloaded)."""
    cxx = _compiler()
    libs = []
    for name in ("libasan.so", "libubsan.so"):
        p = subprocess.run([cxx, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(p):
            raise RuntimeError(f"{cxx} does not know where {name} is: install the sanitizer runtimes (libasan)")
        libs.append(os.path.realpath(p))
    env = dict(os.environ if base is None else base)
    env["LD_PRELOAD"] = ":".join(libs + ([env["LD_PRELOAD"]] if env.get("LD_PRELOAD") else []))
    # Python itself "leaks" at exit; keep our SIGSEGV handler for stack overflow reports.
    env["ASAN_OPTIONS"] = "detect_leaks=0:allow_user_segv_handler=1:abort_on_error=0:" + env.get("ASAN_OPTIONS", "")
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:" + env.get("UBSAN_OPTIONS", "")
    env["GPUCONV_CPU_SANITIZE"] = "1"
    return env
