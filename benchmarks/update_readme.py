"""Regenerate the README's results tables from the JSON files in benchmarks/results/.

Tables are never typed by hand: each lives between ``<!-- results:NAME -->`` and
``<!-- /results:NAME -->`` markers in README.md and is rebuilt from its JSON. ``gpu``: per
dtype, the newest ``gpuconv bench`` result in benchmarks/results/ (gpuconv.bench:
gpu_results_markdown), or a line saying there is none; ``gpuconv bench`` runs this script
after writing a result there.

    python benchmarks/update_readme.py          # rewrite README.md
    python benchmarks/update_readme.py --check  # exit 1 if README.md is out of date
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # gpuconv from this checkout

from gpuconv.bench import gpu_results_markdown  # noqa: E402


def reference_table(data: dict) -> str:
    """pytest-benchmark JSON of test_reference_bench.py -> a Markdown table."""
    cpu = data["machine_info"].get("cpu", {})
    lines = [f"Measured {data['datetime'][:10]} on {cpu.get('brand_raw', 'unknown CPU')} "
             f"({cpu.get('count', '?')} cores), Python {data['machine_info']['python_version']}, "
             f"float32, median of {data['benchmarks'][0]['stats']['rounds']} rounds:",
             "",
             "| op | median ms | GFLOP/s |",
             "|---|---:|---:|"]
    for bench in sorted(data["benchmarks"], key=lambda b: b["param"]):
        lines.append(f"| {bench['param']} | {bench['stats']['median'] * 1e3:.1f} | "
                     f"{bench['extra_info']['gflops']:.1f} |")
    return "\n".join(lines)


def cpu_runtime_table(data: dict) -> str:
    """pytest-benchmark JSON of test_cpu_runtime_bench.py -> a Markdown table."""
    cpu = data["machine_info"].get("cpu", {})
    lines = [f"Measured {data['datetime'][:10]} on {cpu.get('brand_raw', 'unknown CPU')} "
             f"({cpu.get('count', '?')} cores): one launch from Python, 16x16 tiles, "
             "256 threads per block:",
             "",
             "| tiled matmul | blocks | median ms | min ms | rounds |",
             "|---|---:|---:|---:|---:|"]
    for bench in sorted(data["benchmarks"], key=lambda b: b["params"]["n"]):
        n, stats = bench["params"]["n"], bench["stats"]
        lines.append(f"| {n}x{n}x{n} | {bench['extra_info']['blocks']} | "
                     f"{stats['median'] * 1e3:.2f} | {stats['min'] * 1e3:.2f} | {stats['rounds']} |")
    return "\n".join(lines)


def separable_table(data: dict) -> str:
    """pytest-benchmark JSON of test_separable_bench.py -> one row per (device, width)."""
    cpu = data["machine_info"].get("cpu", {})
    runs = {}
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        runs.setdefault((info["device"], info["width"]), {})[info["form"]] = (
            bench["stats"]["median"], info)
    lines = [f"Measured {data['datetime'][:10]} on {cpu.get('brand_raw', 'unknown CPU')} "
             f"({cpu.get('count', '?')} cores): N=1, C=K=4, 96x96, per-channel w x w filter, "
             "'same' padding, float32, median times:",
             "",
             "| path | w | full 2-D multiply-adds | separable multiply-adds | ratio | full ms | "
             "separable ms | speed-up |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (device, width), forms in sorted(runs.items()):
        if set(forms) != {"full", "separable"}:
            continue
        (t_full, info), (t_sep, _) = forms["full"], forms["separable"]
        lines.append(f"| {device} | {width} | {info['macs_full']:,} | {info['macs_separable']:,} | "
                     f"{info['mac_ratio_full_to_separable']:.1f} | {t_full * 1e3:.2f} | "
                     f"{t_sep * 1e3:.2f} | {t_full / t_sep:.1f}x |")
    return "\n".join(lines)


TABLES = {"separable": ("separable_cpu.json", separable_table),
          "reference": ("reference_cpu.json", reference_table),
          "cpu_runtime": ("cpu_runtime_matmul.json", cpu_runtime_table)}


def _put(readme: str, name: str, table: str) -> str:
    pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
    return pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), readme)


def render(readme: str, results: Path = RESULTS) -> str:
    for name, (file, make) in TABLES.items():
        path = results / file
        if path.is_file():
            readme = _put(readme, name, make(json.loads(path.read_text())))
    return _put(readme, "gpu", gpu_results_markdown(results))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    readme_path = ROOT / "README.md"
    old = readme_path.read_text()
    new = render(old)
    if "--check" in argv:
        if new != old:
            print("README.md results tables are out of date: run python benchmarks/update_readme.py")
            return 1
        return 0
    readme_path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
