"""`python -m pipelines.local` as `make run` calls it: several pipelines side by side, each in its
own process, sharing one fresh SQLite MLflow store."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from components.core import model_card
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec
from pipelines.local import Progress, project_list
from tests.support import data
from tests.support.browser import rendered_dom

REPO = Path(__file__).resolve().parents[2]
SIDE_BY_SIDE = ("telecom", "bankchurn")


def test_project_list_accepts_all_or_names_and_names_what_it_rejects() -> None:
    assert project_list("all") == ["bankchurn", "carvision", "telecom"]
    assert project_list("telecom, bankchurn,telecom") == ["telecom", "bankchurn"]
    with pytest.raises(Exception, match="unknown project churn"):
        project_list("churn,telecom")


def test_a_log_handler_left_on_the_progress_stream_writes_nothing_once_its_log_is_closed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kfp.local's log handler keeps the stream it found during a run: records logged after the
    run (an HTTP client's, by a benchmark that goes on) must not fail on the closed log file."""
    import io
    import logging

    terminal = io.StringIO()
    logger = logging.getLogger("tests.progress")
    logger.propagate = False
    with (tmp_path / "run.log").open("w") as log:
        handler = logging.StreamHandler(Progress(terminal, log, live=False))
        logger.addHandler(handler)
        logger.warning("Executing task 'train'")
    try:
        logger.warning("Task 'train' finished with status SUCCESS")
    finally:
        logger.removeHandler(handler)
    assert "Logging error" not in capsys.readouterr().err
    assert (tmp_path / "run.log").read_text() == "Executing task 'train'\n"
    assert "train" in terminal.getvalue() and "SUCCESS" in terminal.getvalue()


BANKCHURN_ROWS = 3000
"""Rows of the real Churn.csv the test trains on: CatBoost on all 10,000 would make this the
suite's longest test, and what is checked here does not need them."""


def real_data_dir(tmp_path: Path) -> Path:
    """The real telecom file, and the first BANKCHURN_ROWS rows of the real bankchurn file."""
    folder = tmp_path / "data"
    folder.mkdir()
    telecom, bankchurn = PROJECTS["telecom"], PROJECTS["bankchurn"]
    (folder / telecom.data_file).symlink_to(data.real_file(telecom))  # type: ignore[arg-type]
    rows = pd.read_csv(data.real_file(bankchurn)).head(BANKCHURN_ROWS)  # type: ignore[arg-type]
    rows.to_csv(folder / bankchurn.data_file, index=False)
    return folder


def test_two_pipelines_side_by_side_each_register_a_champion(tmp_path: Path) -> None:
    """On the real files when they are here (telecom's champion must then predict real rows
    well), else on the synthetic defaults."""
    real = all(data.real_file(PROJECTS[p]) is not None for p in SIDE_BY_SIDE)
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "JOBS")}
    env["MLOPS_STATE_DIR"] = str(state)
    timings = tmp_path / "timings.json"
    command = [
        *(sys.executable, "-m", "pipelines.local", "--project", ",".join(SIDE_BY_SIDE)),
        *("--jobs", "2", "--trials", "1", "--explained-rows", "20", "--no-cache"),
        *("--timings", str(timings)),
        *(("--data-dir", str(real_data_dir(tmp_path))) if real else ()),
    ]
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "2 pipelines at a time" in done.stdout
    for project in SIDE_BY_SIDE:
        # Interleaved step lines still say which project they belong to.
        assert re.search(rf"^ +{project} +register +[\d.]+ s  SUCCESS$", done.stdout, re.M)
        assert f"== {project}: OK" in done.stdout
    uri = f"sqlite:///{state / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(uri)
    for project in SIDE_BY_SIDE:
        assert str(client.get_model_version_by_alias(project, "champion").version) == "1"
    recorded = json.loads(timings.read_text())
    assert [(r["project"], r["ok"]) for r in recorded] == [(p, True) for p in SIDE_BY_SIDE]
    assert {"train", "register"} <= set(recorded[0]["steps"])
    for project in SIDE_BY_SIDE:
        assert_reports_render_with_provenance(PROJECTS[project], done.stdout, real)
    if real:
        spec = PROJECTS["telecom"]
        champion = client.get_model_version_by_alias("telecom", "champion")
        assert client.get_run(champion.run_id).data.params["rows"] == "3214"
        mlflow.set_tracking_uri(uri)
        model = mlflow.sklearn.load_model("models:/telecom@champion")
        rows = pd.read_csv(data.real_file(spec))
        accuracy = (model.predict(rows.drop(columns=[spec.target])) == rows[spec.target]).mean()
        assert accuracy > 0.7


def printed_paths(stdout: str, project: str) -> dict[str, list[Path]]:
    """The report and card paths `make run` printed in a project's summary."""
    block = stdout.split(f"== {project}: OK", 1)[1].split("\n== ", 1)[0]
    found: dict[str, list[Path]] = {}
    label = ""
    for line in block.splitlines():
        match = re.match(r"^   (\w+)? +(/\S+)$", line)
        if match:
            label = match.group(1) or label
            found.setdefault(label, []).append(Path(match.group(2)))
    return found


def assert_reports_render_with_provenance(spec: ProjectSpec, stdout: str, real: bool) -> None:
    """Every printed report opens in Chromium as a rendered page with its title, badge and
    provenance; the card has every section, with intervals."""
    paths = printed_paths(stdout, spec.name)
    assert len(paths["reports"]) == 3
    for path in paths["reports"]:
        assert path.suffix == ".html", path
        dom = rendered_dom(path)
        assert re.search(rf"<title>{re.escape(spec.title)} \({spec.name}\): ", dom), path
        assert "<pre" not in dom[:2000], f"{path} was shown as text"
        header = dom.split("data-provenance", 1)[1].split("</header>", 1)[0]
        assert ("REAL DATA" if real else "SYNTHETIC DATA") in header
        for field in ("data", "model", "model-version", "run", "created", "code"):
            assert f'data-field="{field}"' in header, (path, field)
        assert f"{spec.name}-training" in header
    [card] = paths["card"]
    assert card.suffix == ".md"
    text = card.read_text()
    headings = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert headings == list(model_card.SECTIONS)
    assert re.search(rf"\| {spec.primary_metric} \| [\d.]+ \| [\d.]+ to [\d.]+ \|", text)
