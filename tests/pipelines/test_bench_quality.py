"""The quality benchmark's table on small synthetic data: what it claims follows from its figures."""

import json
import re
from pathlib import Path

import pytest

from benchmarks import pipelines as bench
from components.core.projects import PROJECTS
from tests.conftest import quick_spec


def test_quality_table_rows_follow_from_the_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = quick_spec(PROJECTS["telecom"])
    spec.make_synthetic(800, 3).to_csv(tmp_path / spec.data_file, index=False)
    monkeypatch.setattr(bench, "PROJECTS", {"telecom": spec, "bankchurn": PROJECTS["bankchurn"]})
    monkeypatch.setattr(bench, "OUT_DIR", tmp_path)

    table = bench.bench_quality(tmp_path, ["telecom", "bankchurn"])

    detail = json.loads((tmp_path / "quality.json").read_text())[0]
    assert detail["rows"] == 800 and detail["test_rows"] == 160
    rows = {
        cells[1]: cells
        for line in table.splitlines()
        if line.startswith("| telecom |")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
        if len(cells) == 8  # the main table, not the repeated-rows one
    }
    assert set(rows) == {"accuracy", "roc_auc", "f1"}
    for metric, cells in rows.items():
        test = float(cells[3].strip("*"))
        assert test == pytest.approx(detail["test_metrics"][metric], abs=5e-5)
        low, high = (float(v) for v in re.findall(r"[\d.]+", cells[4]))
        assert low <= test <= high
        assert cells[-1] == ("yes" if test >= spec.targets[metric] else "NO")
    # Every candidate appears among those compared, the chosen one with the best CV figure.
    compared = {c["candidate"]: c for c in detail["candidates"]}
    assert set(compared) == {c.name for c in spec.candidates}
    assert max(compared.values(), key=lambda c: c["accuracy"])["candidate"] == detail["model"]
    for name in compared:
        assert f"| {name} | 1 | " in table
    # A project whose file is absent is listed as skipped, not silently left out.
    assert "| bankchurn | skipped:" in table


def test_money_is_shown_in_whole_dollars_and_a_near_miss_is_not_rounded_up() -> None:
    assert bench.figure("rmse", 2852.0877) == "2,852"
    assert bench.figure("r2", 0.89071) == "0.8907"
    assert bench.shown("roc_auc", 0.869965, 0.87, met=False) == "0.869965"
    assert bench.shown("rmse", 2900.4, 2900, met=False) == "2,900.40"


def test_the_card_check_finds_every_readme_figure_and_names_a_difference() -> None:
    from benchmarks import cards

    readme = (
        "## Quality on the real data\n\n| project | metric | CV mean ± std | test | test 95% "
        "interval | reference portfolio | target |\n|---|---|---|---|---|---|---|\n"
        "| carvision | RMSE (USD) | 2,948 ± 24 | **2,852** | 2,768 to 2,936 | 4,794 | 2,900 |\n"
        "| carvision | R2 | 0.8826 ± 0.0016 | **0.8907** | 0.8839 to 0.8972 | 0.766 | 0.89 |\n"
        "\n## Layout\n"
    )
    card = (
        "## Metrics\n| metric | test | 95% interval | CV mean ± std | gate | meaning |\n"
        "|---|---|---|---|---|---|\n"
        "| rmse | 2,852 | 2,768 to 2,936 | 2,948 ± 24 |  | root mean squared error |\n"
        "| r2 | 0.8907 | 0.8840 to 0.8972 | 0.8826 ± 0.0016 | gate >= 0.7 passed | share |\n"
        "\n## Evaluation data\n"
    )
    found = cards.compare(readme, {"carvision": card})
    assert [(what, equal) for _, what, _, _, equal in found] == [
        ("rmse test", True),
        ("rmse interval", True),
        ("rmse cv", True),
        ("r2 test", True),
        ("r2 interval", False),
        ("r2 cv", True),
    ]
    # A card in an earlier format (no Metrics section) is named as such, not a crash.
    older = cards.compare(readme, {"carvision": "# Model card: carvision\n\n## Figures\n"})
    assert {mine for *_, mine, _ in older} == {"no Metrics section in the card"}
    assert not any(equal for *_, equal in older)
