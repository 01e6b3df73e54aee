"""Line and branch coverage per product package, from the JSON report that `make test` writes.

    python .ci/coverage_packages.py [REPORT]           the table
    python .ci/coverage_packages.py --check [REPORT]   the table, then fail under a package's floor

The figure checked is coverage's own total: covered lines and branches over all lines and
branches. Each floor sits just under what the whole suite measured when it was set; raise it when
coverage rises, and never lower it to make a change pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
REPORT = REPO_ROOT / ".state" / "coverage" / "coverage.json"
FLOORS = {
    "components": 89.0,
    "pipelines": 85.0,
    "serving": 91.5,
    "grafana": 79.5,
    "apps": 86.5,
}
"""Lowest combined (lines and branches) percentage each package may have."""


@dataclass
class Package:
    name: str
    statements: int = 0
    covered_lines: int = 0
    branches: int = 0
    covered_branches: int = 0

    @staticmethod
    def percent(part: int, whole: int) -> float:
        return 100.0 * part / whole if whole else 100.0

    @property
    def line_percent(self) -> float:
        return self.percent(self.covered_lines, self.statements)

    @property
    def branch_percent(self) -> float:
        return self.percent(self.covered_branches, self.branches)

    @property
    def combined_percent(self) -> float:
        return self.percent(
            self.covered_lines + self.covered_branches, self.statements + self.branches
        )


def packages(report: dict[str, Any]) -> dict[str, Package]:
    """The report's files summed by top-level package; files outside FLOORS are left out."""
    found = {name: Package(name) for name in FLOORS}
    for filename, entry in report["files"].items():
        path = Path(filename)
        if path.is_absolute():
            path = path.relative_to(REPO_ROOT)
        package = found.get(path.parts[0])
        if package is None:
            continue
        summary = entry["summary"]
        package.statements += summary["num_statements"]
        package.covered_lines += summary["covered_lines"]
        package.branches += summary.get("num_branches", 0)
        package.covered_branches += summary.get("covered_branches", 0)
    return found


def table(found: dict[str, Package]) -> str:
    lines = [
        f"{'package':<12}{'statements':>11}{'lines %':>9}{'branches':>10}{'branches %':>12}"
        f"{'combined %':>12}{'floor %':>9}"
    ]
    for package in found.values():
        lines.append(
            f"{package.name:<12}{package.statements:>11}{package.line_percent:>9.1f}"
            f"{package.branches:>10}{package.branch_percent:>12.1f}"
            f"{package.combined_percent:>12.1f}{FLOORS[package.name]:>9.1f}"
        )
    return "\n".join(lines)


def below_floor(found: dict[str, Package]) -> list[str]:
    """One line per package under its floor (or not measured at all)."""
    failures = []
    for package in found.values():
        floor = FLOORS[package.name]
        if package.statements == 0:
            failures.append(f"{package.name}: not measured (no file of it in the report)")
        elif round(package.combined_percent, 1) < floor:
            failures.append(
                f"{package.name}: coverage {package.combined_percent:.1f}% is under its floor "
                f"of {floor:.1f}% (lines and branches)"
            )
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("report", nargs="?", type=Path, default=REPORT)
    parser.add_argument("--check", action="store_true", help="fail under a package's floor")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"no coverage report at {args.report}: run `make test` first", file=sys.stderr)
        return 1 if args.check else 0
    found = packages(json.loads(args.report.read_text()))
    print(f"Coverage of the product packages ({args.report}):")
    print(table(found))
    if not args.check:
        return 0
    failures = below_floor(found)
    for failure in failures:
        print(f"coverage floor: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
