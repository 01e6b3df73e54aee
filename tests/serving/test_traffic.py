"""`make traffic` (pipelines/traffic.py) against the real logging server of conftest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from components.core.inference_log import read_window
from pipelines import traffic
from tests.serving.support import Served, wait_until
from tests.support.servers import ServerProcess


def test_traffic_sends_its_rows_and_writes_labels_that_join_the_inference_log(
    processes: dict[str, ServerProcess],
    served: dict[str, Served],
    inference_logs: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = processes["logged"]
    server.wait_ready(timeout=300.0)
    spec = served["bankchurn"].spec
    data = tmp_path / "rows.csv"
    served["bankchurn"].test_frame.head(40).to_csv(data, index=False)
    labels = tmp_path / "labels.csv"
    base = ["--project", "bankchurn", "--port", str(server.port), "--data", str(data)]
    base += ["--labels", str(labels)]
    assert traffic.main([*base, "--rows", "30", "--batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "sent 30 rows" in out and "in 8 requests" in out
    assert "30 answered, 0 rejected (400), 0 failed" in out

    table = pd.read_csv(labels)
    assert list(table.columns) == ["request_id", "row", spec.target]
    assert len(table) == 30
    assert table.groupby("request_id")["row"].apply(list).map(len).sum() == 30
    assert table["request_id"].nunique() == 8
    root = inference_logs["logged"]

    def joined() -> pd.DataFrame | None:
        log = read_window(root, "bankchurn")
        if log.empty:
            return None
        both = table.merge(log, on=["request_id", "row"])
        return both if len(both) == len(table) else None

    both = wait_until(joined, 20.0, "the traffic's rows in the inference log", server)
    source = pd.read_csv(data)
    assert set(both[spec.target]) <= set(source[spec.target])

    # a second run appends to the labels file
    assert traffic.main([*base, "--rows", "3"]) == 0
    assert len(pd.read_csv(labels)) == 33


def test_traffic_refuses_what_it_cannot_send(tmp_path: Path) -> None:
    assert traffic.is_local("127.0.0.1") and traffic.is_local("localhost")
    assert traffic.is_local("::1") and not traffic.is_local("example.com")
    assert traffic.parse_shift("Age:1.3, Balance:0.5") == {"Age": 1.3, "Balance": 0.5}
    with pytest.raises(traffic.TrafficError, match="COLUMN:FACTOR"):
        traffic.parse_shift("Age")
    spec = traffic.get_spec("bankchurn")
    frame = spec.make_synthetic(5, 0)
    with pytest.raises(traffic.TrafficError, match="not an input column"):
        traffic.shifted(spec, frame, {"Salary": 2.0})
    with pytest.raises(traffic.TrafficError, match="not a numeric column"):
        traffic.shifted(spec, frame, {"Geography": 2.0})
    missing = tmp_path / "missing.csv"
    with pytest.raises(traffic.TrafficError, match="not found"):
        traffic.source_rows(spec, str(missing), 5, 0)
    # nothing listens on a port just freed: the run stops with the reason
    from tests.support.servers import free_port

    assert traffic.main(["--project", "bankchurn", "--port", str(free_port()), "--rows", "2"]) == 2
