"""The wheel carries cuda/ and the package finds it when installed outside the source tree."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_cuda_sources_and_loads_them_when_installed(tmp_path):
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling (the test extra)")
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-w", str(wheels), str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("gpuconv-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    cu_files = sorted(p.name for p in (ROOT / "cuda").glob("*.cu*"))
    assert cu_files and all(f"gpuconv/cuda/{name}" in names for name in cu_files)
    assert "gpuconv/benchmarks/layers.py" in names  # gpuconv bench's layer lists
    assert "gpuconv/runtime/cuda_cpu.h" in names    # the CPU runtime's header

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                              "--target", site, str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    # numpy comes from this interpreter's site-packages, appended after the venv's own.
    numpy_dir = Path(__import__("numpy").__file__).parents[1]
    Path(site, "zz_numpy.pth").write_text(str(numpy_dir) + "\n")
    probe = ("import gpuconv, gpuconv.sources as s; "
             "print(gpuconv.__file__); print(s.cuda_dir()); "
             "print(len(s.source_text('conv2d_fprop.cu')))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                         cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    pkg_file, cuda_dir, length = run.stdout.split()
    assert Path(pkg_file).is_relative_to(venv) and Path(cuda_dir).is_relative_to(venv)
    assert int(length) > 100
    # the console script runs the main job from the installed package
    # the main job from the installed package: the kernels (and the CPU runtime's header)
    # come out of the wheel and run on the best runtime present
    env["GPUCONV_CACHE_DIR"] = str(tmp_path / "cache")
    check = subprocess.run([str(python), "-m", "gpuconv", "check", "--op", "conv2d", "--op",
                            "max_pool2d", "--dtype", "float32"], capture_output=True, text=True,
                           cwd=tmp_path, env=env)
    assert check.returncode == 0 and "0 failed" in check.stdout, check.stdout + check.stderr
    assert "runtime 'numpy'" not in check.stdout  # the kernels ran, not the reference


def test_source_tree_finds_cuda_sources():
    from gpuconv import sources
    assert (sources.cuda_dir() / "common.cuh").is_file()
    text = sources.source_text("conv2d_fprop.cu")
    assert '#include "common.cuh"' not in text  # inlined for NVRTC
