"""The CarVision dashboard, driven by Streamlit's own testing API (AppTest) against a real
predictor process on 127.0.0.1 and a real MLflow store, then opened in headless Chromium.

One small synthetic listings file, one quick random forest registered as champion and served,
shared by the module's tests; the last one stops the predictor."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from apps.carvision import form
from apps.carvision.champion import RegistryUnavailable, champion
from apps.carvision.predictor import Predictor, PredictorUnavailable
from apps.carvision.settings import (
    DATA_ENV,
    PREDICTOR_ENV,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    TRACKING_ENV,
    Settings,
    SettingsError,
)
from benchmarks.screenshots import app_command, chromium_page
from components.core import evaluate, ingest, market, report
from components.core.contracts import (
    CHAMPION,
    EvaluationSummary,
    SourceInfo,
)
from components.core.lineage import Provenance
from components.core.projects import PROJECTS
from components.core.train import train
from tests.serving.support import START_WAIT_SECONDS, instances, predict
from tests.support.browser import chromium
from tests.support.models import register_as_champion, save
from tests.support.servers import REPO_ROOT, ServerProcess, free_port, launch, start

SPEC = PROJECTS["carvision"]
APP = REPO_ROOT / "apps" / "carvision" / "app.py"
ROWS, SEED = 1200, 5
VERSION = "1"
"""The version a fresh store gives the first registration, which the predictor reports."""


@dataclass
class Stack:
    data: Path
    tracking_uri: str
    predictor: ServerProcess
    test_frame: pd.DataFrame
    root: Path


def register_champion(
    parts: ingest.Split, info: SourceInfo, trained: Any, uri: str, root: Path
) -> str:
    """As the training pipeline registers one: its evaluation record (intervals, groups) and
    its market report logged with the run."""
    found, score = evaluate.evaluate(SPEC, trained.model, parts.test)
    y = parts.test[SPEC.target].to_numpy(dtype=float)
    passed, gates = evaluate.check_gates(SPEC.gates, found.metrics)
    summary = EvaluationSummary(
        rows=found.rows,
        metrics=found.metrics,
        groups=found.groups,
        gates=gates,
        passed=passed,
        intervals=evaluate.bootstrap_intervals(
            SPEC, y, score, 0.5, list(found.metrics), resamples=200
        ),
        reading=evaluate.business_reading(SPEC, y, score, 0.5),
    )
    # The market step's page (its own tests draw it); here, what register does with it.
    page = root / "market.html"
    provenance = Provenance.of_training(SPEC.name, info, "app-champion", "none")
    page.write_text(report.page("market", provenance, []))
    return register_as_champion(
        SPEC, trained, parts, info, uri, "app-champion", SEED, {}, summary, {"market": str(page)}
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("carvision-app")
    data = root / SPEC.data_file
    SPEC.make_synthetic(ROWS, SEED).to_csv(data, index=False)
    parts, info = ingest.ingest(SPEC, str(data), SEED, 0.25)
    forest = dataclasses.replace(SPEC.candidate("random_forest"), search_space={})
    trained = train(dataclasses.replace(SPEC, candidates=(forest,)), parts.train, SEED, 1)
    model_dir = save(SPEC, trained.model, parts.train, root / "model", reference_frame=parts.test)
    # The predictor starts while the registry is written.
    predictor = launch(
        SPEC.name, model_dir, root / "predictor.log", extra_args=["--model_version", VERSION]
    )
    try:
        uri = f"sqlite:///{root / 'mlflow.db'}"
        assert register_champion(parts, info, trained, uri, root) == VERSION
        predictor.wait_ready(START_WAIT_SECONDS)
        yield Stack(data, uri, predictor, parts.test, root)
    finally:
        predictor.stop()


@pytest.fixture
def app(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv(DATA_ENV, str(stack.data))
    monkeypatch.setenv(TRACKING_ENV, stack.tracking_uri)
    monkeypatch.setenv(PREDICTOR_ENV, stack.predictor.url)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    st.cache_data.clear()
    return AppTest.from_file(str(APP), default_timeout=120)


def texts(elements: Any) -> str:
    return "\n".join(str(e.value) for e in elements)


def enter(at: AppTest, car: dict[str, Any]) -> None:
    """Types a car into the estimator's form, field by field, as the schema's widgets take it."""
    for column in SPEC.columns:
        key, value = form.KEY_PREFIX + column.name, car[column.name]
        if column.dtype in ("category", "string"):
            at.selectbox(key=key).set_value(value)
        elif column.dtype == "date":
            at.date_input(key=key).set_value(dt.date.fromisoformat(value))
        else:
            text = "" if value is None else value if isinstance(value, str) else f"{value:g}"
            at.text_input(key=key).set_value(text)


def test_every_tab_renders_from_the_listings_the_registry_and_the_predictor(
    app: AppTest, stack: Stack
) -> None:
    app.run()
    assert not app.exception, app.exception
    assert [t.label for t in app.tabs] == ["Overview", "Market", "Model", "Estimator"]
    overview, market_tab, model, estimator = app.tabs
    # overview: rows, dates, blanks, a sample
    metrics = {m.label: m.value for m in overview.metric}
    kept = pd.read_csv(stack.data)
    assert metrics["Listings read"] == f"{ROWS:,}"
    assert metrics["First posted"] == kept["date_posted"].min()
    assert metrics["Last posted"] == kept["date_posted"].max()
    [blanks, sample] = overview.dataframe
    assert dict(zip(blanks.value["column"], blanks.value["blank"], strict=True)) == (
        kept.isna().sum().to_dict()
    )
    assert len(sample.value) == 20
    # market: every view, and what cleaning removed
    subheaders = [s.value for s in market_tab.subheader]
    assert subheaders == [v.title for v in market.VIEWS] + ["What the cleaning rules removed"]
    assert "listings posted from" in texts(market_tab.markdown)
    # model: the champion's version, figures with intervals, error by condition and type
    said = texts(model.markdown)
    assert f"models:/{SPEC.name}@champion is version {VERSION}" in said
    figures = model.dataframe[0].value
    assert set(figures["metric"]) == {"r2", "rmse", "mae", "mape"}
    assert all(re.fullmatch(r"[-\d,.]+ to [-\d,.]+", i) for i in figures["95% interval"])
    groups = model.dataframe[1].value
    assert set(groups["column"]) == {"condition", "type"}
    assert {"rmse", "mae", "mape"} <= set(groups.columns)
    # estimator: the form, every field of the schema, nothing estimated before it is sent
    assert {w.key for w in [*estimator.selectbox, *estimator.text_input]} | {
        w.key for w in estimator.date_input
    } == {form.KEY_PREFIX + c for c in SPEC.input_columns}
    assert not estimator.metric
    # the champion's run keeps the market report with the other reports
    run = mlflow.MlflowClient(stack.tracking_uri).get_model_version_by_alias(SPEC.name, CHAMPION)
    client = mlflow.MlflowClient(stack.tracking_uri)
    logged = client.list_artifacts(str(run.run_id), "reports")
    assert [a.path for a in logged] == ["reports/market.html"]
    page = Path(client.download_artifacts(str(run.run_id), "reports/market.html", str(stack.root)))
    assert f"{SPEC.name} v{VERSION}" in page.read_text()  # stamped with the version


def test_an_estimate_is_the_served_models_answer_with_its_reasons(
    app: AppTest, stack: Stack
) -> None:
    [car] = instances(SPEC, stack.test_frame.head(1))
    served = predict(stack.predictor, [car])
    assert served.status_code == 200, served.text
    price = served.json()["predictions"][0]["price"]
    app.run()
    enter(app, car)
    app.button(key="estimate").click().run()
    assert not app.exception and not app.error, texts(app.error)
    estimator = app.tabs[3]
    [shown] = estimator.metric
    assert shown.label == "Estimated price" and shown.value == f"${price:,.0f}"
    assert f"The model's answer: {price:,.2f} USD" in texts(estimator.caption)
    assert f"version {VERSION}" in texts(estimator.caption)
    reasons = [m for m in estimator.markdown if re.search(r"(raises|lowers) the estimate", m.value)]
    assert len(reasons) == 3
    near = market.comparables(market.read_listings(SPEC, str(stack.data)).kept, car)
    said = texts(estimator.markdown) + texts(estimator.info)
    if near is None:
        assert "Too few listings like this car" in said
    else:
        assert f"between \\${near.low:,.0f} and \\${near.high:,.0f}" in said


def test_a_negative_mileage_shows_the_servers_message_and_no_number(
    app: AppTest, stack: Stack
) -> None:
    [car] = instances(SPEC, stack.test_frame.head(1))
    car["odometer"] = "-5"  # as the form sends a number: its text
    refused = predict(stack.predictor, [car])
    assert refused.status_code == 400
    app.run()
    enter(app, car)
    app.button(key="estimate").click().run()
    estimator = app.tabs[3]
    [error] = estimator.error
    assert refused.json()["error"] in error.value
    assert "odometer" in texts(estimator.markdown) and "minimum" in texts(estimator.markdown)
    assert not estimator.metric


def test_the_client_says_what_the_predictor_answered_and_keeps_the_token_out_of_sight(
    stack: Stack, tmp_path: Path
) -> None:
    [car] = instances(SPEC, stack.test_frame.head(1))
    token = tmp_path / "token"
    token.write_text("s3cret-value\n")
    settings = Settings.from_env(
        {PREDICTOR_ENV: stack.predictor.url + "/", TOKEN_FILE_ENV: str(token)}
    )
    assert settings.token == "s3cret-value" and settings.predictor_url == stack.predictor.url
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.describe())
    # a server without a token ignores one; a name it does not serve is said as such
    assert Predictor(settings, SPEC.name).served_version() == VERSION
    with pytest.raises(PredictorUnavailable, match="serves no model named 'carvisio'"):
        Predictor(settings, "carvisio").price(car, "price")
    with pytest.raises(SettingsError, match=f"{TOKEN_FILE_ENV}: cannot read"):
        Settings.from_env({TOKEN_FILE_ENV: str(tmp_path / "missing")})
    # without a registry named, none is made up
    with pytest.raises(RegistryUnavailable, match="MLFLOW_TRACKING_URI is not set"):
        champion(SPEC, "")


def test_the_running_app_shows_its_four_tabs_in_chromium(stack: Stack) -> None:
    """`streamlit run` on a free port, opened by the estimator's link in headless Chromium; the
    page renders with JavaScript over a websocket, so Chromium is watched over its DevTools
    protocol until the tabs are drawn."""
    chromium()
    port = free_port()
    env = {
        DATA_ENV: str(stack.data),
        TRACKING_ENV: stack.tracking_uri,
        PREDICTOR_ENV: stack.predictor.url,
    }
    server = start(
        "carvision-app",
        app_command(sys.executable, port, "127.0.0.1"),
        stack.root / "app.log",
        port,
        env,
    )
    try:
        server.wait_ready(START_WAIT_SECONDS, path="/_stcore/health")
        with chromium_page(1200, 900) as page:
            page.call("Page.navigate", url=f"{server.url}/?tab=estimator")
            page.wait_for("document.querySelectorAll('[role=tab]').length === 4", 120, 0)
            dom = page.evaluate("document.documentElement.outerHTML")
    finally:
        server.stop()
    tabs = re.findall(r'role="tab"([^>]*)>.*?<p>([^<]+)</p>', dom)
    assert [label for _, label in tabs] == ["Overview", "Market", "Model", "Estimator"]
    selected = [label for attributes, label in tabs if 'data-selected="true"' in attributes]
    assert selected == ["Estimator"]


def test_with_the_predictor_stopped_the_estimator_says_so_and_the_other_tabs_work(
    app: AppTest, stack: Stack
) -> None:
    stack.predictor.stop()
    [car] = instances(SPEC, stack.test_frame.head(1))
    app.run()
    enter(app, car)
    app.button(key="estimate").click().run()
    assert not app.exception
    overview, market_tab, model, estimator = app.tabs
    [error] = estimator.error
    assert error.value.startswith("No estimate: the price estimator is not available")
    assert stack.predictor.url in error.value
    assert not estimator.metric
    assert {m.label for m in overview.metric} >= {"Listings read", "Last posted"}
    assert len(market_tab.subheader) == len(market.VIEWS) + 1
    assert f"is version {VERSION}" in texts(model.markdown)
    # and without a champion in the registry, the model tab says so
    mlflow.MlflowClient(stack.tracking_uri).delete_registered_model_alias(SPEC.name, CHAMPION)
    st.cache_data.clear()
    app.run()
    assert "No champion model" in texts(app.tabs[2].warning)
    assert len(app.tabs[1].subheader) == len(market.VIEWS) + 1
