"""A fourth project, defined here and nowhere else, runs the whole lifecycle with the product's
own commands: `make run` through kfp.local into the registry, `make serve` answering the v1 and
v2 protocols over HTTP, `make traffic` into the inference log, `make monitor` over that log, and
`make score` over a batch file. Its spec is registered by `MLOPS_PROJECTS` alone: no product
file names it. Where telecom's real file is here, `make run` trains telecom beside it, two
pipelines at a time, and every report of both opens in Chromium with its provenance.

The data is scikit-learn's copy of the Wisconsin diagnostic breast cancer set (569 tumours, ten
of the cell-nucleus measurements); the model says whether a tumour is malignant.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from components.core.derived import Columns, DerivedFeatures
from components.core.spec import Candidate, Column, Gate, ProjectSpec
from components.core.tasks import Binary
from tests.support.data import REPO_ROOT

MEASURES = (
    "radius",
    "texture",
    "perimeter",
    "area",
    "smoothness",
    "compactness",
    "concavity",
    "concave_points",
    "symmetry",
    "fractal_dimension",
)
"""The means over a tumour's nuclei (scikit-learn's columns "mean radius" ... "mean fractal
dimension"), in that order."""


class NucleusFeatures(DerivedFeatures):
    input_columns: ClassVar[list[str]] = list(MEASURES)
    derived_columns: ClassVar[list[str]] = ["compactness_per_radius"]

    def select(self, columns: Mapping[str, np.ndarray]) -> Columns:
        return {name: np.asarray(columns[name], dtype=float) for name in MEASURES}

    def derive(self, columns: Columns) -> Columns:
        # clipped: an explainer may set a field to 0
        return {
            "compactness_per_radius": columns["compactness"] / np.clip(columns["radius"], 1.0, None)
        }


def load_tumours() -> pd.DataFrame:
    """The real rows, with a sample id and the target as 1 for malignant."""
    from sklearn.datasets import load_breast_cancer

    found = load_breast_cancer(as_frame=True).frame
    frame = found[[f"mean {m.replace('_', ' ')}" for m in MEASURES]].set_axis(
        list(MEASURES), axis=1
    )
    frame.insert(0, "sample_id", [f"T{i:04d}" for i in range(len(frame))])
    frame["malignant"] = 1 - found["target"].to_numpy()
    return frame


def make_synthetic(rows: int, seed: int) -> pd.DataFrame:
    """SYNTHETIC tumours: each measure drawn around the real class means."""
    real = load_tumours()
    rng = np.random.default_rng(seed)
    malignant = (rng.random(rows) < real["malignant"].mean()).astype(int)
    columns: dict[str, object] = {"sample_id": [f"S{i:05d}" for i in range(rows)]}
    for name in MEASURES:
        by_class = real.groupby("malignant")[name]
        mean, std = by_class.mean().to_numpy(), by_class.std().to_numpy()
        columns[name] = np.abs(rng.normal(mean[malignant], std[malignant]))
    columns["malignant"] = malignant
    return pd.DataFrame(columns)


SPEC = ProjectSpec(
    name="tumours",
    title="Breast tumour diagnosis",
    task=Binary("malignant_probability", "diagnosis", labels=("benign", "malignant")),
    target="malignant",
    columns=tuple(Column(name, "float", 0, 10_000) for name in MEASURES),
    ignored_columns=("sample_id",),
    identifier_columns=("sample_id",),
    make_features=NucleusFeatures,
    candidates=(
        Candidate(
            "logistic_regression",
            lambda seed: LogisticRegression(max_iter=2000),
            preprocessing="linear",
            search_space={"model__C": [0.1, 1.0]},
        ),
    ),
    primary_metric="roc_auc",
    gates=(Gate("roc_auc", 0.9),),
    make_synthetic=make_synthetic,
    synthetic_rows=600,
    data_file="tumours.csv",
    search_trials=1,
    explained_rows=20,
)
REGISTERED = f"{__name__}:SPEC"
BESIDE = "telecom"
"""Trained side by side with the fourth project when its real file is here (its first
BESIDE_ROWS rows): `make run` runs two pipelines at a time, each in its own process."""
BESIDE_ROWS = 800
pytestmark = pytest.mark.slow


