"""The README shows the two commands CI relies on, and its results tables match the JSON."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_shows_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "gpuconv check" in text and "python -m pytest -n 2" in text
    assert "python -m pytest -n 2" in (ROOT / ".ci" / "run").read_text()


def test_results_tables_are_generated_from_the_json():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "update_readme.py"), "--check"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
