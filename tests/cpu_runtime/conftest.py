"""Shared fixtures for the CPU runtime tests: a per-session kernel cache and module loading helpers."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpuconv.runtime import cpu_rt

KERNELS = Path(__file__).with_name("kernels")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def cpu_cache(tmp_path_factory):
    """Every test session builds into its own cache, so cache tests start clean and nothing leaks out."""
    d = tmp_path_factory.mktemp("gpuconv-cache")
    old = os.environ.get("GPUCONV_CACHE_DIR")
    os.environ["GPUCONV_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("GPUCONV_CACHE_DIR", None)
    else:
        os.environ["GPUCONV_CACHE_DIR"] = old


def source(name: str) -> str:
    return (KERNELS / name).read_text()


def module(name: str, options=(), name_expressions=()) -> cpu_rt.RawModule:
    return cpu_rt.RawModule(code=source(name), options=tuple(options), name_expressions=tuple(name_expressions))


def run_python(code: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (repo on sys.path); used where a crash or a preload is expected."""
    e = dict(os.environ if env is None else env)
    e["PYTHONPATH"] = str(REPO) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=timeout)
