"""Checks that the champions' model cards carry the README's quality figures, digit for digit.

    python -m benchmarks.cards [--readme README.md]

Run after `make run DATA_DIR=../shared/data` (the store it reads is MLFLOW_TRACKING_URI, else
the local SQLite store): for every row of the README's quality table it finds the champion's
card row of the same metric and compares the test figure, its 95% interval and the CV figure.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import mlflow

from components.core.contracts import CHAMPION
from pipelines.local import default_tracking_uri

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

DISPLAY = {"rocauc": "roc_auc", "r2": "r2", "rmse": "rmse", "accuracy": "accuracy", "f1": "f1"}
"""README's metric names (letters and digits only, last word before a bracket) -> metric."""


def cells(line: str) -> list[str]:
    return [c.strip().strip("*") for c in line.strip().strip("|").split("|")]


def readme_rows(text: str) -> list[dict[str, str]]:
    """The quality table: project, metric, CV, test and interval as the README prints them."""
    section = text.split("## Quality on the real data", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        parts = cells(line)
        if len(parts) != 7 or parts[0] in ("project", "---"):
            continue
        word = parts[1].split("(")[0].split()[-1].lower()
        metric = DISPLAY.get(re.sub(r"[^a-z0-9]", "", word))
        if metric:
            rows.append(
                {
                    "project": parts[0],
                    "metric": metric,
                    "cv": parts[2],
                    "test": parts[3],
                    "interval": parts[4],
                }
            )
    return rows


def card_rows(card: str) -> dict[str, dict[str, str]] | None:
    """The card's metrics table by metric: test, interval and CV as the card prints them; None
    for a card without the section (one written in an earlier format)."""
    section = re.search(r"^## Metrics\n(.*?)(?=^## |\Z)", card, re.M | re.S)
    if section is None:
        return None
    found = {}
    for line in section[1].splitlines():
        parts = cells(line)
        if len(parts) == 6 and parts[0] not in ("metric", "---"):
            found[parts[0]] = {"test": parts[1], "interval": parts[2], "cv": parts[3]}
    return found


def compare(readme: str, cards: dict[str, str]) -> list[tuple[str, str, str, str, bool]]:
    """(project, metric, README, card, equal) for every figure of every README row."""
    tables = {project: card_rows(card) for project, card in cards.items()}
    out = []
    for row in readme_rows(readme):
        table = tables[row["project"]]
        card = (table or {}).get(row["metric"], {})
        absent = "missing" if table is not None else "no Metrics section in the card"
        for field in ("test", "interval", "cv"):
            mine = card.get(field, absent)
            out.append(
                (row["project"], f"{row['metric']} {field}", row[field], mine, row[field] == mine)
            )
    return out


def champion_card(project: str) -> str:
    version = mlflow.MlflowClient().get_model_version_by_alias(project, CHAMPION)
    return mlflow.artifacts.load_text(f"runs:/{version.run_id}/model_card/model_card.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readme", default="README.md")
    args = parser.parse_args(argv)
    mlflow.set_tracking_uri(default_tracking_uri())
    readme = Path(args.readme).read_text()
    projects = {row["project"] for row in readme_rows(readme)}
    results = compare(readme, {p: champion_card(p) for p in sorted(projects)})
    for project, what, theirs, mine, equal in results:
        print(f"{'ok ' if equal else 'DIFF'} {project:10} {what:18} README {theirs:22} card {mine}")
    differ = sum(not r[-1] for r in results)
    print(f"{len(results) - differ} of {len(results)} README figures equal the champions' cards")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
