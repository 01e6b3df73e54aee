"""One real batch scoring run through `make score` (the CLI drives the project's compiled graph
through kfp.local): a champion registered in a real MLflow SQLite store, a small file with a few
bad rows read from `s3://` and the outputs written back there (a real S3 API on 127.0.0.1,
tests/support/object_store.py), two shards so the ParallelFor fans out, and the outputs checked
against the champion itself. The fourth-project test runs `make score` on local paths."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from components.core import compiled, explain, ingest
from components.core.projects import PROJECTS
from components.core.train import train
from tests.conftest import quick_spec
from tests.support.data import REPO_ROOT
from tests.support.models import register_as_champion
from tests.support.object_store import run_object_store
from tests.support.servers import server_env

SPEC = PROJECTS["bankchurn"]
ROWS, SHARD_ROWS = 600, 300
BAD = {3: ("Age", -4), 5: ("Geography", "Mars"), 7: ("Balance", "lots")}
pytestmark = pytest.mark.slow


def register_champion(root: Path, uri: str) -> str:
    """A bankchurn champion registered as the training pipeline registers one: its reference,
    its input example, its model file's digest tag. One quick candidate: the run is about the
    plumbing."""
    source = root / "Churn.csv"
    SPEC.make_synthetic(1000, 11).to_csv(source, index=False)
    parts, info = ingest.ingest(SPEC, str(source), 7, 0.25)
    forest = dataclasses.replace(SPEC.candidate("random_forest"), search_space={})
    trained = train(dataclasses.replace(quick_spec(SPEC), candidates=(forest,)), parts.train, 7, 1)
    importance = explain.input_importance(SPEC, trained.model, parts.test, repeats=1)
    return register_as_champion(SPEC, trained, parts, info, uri, "batch-champion", 7, importance)


def batch(path: Path) -> pd.DataFrame:
    """Customers to score, the target dropped, three of them bad."""
    frame = SPEC.make_synthetic(ROWS, 5).drop(columns=[SPEC.target])
    frame = frame.astype({"Age": object, "Balance": object})
    for row, (column, value) in BAD.items():
        frame.loc[row, column] = value
    frame.to_csv(path, index=False)
    return frame


def test_make_score_scores_the_valid_rows_in_input_order_with_the_champion(
    tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path_factory.mktemp("batch")
    uri = mlflow_uri
    mlflow.set_tracking_uri(uri)
    version = register_champion(root, uri)
    frame = batch(root / "customers.csv")
    store = run_object_store(root)
    try:
        store.create_bucket("batches")
        store.use(monkeypatch)
        import s3fs

        s3 = s3fs.S3FileSystem()
        s3.put_file(str(root / "customers.csv"), "batches/in/customers.csv")
        done = _score(root / "state", uri, store.env, "s3://batches/out/scored.csv")
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        assert s3.find("batches/out") == [
            "batches/out/scored.csv",
            "batches/out/scored.rejected.csv",
        ]
        printed = done.stdout
        assert "output    s3://batches/out/scored.csv" in printed, printed
        scored = pd.read_csv("s3://batches/out/scored.csv")
        rejected = pd.read_csv("s3://batches/out/scored.rejected.csv")
        # an output that cannot be written: the error named, the run's own files kept
        lost = _score(root / "state-lost", uri, store.env, "s3://no-such-bucket/scored.csv")
        assert lost.returncode != 0 and "Error 1" in lost.stderr  # the CLI exited 1
        message = re.search(r"could not write s3://no-such-bucket/scored\.csv: (.*)", lost.stderr)
        assert message and "bucket does not exist" in message[1], lost.stderr[-3000:]
        kept = re.search(r"scored rows are kept in (\S+)", lost.stderr)
        assert kept and len(pd.read_csv(kept[1])) == ROWS - len(BAD), lost.stderr
    finally:
        store.stop()
    _check(root, version, frame, scored, rejected, printed)


def _score(
    state: Path, uri: str, store_env: dict[str, str], out: str
) -> subprocess.CompletedProcess[str]:
    env = server_env(store_env) | {"MLFLOW_TRACKING_URI": uri, "MLOPS_STATE_DIR": str(state)}
    return subprocess.run(
        [
            *("make", "--no-print-directory", "score", f"PROJECT={SPEC.name}"),
            *("DATA=s3://batches/in/customers.csv", f"OUT={out}", f"SHARD_ROWS={SHARD_ROWS}"),
            # The drift check reads the reference and stops short of Evidently's 7-s import, and
            # the shards skip SHAP's 5 s: tests/unit/test_scoring.py runs both.
            f"DRIFT_MIN_ROWS={ROWS + 1}",
            "REASONS=0",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _check(
    root: Path,
    version: str,
    frame: pd.DataFrame,
    scored: pd.DataFrame,
    rejected: pd.DataFrame,
    printed: str,
) -> None:
    # two shards, each scored by its own task of the ParallelFor
    shards = sorted((root / "state" / "kfp").glob("*/for-loop-*-iteration-*/score/scored.parquet"))
    assert len(shards) == 2 and "shards    2;" in printed, printed
    assert [len(pd.read_parquet(shard)) for shard in shards] == [300, ROWS - len(BAD) - 300]

    good = [i for i in range(ROWS) if i not in BAD]
    assert scored["row_number"].tolist() == [i + 1 for i in good]
    assert scored["CustomerId"].tolist() == frame["CustomerId"].iloc[good].tolist()
    assert set(scored["model_version"].astype(str)) == {version}
    champion = mlflow.sklearn.load_model(f"models:/{SPEC.name}@champion")
    clean = pd.read_csv(root / "customers.csv").iloc[good]
    inputs = clean.astype({"Age": int, "Balance": float})[SPEC.input_columns]
    expected = champion.predict_proba(inputs)[:, 1]
    # scored through the compiled graph: within its tolerance of the sklearn pipeline
    np.testing.assert_allclose(
        scored["churn_probability"], expected, rtol=0, atol=compiled.PROBABILITY_TOLERANCE
    )
    assert scored["churn"].tolist() == champion.predict(inputs).tolist()
    assert sorted(scored["risk_rank"]) == list(range(1, len(good) + 1))
    assert "reason_1" not in scored.columns  # the run's with_reasons reached every shard

    assert rejected["row_number"].tolist() == [4, 6, 8]
    assert rejected["rule"].tolist() == ["minimum", "category", "type"]
    assert rejected["Surname"].tolist() == frame["Surname"].iloc[[3, 5, 7]].tolist()

    report = Path(re.search(r"summary\s+(\S+\.html)", printed)[1])  # type: ignore[index]
    page = report.read_text()
    assert "data-provenance" in page and f'data-field="model-version">{version}<' in page
    assert "597 of 600 rows scored" in page and "Rejected rows by rule" in page
    assert f"not enough data: 597 rows, at least {ROWS + 1} needed" in page
    assert os.path.isfile(re.search(r"drift\s+(\S+\.html)", printed)[1])  # type: ignore[index]
