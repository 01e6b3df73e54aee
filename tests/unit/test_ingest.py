import http.server
import threading
from pathlib import Path

import pandas as pd
import pytest

from components.core import ingest
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec


def test_synthetic_has_the_real_columns_and_is_labelled(spec: ProjectSpec) -> None:
    frame, info = ingest.load(spec, "synthetic:500", seed=1)
    assert set(frame.columns) == set(spec.source_columns)
    assert info.synthetic and "SYNTHETIC" in info.notice
    assert info.source.startswith("synthetic:500")


def test_synthetic_is_reproducible_by_seed(spec: ProjectSpec) -> None:
    a, info_a = ingest.load(spec, "synthetic:300", seed=3)
    b, info_b = ingest.load(spec, "synthetic:300", seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert info_a.sha256 == info_b.sha256
    assert ingest.load(spec, "synthetic:300", seed=4)[1].sha256 != info_a.sha256


def test_local_file_records_rows_and_hash(tmp_path: Path) -> None:
    spec = PROJECTS["telecom"]
    path = tmp_path / "usage.csv"
    spec.make_synthetic(200, 1).to_csv(path, index=False)
    _, info = ingest.load(spec, str(path))
    assert (info.rows, info.columns, info.synthetic) == (200, 5, False)
    import hashlib

    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_http_url_is_read_over_a_real_server(tmp_path: Path) -> None:
    spec = PROJECTS["telecom"]
    spec.make_synthetic(150, 2).to_csv(tmp_path / "users_behavior.csv", index=False)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/users_behavior.csv"
        frame, info = ingest.load(spec, url)
        assert len(frame) == 150 and info.source == url
        with pytest.raises(ingest.IngestError, match="could not download"):
            ingest.load(spec, f"http://127.0.0.1:{server.server_port}/missing.csv")
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"calls,minutes,messages,mb_used,is_ultra\n", "no data rows"),
        (b'a,b\n"unterminated,1\n', "not a readable CSV"),
        (b"\xff\xfe\x00\x01binary\x00garbage", "not a readable CSV"),
    ],
)
def test_unreadable_sources_fail_with_the_reason(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ingest.IngestError, match=message):
        ingest.load(PROJECTS["telecom"], str(path))


def test_missing_file_and_bad_synthetic_spec_are_named() -> None:
    with pytest.raises(ingest.IngestError, match=r"not found: /no/such/file\.csv"):
        ingest.load(PROJECTS["telecom"], "/no/such/file.csv")
    with pytest.raises(ingest.IngestError, match="synthetic:ROWS"):
        ingest.load(PROJECTS["telecom"], "synthetic:lots")


def test_split_is_stratified_and_current_has_no_target() -> None:
    spec = PROJECTS["bankchurn"]
    frame, _ = ingest.load(spec, "synthetic:2000", seed=5)
    parts = ingest.split(spec, frame, 0.2, seed=5)
    assert parts.stratified
    assert len(parts.test) == 400 and len(parts.train) == 1600
    overall = frame[spec.target].mean()
    assert abs(parts.train[spec.target].mean() - overall) < 0.005
    assert abs(parts.test[spec.target].mean() - overall) < 0.005
    assert spec.target not in parts.current.columns
    assert len(parts.current) == len(parts.test)


def test_single_class_target_falls_back_to_a_plain_split_for_validation_to_report() -> None:
    spec = PROJECTS["telecom"]
    frame = spec.make_synthetic(100, 1).assign(is_ultra=0)
    parts = ingest.split(spec, frame, 0.2, seed=1)
    assert not parts.stratified and len(parts.train) == 80


def test_cleaning_rule_reports_the_rows_it_removed() -> None:
    spec = PROJECTS["carvision"]
    frame = spec.make_synthetic(2000, 9)
    junk = int((frame["price"] < 500).sum())
    cleaned, removed = ingest.clean(spec, frame)
    ((rule, count),) = removed.items()
    assert "500 USD" in rule
    assert count >= junk > 0
    assert len(cleaned) == len(frame) - count
    assert cleaned["price"].min() >= 500


def test_cleaning_is_skipped_when_the_target_is_not_numeric() -> None:
    spec = PROJECTS["carvision"]
    frame = spec.make_synthetic(50, 9).astype({"price": str})
    frame.loc[0, "price"] = "call me"
    cleaned, removed = ingest.clean(spec, frame)
    assert removed == {} and len(cleaned) == 50
