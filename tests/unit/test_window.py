"""Windows read in bounded memory: exact counts over every row, a sample of a stated size for drift,
every labelled row joined, and the same figures, within their intervals, from a log that kept a
tenth of the requests."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.core import inference_log, metrics, monitoring, window
from components.core.loading import LoadedModel, Provenance
from components.core.projects import PROJECTS
from components.core.scoring import prediction_columns
from tests.conftest import fitted_candidate

TELECOM = PROJECTS["telecom"]
NOW = dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC)
SERVED = 20_000


def champion() -> LoadedModel:
    _spec, model = fitted_candidate("telecom", "random_forest")
    background = TELECOM.make_synthetic(50, 1)[TELECOM.input_columns]
    return LoadedModel(model, background, Provenance("models:/telecom/4", "4", "r"), 0.5, 0)


def serve(root: Path, frame: pd.DataFrame, rate: float, loaded: LoadedModel) -> None:
    """The rows answered one request each, logged as the server logs them at `rate`."""
    inputs = frame[TELECOM.input_columns]
    probability = loaded.output(TELECOM, inputs)
    answers = prediction_columns(TELECOM, probability, 0.5)
    records = []
    for i, values in enumerate(inputs.to_dict("records")):
        request = f"req-{i}"
        if inference_log.keeps(request, rate):
            outputs = {name: answers[name][i] for name in answers}
            outputs = {k: v.item() if hasattr(v, "item") else v for k, v in outputs.items()}
            when = NOW - dt.timedelta(seconds=SERVED - i)
            records.append(
                inference_log.record(request, 0, when, "telecom", "4", values, outputs, rate)
            )
    for start in range(0, len(records), 5000):
        inference_log.write_part(str(root), "telecom", records[start : start + 5000])


def labels_file(path: Path, frame: pd.DataFrame) -> Path:
    labels = pd.DataFrame(
        {
            "request_id": [f"req-{i}" for i in range(len(frame))],
            "row": 0,
            "is_ultra": frame["is_ultra"],
        }
    )
    labels.to_csv(path, index=False)
    return path


def test_a_large_window_is_counted_whole_and_sampled_to_the_size_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = TELECOM.make_synthetic(SERVED, 5)
    loaded = champion()
    serve(tmp_path / "log", frame, 1.0, loaded)
    labels = labels_file(tmp_path / "labels.csv", frame.iloc[: SERVED // 4])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    found = monitoring.collect(
        TELECOM,
        "log",
        str(tmp_path / "log"),
        24,
        str(labels),
        now=NOW,
        sample_rows=3000,
        labelled_path=str(tmp_path / "labelled.parquet"),
    )
    stats = found.stats
    assert stats is not None
    assert (stats.rows, stats.rows_estimated, stats.rows_sampled) == (SERVED, SERVED, 3000)
    assert stats.labelled_rows == SERVED // 4 and stats.rows_by_version == {"4": SERVED}
    assert len(found.frame) == 3000 and list(found.frame.columns) == [
        *TELECOM.input_columns,
        "is_ultra",
    ]
    assert 0.2 < found.frame["is_ultra"].notna().mean() < 0.3  # a random sample, not the first rows
    labelled = pd.read_parquet(tmp_path / "labelled.parquet")
    served = labelled["request_id"].str[4:].astype(int).to_numpy()
    assert sorted(served) == list(range(SERVED // 4))
    assert (labelled["is_ultra"].to_numpy() == frame["is_ultra"].to_numpy()[served]).all()
    probability = loaded.output(TELECOM, frame[TELECOM.input_columns])
    assert stats.output is not None
    assert stats.output.mean == pytest.approx(probability.mean(), rel=1e-9)
    assert stats.output.positive_share == pytest.approx(np.mean(probability >= 0.5), rel=1e-9)
    again = monitoring.collect(
        TELECOM, "log", str(tmp_path / "log"), 24, str(labels), now=NOW, sample_rows=3000
    )
    pd.testing.assert_frame_equal(again.frame, found.frame)  # the same sample every time
    assert list(scratch.iterdir()) == []  # the labels join's spill folder is removed
    # live quality over every labelled row: the figures of the model on those rows
    live = monitoring.live_quality(TELECOM, loaded, found)
    first = frame.iloc[: SERVED // 4]
    expected = metrics.binary_metrics(
        first["is_ultra"].to_numpy(), loaded.output(TELECOM, first[TELECOM.input_columns]), 0.5
    )
    assert live.rows == SERVED // 4
    for name, value in live.figures.items():
        assert value == pytest.approx(expected[name], abs=1e-9), name
        if name != "threshold":
            low, high = live.intervals[name]
            assert low <= value <= high


def test_a_small_window_is_its_own_sample(tmp_path: Path) -> None:
    frame = TELECOM.make_synthetic(800, 6)
    serve(tmp_path / "log", frame, 1.0, champion())
    found = monitoring.collect(TELECOM, "log", str(tmp_path / "log"), 24, now=NOW)
    assert found.rows == len(found.frame) == 800
    whole = inference_log.read_window(str(tmp_path / "log"), "telecom")
    pd.testing.assert_frame_equal(found.frame, whole[TELECOM.input_columns])


def test_a_tenth_of_the_requests_gives_the_figures_within_their_intervals(tmp_path: Path) -> None:
    # Fixed data: a 95% interval misses one draw in twenty (over seeds 8 to 27 the positive
    # share's missed once, at seed 9; ROC-AUC's at seed 8), so the test reads a draw where none
    # misses. A biased count, a lost weight or too narrow an interval fails it.
    frame = TELECOM.make_synthetic(SERVED, 10)
    loaded = champion()
    labels = labels_file(tmp_path / "labels.csv", frame)
    found = {}
    for rate in (1.0, 0.1):
        root = tmp_path / f"log-{rate}"
        serve(root, frame, rate, loaded)
        collected = monitoring.collect(
            TELECOM,
            "log",
            str(root),
            24,
            str(labels),
            now=NOW,
            labelled_path=str(tmp_path / f"labelled-{rate}.parquet"),
        )
        found[rate] = (collected, monitoring.live_quality(TELECOM, loaded, collected))
    (whole, whole_live), (tenth, tenth_live) = found[1.0], found[0.1]
    assert whole.stats and tenth.stats and whole.stats.output and tenth.stats.output
    assert 1_800 < tenth.stats.rows < 2_200 and tenth.stats.sample_rates == [0.1]
    assert tenth.stats.rows_estimated == pytest.approx(10 * tenth.stats.rows)
    assert abs(tenth.stats.rows_estimated - SERVED) < 0.1 * SERVED
    low, high = tenth.stats.output.positive_share_interval or (0.0, 0.0)
    assert low <= whole.stats.output.positive_share <= high  # type: ignore[operator]
    assert high - low < 0.05
    low, high = tenth.stats.output.mean_interval
    assert low <= whole.stats.output.mean <= high
    assert tenth_live.rows == tenth.stats.rows and whole_live.rows == SERVED
    for name in ("accuracy", "roc_auc", "f1", "precision", "recall", "pr_auc"):
        low, high = tenth_live.intervals[name]
        assert low <= whole_live.figures[name] <= high, (name, low, whole_live.figures[name], high)


def test_a_window_before_the_logs_retention_starts_where_the_log_does(tmp_path: Path) -> None:
    frame = TELECOM.make_synthetic(50, 9)
    serve(tmp_path / "log", frame, 1.0, champion())
    kept = NOW - dt.timedelta(hours=2)
    marker = tmp_path / "log" / "telecom" / inference_log.RETENTION_FILE
    marker.write_text(json.dumps({"retention_days": 1, "kept_from": kept.isoformat()}))
    found = monitoring.collect(TELECOM, "log", str(tmp_path / "log"), 24, now=NOW)
    assert found.stats is not None and found.stats.start == kept.isoformat(timespec="seconds")
    assert (
        "keeps only what is newer than" in found.stats.note
        and "(its retention)" in found.stats.note
    )


def test_labels_that_are_not_numbers_are_refused_naming_the_file(tmp_path: Path) -> None:
    serve(tmp_path / "log", TELECOM.make_synthetic(20, 9), 1.0, champion())
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,row,is_ultra\nreq-0,0,1\nreq-1,0,yes\n")
    with pytest.raises(
        monitoring.MonitoringError, match=r"labels\.csv: 1 line\(s\) whose is_ultra is not a number"
    ):
        monitoring.collect(TELECOM, "log", str(tmp_path / "log"), 24, str(labels), now=NOW)
    with pytest.raises(monitoring.MonitoringError, match="labels file not found"):
        monitoring.collect(
            TELECOM, "log", str(tmp_path / "log"), 24, str(tmp_path / "no.csv"), now=NOW
        )


def test_the_reservoir_is_uniform_and_weighs_rows_by_their_weight() -> None:
    rows = pd.DataFrame({"i": np.arange(100_000)})
    u = window.uniform_keys(rows, 1)
    sample = window.Reservoir(10_000)
    for start in range(0, len(rows), 7_000):
        part = slice(start, start + 7_000)
        weight = np.where(rows["i"].to_numpy()[part] < 50_000, 1.0, 3.0)
        sample.offer(rows.iloc[part], u[part], weight)
    kept = sample.rows("i")["i"].to_numpy()
    assert len(kept) == 10_000 and len(set(kept)) == 10_000
    heavy = np.mean(kept >= 50_000)
    assert 0.72 < heavy < 0.78  # weight 3 against 1: three quarters of the sample
