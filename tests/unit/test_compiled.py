"""The compiled serving path: every candidate's ONNX graph reproduces its sklearn pipeline, on
the test split and on the awkward rows a server meets; a graph is checked before it is used."""

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from components.core import compiled, loading, registry
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec
from tests.conftest import fitted_candidate, quick_model, small_split
from tests.support.models import save
from tests.unit.test_explain_drift import FAST

CANDIDATES = sorted(FAST)


def awkward_rows(spec: ProjectSpec) -> pd.DataFrame:
    """Test rows bent the ways requests bend them: blanks, unseen text, edges of the bands."""
    rows = small_split(spec).test[spec.input_columns].head(40).reset_index(drop=True).copy()
    if spec.name == "carvision":
        rows.loc[0, "model"] = "lada niva"  # a model and brand never seen
        rows.loc[1, ["model_year", "cylinders", "odometer"]] = np.nan
        rows.loc[2, "odometer"] = 12.0  # a placeholder reading
        rows.loc[3, "paint_color"] = None
        rows.loc[4, "model"] = "  FORD F-150 "
        rows.loc[5, "date_posted"] = "2019-01-31"
    elif spec.name == "bankchurn":
        rows.loc[0:5, "Age"] = [18, 30, 31, 60, 61, 92]
        rows.loc[6, "Balance"] = 0.0
        rows.loc[7, "Geography"] = "Germany"
    else:
        rows.loc[0, ["calls", "minutes", "messages", "mb_used"]] = 0.0
    return rows


@pytest.mark.parametrize(("project", "candidate"), CANDIDATES)
def test_each_candidate_compiles_to_a_graph_with_the_same_outputs(
    project: str, candidate: str
) -> None:
    spec, model = fitted_candidate(project, candidate)
    test = small_split(spec).test[spec.input_columns]
    found = compiled.compile_model(spec, model, test, "test split")
    if candidate == "median_baseline":  # nothing to speed up: the sklearn pipeline serves
        assert found.graph is None and "DummyRegressor" in found.reason
        return
    assert found.graph is not None, found.reason
    assert found.record is not None and found.record.agreement["rows"] == len(test)
    graph = compiled.CompiledModel(spec, model, found.graph)
    for rows in (awkward_rows(spec), test.head(1)):
        check = compiled.agreement(spec, model, graph, rows)
        assert check.matches, check.text()
        expected = spec.task.model_output(model, rows)
        tolerance = compiled.PRICE_TOLERANCE if not spec.task.probabilistic else 1e-6
        np.testing.assert_allclose(graph.output(rows), expected, rtol=0, atol=tolerance)


def test_a_graph_that_disagrees_is_not_kept_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    spec, model = fitted_candidate("telecom", "random_forest")
    test = small_split(spec).test[spec.input_columns]
    # float32 leaves differ from sklearn's float64 sums by about 1e-7: demand exact equality
    monkeypatch.setattr(compiled, "PROBABILITY_TOLERANCE", 0.0)
    found = compiled.compile_model(spec, model, test, "test split")
    assert found.graph is None and found.record is None
    assert found.reason.startswith("no exact graph: ")
    assert (
        "float32: max |difference|" in found.reason and f"over {len(test):,} rows" in found.reason
    )


def saved_with_graph(spec: ProjectSpec, model: object, path: Path) -> Path:
    split = small_split(spec)
    save(spec, model, split.train, path, reference_frame=split.test)
    found = compiled.compile_model(spec, model, split.test[spec.input_columns], "test split")
    compiled.write(found, path / compiled.FOLDER)
    return path


def test_a_directory_graph_is_checked_before_it_serves(tmp_path: Path) -> None:
    spec = PROJECTS["carvision"]
    model = quick_model(spec).model
    path = saved_with_graph(spec, model, tmp_path / "model")
    loaded = loading.load(spec, str(path))
    assert loaded.compiled is not None and "onnxruntime graph" in loaded.compiled_note
    rows = awkward_rows(spec)
    np.testing.assert_allclose(
        loaded.output(spec, rows),
        spec.task.model_output(model, rows),
        atol=compiled.PRICE_TOLERANCE,
    )

    graph_file = path / compiled.FOLDER / compiled.GRAPH_FILE
    graph_file.write_bytes(graph_file.read_bytes() + b"\x00")
    with pytest.raises(loading.ModelVerificationError, match=r"compiled/model\.onnx has sha256"):
        loading.load(spec, str(path))

    # a well-formed graph of another model: its digest is recorded, its answers are not the same
    _, other_model = fitted_candidate("carvision", "random_forest")
    found = compiled.compile_model(spec, other_model, small_split(spec).test, "test")
    assert found.graph is not None
    compiled.write(found, path / compiled.FOLDER)
    loaded = loading.load(spec, str(path))
    assert loaded.compiled is None and loaded.compiled_note.startswith("compiled graph not used")
    np.testing.assert_array_equal(loaded.output(spec, rows), spec.task.model_output(model, rows))


