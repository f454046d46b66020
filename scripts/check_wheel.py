"""Check a built wheel: every config yaml of conf/ inside as cnn_zoo/conf, the report templates, the console
scripts, the licence, and nothing of the checkout's scripts/ (the benchmark helpers live there, outside the package).

`python scripts/check_wheel.py dist/cnn_zoo-*.whl` (CI runs it); prints the wheel's size and contents summary.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = (
    "cnn-zoo-train",
    "cnn-zoo-evaluate",
    "cnn-zoo-predict",
    "cnn-zoo-report",
    "cnn-zoo-prepare",
    "cnn-zoo-export",
    "cnn-zoo-explain",
)
NOT_SHIPPED = ("cnn_zoo/benchmark.py", "scripts/", "bench_common.py")  # the benchmark helpers: scripts/bench_common.py


def problems(wheel: Path) -> list[str]:
    names = zipfile.ZipFile(wheel).namelist()
    expected = {f"cnn_zoo/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    # the report pages' templates (cnn_zoo.reporting.run_page reads them beside the module)
    templates = ROOT / "src" / "cnn_zoo" / "reporting" / "templates"
    expected |= {f"cnn_zoo/reporting/templates/{p.name}" for p in templates.iterdir()}
    found: list[str] = [f"missing {name}" for name in sorted(expected - set(names))]
    entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
    text = zipfile.ZipFile(wheel).read(entry_points).decode() if entry_points else ""
    found += [f"no console script {script}" for script in SCRIPTS if f"{script} =" not in text]
    found += [f"ships {name} (only scripts/ use it)" for name in names if name.startswith(NOT_SHIPPED)]
    if not any(n.endswith("licenses/LICENSE") for n in names):
        found.append("no LICENSE")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("wheel", type=Path)
    wheel = parser.parse_args().wheel
    names = zipfile.ZipFile(wheel).namelist()
    yaml = sum(n.endswith(".yaml") for n in names)
    python = sum(n.endswith(".py") for n in names)
    print(f"{wheel.name}: {wheel.stat().st_size / 1024:.0f} KiB, {len(names)} files ({python} .py, {yaml} .yaml)")
    found = problems(wheel)
    for problem in found:
        print(f"error: {wheel.name}: {problem}", file=sys.stderr)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
