"""`python -m pipelines.local` as `make run` calls it: several pipelines side by side, each in its
own process, sharing one fresh SQLite MLflow store."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipelines.local import project_list

REPO = Path(__file__).resolve().parents[2]


def test_project_list_accepts_all_or_names_and_names_what_it_rejects() -> None:
    assert project_list("all") == ["bankchurn", "carvision", "telecom"]
    assert project_list("telecom, bankchurn,telecom") == ["telecom", "bankchurn"]
    with pytest.raises(Exception, match="unknown project churn"):
        project_list("churn,telecom")


def test_two_pipelines_side_by_side_each_register_a_champion(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "JOBS")}
    env["MLOPS_STATE_DIR"] = str(state)
    timings = tmp_path / "timings.json"
    command = [
        *(sys.executable, "-m", "pipelines.local", "--project", "bankchurn,carvision"),
        *("--jobs", "2", "--trials", "1", "--no-cache", "--timings", str(timings)),
    ]
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "2 pipelines at a time" in done.stdout
    for project in ("bankchurn", "carvision"):
        # Interleaved step lines still say which project they belong to.
        assert re.search(rf"^ +{project} +register +[\d.]+ s  SUCCESS$", done.stdout, re.M)
        assert f"== {project}: OK" in done.stdout
    client = MlflowClient(f"sqlite:///{state / 'mlflow' / 'mlflow.db'}")
    for project in ("bankchurn", "carvision"):
        assert str(client.get_model_version_by_alias(project, "champion").version) == "1"
    recorded = json.loads(timings.read_text())
    assert [(r["project"], r["ok"]) for r in recorded] == [("bankchurn", True), ("carvision", True)]
    assert {"train", "register"} <= set(recorded[0]["steps"])
