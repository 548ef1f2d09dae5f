"""Where the CUDA C sources live, and their text as every runtime compiles it.

``cuda/`` sits at the top of the repository; the wheel carries it as ``gpuconv/cuda``
(pyproject.toml). An installed wheel finds it inside the package, an editable install
or a source checkout one folder up.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.MULTILINE)


def cuda_dir() -> Path:
    """The folder holding the ``.cu`` / ``.cuh`` files."""
    for candidate in (_PACKAGE_DIR / "cuda", _PACKAGE_DIR.parent / "cuda"):
        if (candidate / "common.cuh").is_file():
            return candidate
    raise FileNotFoundError(
        f"gpuconv's CUDA sources were not found next to the package ({_PACKAGE_DIR}); "
        "reinstall gpuconv")


def source_path(name: str) -> Path:
    """Path of one source file, e.g. ``source_path('conv2d_fprop.cu')``."""
    path = cuda_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"no CUDA source {name!r} in {cuda_dir()}")
    return path


@functools.lru_cache(maxsize=None)
def source_text(name: str) -> str:
    """The source with the project's own ``#include "x.cuh"`` lines inlined.

    Inlining keeps the kernels include-free for NVRTC (which has no system headers) and makes
    a header edit change the text that compile caches hash.
    """
    return _inline(name, seen=set())


def _inline(name: str, seen: set[str]) -> str:
    if name in seen:  # an include guard would drop it anyway; avoid loops
        return ""
    seen.add(name)
    text = source_path(name).read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda m: f'// ---- begin {m.group(1)}\n{_inline(m.group(1), seen)}\n'
                                  f'// ---- end {m.group(1)}', text)