def test_a_pinned_graph_digest_is_checked_and_its_graph_required(tmp_path: Path) -> None:
    spec, model = fitted_candidate("telecom", "logistic_regression")
    path = saved_with_graph(spec, model, tmp_path / "model")
    graph_file = path / compiled.FOLDER / compiled.GRAPH_FILE
    digest = hashlib.sha256(graph_file.read_bytes()).hexdigest()
    pinned = loading.Verification(expected_compiled_sha256=digest)
    loaded = loading.load(spec, str(path), verification=pinned)
    assert loaded.compiled is not None and loaded.compiled.graph_sha256 == digest

    # graph and record replaced together: the record agrees with the graph, the pin does not
    _, other_model = fitted_candidate("telecom", "random_forest")
    found = compiled.compile_model(spec, other_model, small_split(spec).test, "test")
    assert found.graph is not None
    compiled.write(found, path / compiled.FOLDER)
    with pytest.raises(
        loading.ModelVerificationError, match=rf"expected {digest} \(--compiled_sha256\)"
    ):
        loading.load(spec, str(path), verification=pinned)

    # the graph removed: the pinned model is not the one served, though the pipeline could
    shutil.rmtree(path / compiled.FOLDER)
    with pytest.raises(loading.ModelVerificationError, match="the model has no compiled/model"):
        loading.load(spec, str(path), verification=pinned)
    assert loading.load(spec, str(path)).compiled is None  # unpinned: the pipeline serves


def test_registration_logs_the_verified_graph_with_its_digest(mlflow_uri: str) -> None:
    spec = dataclasses.replace(PROJECTS["bankchurn"], name="compiled-bankchurn")
    from tests.support.models import register_as_champion

    trained = quick_model(PROJECTS["bankchurn"])
    parts = small_split(PROJECTS["bankchurn"])
    from components.core.ingest import ingest

    _, info = ingest(spec, "synthetic:100", seed=7, test_size=0.25)
    mlflow.set_tracking_uri(mlflow_uri)
    version = register_as_champion(spec, trained, parts, info, mlflow_uri, "compiled-1", 7, {})
    tags = mlflow.MlflowClient().get_model_version(spec.name, version).tags
    assert tags[registry.COMPILED_TAG].startswith("onnxruntime, float64 inputs: max |difference|")
    loaded = loading.load(spec, f"models:/{spec.name}/{version}")
    assert loaded.compiled is not None
    assert loaded.compiled.graph_sha256 == tags[registry.COMPILED_DIGEST_TAG]
    record = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{spec.name}/{version}/{compiled.FOLDER}/{compiled.RECORD_FILE}"
            )
        ).read_text()
    )
    assert record["agreement"]["rows"] == len(parts.test)
    rows = parts.test[spec.input_columns]
    np.testing.assert_array_equal(
        loaded.output(spec, rows) >= loaded.threshold,
        spec.task.model_output(trained.model, rows) >= loaded.threshold,
    )


def test_a_champion_registered_before_graphs_gets_one_from_its_own_test_split(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components.core.ingest import ingest
    from pipelines.compile_champions import compile_champion
    from tests.support.models import register_as_champion

    spec = dataclasses.replace(PROJECTS["telecom"], name="compiled-later-telecom")
    parts, info = ingest(spec, "synthetic:1500", seed=7, test_size=0.25)
    trained = quick_model(PROJECTS["telecom"])
    mlflow.set_tracking_uri(mlflow_uri)
    with monkeypatch.context() as before_graphs:
        before_graphs.setattr(
            registry, "log_compiled", lambda *args: compiled.Compilation(None, None, "before")
        )
        version = register_as_champion(spec, trained, parts, info, mlflow_uri, "later-1", 7, {})
    assert loading.load(spec, f"models:/{spec.name}/{version}").compiled is None

    done = compile_champion(spec)
    assert done.startswith(f"{spec.name} v{version}: compiled: onnxruntime")
    assert f"over {len(parts.test):,} rows" in done
    loaded = loading.load(spec, f"models:/{spec.name}@champion")
    assert loaded.compiled is not None
    assert compile_champion(spec).endswith("already recorded: " + done.split(": ", 2)[2])


def test_an_unreadable_graph_record_refuses_the_model_naming_it(tmp_path: Path) -> None:
    spec, model = fitted_candidate("telecom", "logistic_regression")
    path = saved_with_graph(spec, model, tmp_path / "model")
    (path / compiled.FOLDER / compiled.RECORD_FILE).write_text("{not json")
    with pytest.raises(loading.ModelLoadError, match=r"compiled/compiled\.json is unreadable"):
        loading.load(spec, str(path))


def test_rows_at_the_threshold_get_the_pipelines_own_decision() -> None:
    """A forest's probabilities are vote shares (k/100); at a threshold of exactly 0.3 the graph's
    float32 sums land on either side of it, so those rows are answered by the pipeline."""
    from sklearn.model_selection import FixedThresholdClassifier

    from components.core.train import split_xy

    spec, fitted = fitted_candidate("bankchurn", "random_forest")
    X, y = split_xy(spec, small_split(spec).train)
    model = FixedThresholdClassifier(fitted.estimator_, threshold=0.3).fit(X, y)
    test = small_split(spec).test[spec.input_columns]
    expected = spec.task.model_output(model, test)
    assert np.sum(expected == 0.3) > 0  # the case is there
    found = compiled.compile_model(spec, model, test, "test split")
    assert found.graph is not None, found.reason
    served = compiled.CompiledModel(spec, model, found.graph).output(test)
    np.testing.assert_array_equal(served >= 0.3, expected >= 0.3)
    np.testing.assert_array_equal(served[expected == 0.3], 0.3)