def make(target: str, env: dict[str, str], *args: str, timeout: float = 600) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", target, f"PROJECT={SPEC.name}", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"make {target}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def test_a_project_defined_only_here_runs_the_whole_lifecycle(tmp_path: Path) -> None:
    # Imported here: every process that loads the registry imports this module for its spec.
    import httpx
    import mlflow

    from components.core import inference_log, lineage
    from components.core.projects import get_spec
    from tests.pipelines.test_local_cli import assert_reports_render_with_provenance
    from tests.support.data import real_file
    from tests.support.servers import free_port, start

    tumours = load_tumours()
    data = tmp_path / SPEC.data_file
    tumours.to_csv(data, index=False)
    state, log_root = tmp_path / "state", tmp_path / "inference"
    uri = f"sqlite:///{state / 'mlflow' / 'mlflow.db'}"
    env = {
        **os.environ,
        "MLOPS_PROJECTS": REGISTERED,
        "MLOPS_STATE_DIR": str(state),
        "MLFLOW_TRACKING_URI": uri,
        "MLOPS_INFERENCE_LOG": str(log_root),
        "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH")))),
    }

    # 1. Training through kfp.local registers a champion that passed the gate; beside it, on
    # its real rows, telecom's pipeline in a process of its own.
    beside = real_file(get_spec(BESIDE))
    projects = [SPEC.name, *([BESIDE] if beside else [])]
    specs = {SPEC.name: SPEC, BESIDE: get_spec(BESIDE)}
    if beside:
        rows = pd.read_csv(beside).head(BESIDE_ROWS)
        rows.to_csv(tmp_path / get_spec(BESIDE).data_file, index=False)
    ran = make("run", env, f"PROJECT={','.join(projects)}", f"DATA_DIR={tmp_path}")
    for project in projects:
        assert f"== {project}: OK" in ran
        if beside:  # interleaved step lines still say which project they belong to
            assert re.search(rf"^ +{project} +register +[\d.]+ s  SUCCESS$", ran, re.M), ran
        assert_reports_render_with_provenance(specs[project], ran, real=True)
    assert ("2 pipelines at a time" in ran) == bool(beside)

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    champion = client.get_model_version_by_alias(SPEC.name, "champion")
    assert str(champion.version) == "1"
    figures = client.get_run(champion.run_id).data.metrics
    assert figures["test_roc_auc"] >= 0.9, figures
    if beside:
        other = client.get_model_version_by_alias(BESIDE, "champion")
        assert str(other.version) == "1"
        assert client.get_run(other.run_id).data.params["rows"] == str(BESIDE_ROWS)
        telecom = get_spec(BESIDE)
        every = pd.read_csv(beside)
        predicted = mlflow.sklearn.load_model(f"models:/{BESIDE}@champion").predict(
            every[telecom.input_columns]
        )
        assert (predicted == every[telecom.target]).mean() > 0.7

    # 2. `make serve` answers both protocols with the project's own fields.
    port = free_port()
    server = start(
        "tumours",
        [
            *("make", "--no-print-directory", "serve", f"PROJECT={SPEC.name}"),
            *(f"MODEL=models:/{SPEC.name}@champion", f"PORT={port}"),
            *(f"INFERENCE_LOG={log_root}",),
        ],
        tmp_path / "serve.log",
        port,
        env={k: env[k] for k in ("MLOPS_PROJECTS", "MLFLOW_TRACKING_URI", "MLOPS_STATE_DIR")},
        group=True,
    )
    try:
        server.wait_ready(timeout=300.0)
        rows = tumours.head(5)
        instances = json.loads(rows[SPEC.input_columns].to_json(orient="records"))
        v1 = httpx.post(
            f"{server.url}/v1/models/{SPEC.name}:predict",
            json={"instances": instances},
            timeout=30,
        )
        assert v1.status_code == 200, v1.text
        predictions = v1.json()["predictions"]
        assert [set(p) for p in predictions] == [{"malignant_probability", "diagnosis"}] * 5
        assert {p["diagnosis"] for p in predictions} <= {0, 1}
        model = mlflow.sklearn.load_model(f"models:/{SPEC.name}/1")
        expected = model.predict_proba(rows[SPEC.input_columns])[:, 1]
        served = [p["malignant_probability"] for p in predictions]
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)
        v2 = httpx.post(
            f"{server.url}/v2/models/{SPEC.name}/infer",
            json={
                "inputs": [
                    {"name": c, "shape": [5], "datatype": "FP64", "data": rows[c].tolist()}
                    for c in SPEC.input_columns
                ]
            },
            timeout=30,
        )
        assert v2.status_code == 200, v2.text
        outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
        np.testing.assert_allclose(outputs["malignant_probability"], served, rtol=0, atol=1e-12)

        # 3. Labelled traffic lands in the inference log; monitoring reads it against the
        # champion's reference and measures live quality on the labelled rows.
        labels = tmp_path / "labels.csv"
        since = lineage.utc_now()
        make(
            "traffic",
            env,
            f"PORT={port}",
            f"DATA={data}",
            "ROWS=300",
            "BATCH=20",
            f"LABELS={labels}",
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(inference_log.read_window(str(log_root), SPEC.name, since)) >= 300:
                break
            time.sleep(0.5)
    finally:
        server.stop()
    make("monitor", env, "HOURS=1", "RETRAIN=0", f"MONITOR_LABELS={labels}")
    latest = json.loads((state / "monitor" / SPEC.name / "latest.json").read_text())
    # the ten rows asked for above are in the window too, without labels
    assert (latest["rows"], latest["labelled_rows"]) == (310, 300), latest
    assert latest["champion_version_before"] == "1"
    assert latest["live_metrics"]["roc_auc"] >= 0.9, latest["live_metrics"]
    # nothing staged beside the champion: the run's judge says so
    assert latest["rollout"]["action"] == "none", latest["rollout"]

    # 4. Batch scoring writes every row with its identifier, in input order, and the
    # champion's answers.
    out = tmp_path / "scored.csv"
    make("score", env, f"DATA={data}", f"OUT={out}")
    scored = pd.read_csv(out)
    assert scored["sample_id"].tolist() == tumours["sample_id"].tolist()
    np.testing.assert_allclose(
        scored["malignant_probability"],
        model.predict_proba(tumours[SPEC.input_columns])[:, 1],
        rtol=0,
        atol=1e-6,
    )
    assert set(scored["diagnosis"]) <= {0, 1}
