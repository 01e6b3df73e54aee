"""`make bench-scale` writes its inference logs as the server writes them: the lines are the
server's records byte for byte, one part a second, and monitoring reads every row back."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from benchmarks import scale
from components.core import inference_log
from components.core.projects import PROJECTS
from serving.inference_log import Answered, records

TELECOM = PROJECTS["telecom"]


def fragments(rows: int) -> tuple[list[str], np.ndarray]:
    frame = TELECOM.make_synthetic(rows, 3)
    answered = Answered(
        request_id="r",
        when=dt.datetime.now(dt.UTC),
        model_version="1",
        inputs={c: frame[c].to_numpy(dtype=float) for c in TELECOM.input_columns},
        outputs={
            "ultra_probability": np.linspace(0, 1, rows),
            "recommended_plan": np.array(["Ultra", "Standard"] * (rows // 2)),
        },
        rows=rows,
    )
    made = []
    for item in records("telecom", answered):
        text = json.dumps({"inputs": item["inputs"], "outputs": item["outputs"]})
        made.append(text[1:-1])
    return made, frame[TELECOM.target].to_numpy()


def test_the_generated_log_is_the_servers_and_reads_back_whole(tmp_path: Path) -> None:
    made, targets = fragments(40)
    scale.check_record_format("telecom", made, "1")  # raises on any difference
    rows = 3 * scale.RATE + 7
    labels, first = scale.write_log("telecom", rows, tmp_path / "log", made, targets, "1")
    parts = sorted((tmp_path / "log" / "telecom").rglob("part-*.jsonl"))
    assert len(parts) == 4  # one a second
    assert all(len(p.read_text().splitlines()) <= scale.RATE for p in parts)
    found = inference_log.scan(
        str(tmp_path / "log"), "telecom", first, None, inference_log.LogSchema.of(TELECOM)
    )
    assert sum(t.num_rows for t in found) == rows and not found.skipped
    lines = labels.read_text().splitlines()
    assert lines[0] == "request_id,row,is_ultra"
    assert len(lines) - 1 == -(-rows // round(1 / scale.LABELLED_SHARE))
