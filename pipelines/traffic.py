"""Sends a project's rows to a local model server, as production traffic would, and writes
the ground truth of what it sent.

`python -m pipelines.traffic --project telecom [--port 8080] [--data CSV_PATH_OR_URL] [--rows 500]
[--batch 1] [--shift minutes:1.3,calls:0.8] [--labels labels.csv] [--api-token-file PATH]`

Rows come from `--data` (a CSV path or http(s) URL with the project's columns, read as is) or
else from the project's synthetic generator. `--shift` multiplies numeric columns by a factor
(`components.core.drift.shift`; integer columns are then rounded, so that the server still
accepts them): a planted drift for monitoring to find. Each request of `--batch` rows carries
its own `X-Request-ID`; the run stops after `--rows` rows or `--deadline` seconds. The labels
file gets one line per answered row whose source row had the target: `request_id`, `row` (the
position within the request) and the target column, which joins the server's inference log; an
existing labels file is appended to.
Only 127.0.0.1 is a target unless `--host` names another. A server that requires a bearer
token gets the one in `--api-token-file` or $MLOPS_API_TOKEN; a 401 stops the run.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from components.core import ingest
from components.core.projects import PROJECTS, get_spec
from components.core.spec import ProjectSpec

LOCAL_HOST = "127.0.0.1"
LOCAL_NAMES = {"localhost"}
REQUEST_ID_HEADER = "X-Request-ID"
TIMEOUT_SECONDS = 30.0
TOKEN_ENV = "MLOPS_API_TOKEN"


class TrafficError(ValueError):
    """The run cannot start as asked; the message says why."""


@dataclass
class Tally:
    requests: int = 0
    sent: int = 0
    answered: int = 0
    rejected: int = 0
    failed: int = 0
    labels: list[dict[str, Any]] = field(default_factory=list)
    stopped_by_deadline: bool = False
    has_target: bool = False


def is_local(host: str) -> bool:
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_shift(text: str) -> dict[str, float]:
    """`minutes:1.3,calls:0.8` -> {"minutes": 1.3, "calls": 0.8}."""
    changes: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        column, sep, factor = item.rpartition(":")
        try:
            value = float(factor)
        except ValueError:
            value = math.nan
        if not sep or not column or not math.isfinite(value):
            raise TrafficError(f"--shift {text!r}: expected COLUMN:FACTOR[,COLUMN:FACTOR...]")
        changes[column] = value
    return changes


def source_rows(spec: ProjectSpec, data: str | None, rows: int, seed: int) -> pd.DataFrame:
    """`rows` rows of the source in a random order (drawn again from the start when the source
    has fewer), as read: no cleaning, so junk rows meet the server's validation."""
    if data:
        try:
            frame = ingest.parse_csv(ingest.read_bytes(data), data)
        except ingest.IngestError as exc:
            raise TrafficError(str(exc)) from None
    else:
        frame = spec.make_synthetic(max(rows, 1), seed)
    missing = [c for c in spec.input_columns if c not in frame.columns]
    if missing:
        raise TrafficError(f"{data}: no column {', '.join(missing)} (is it {spec.name}'s data?)")
    order = frame.sample(frac=1.0, random_state=seed).index.tolist()
    picked = [order[i % len(order)] for i in range(rows)]
    return frame.loc[picked].reset_index(drop=True)


def shifted(spec: ProjectSpec, frame: pd.DataFrame, changes: Mapping[str, float]) -> pd.DataFrame:
    if not changes:
        return frame
    unknown = [c for c in changes if c not in spec.input_columns]
    if unknown:
        raise TrafficError(
            f"--shift: {', '.join(unknown)} not an input column of {spec.name} "
            f"({', '.join(spec.input_columns)})"
        )
    textual = [c for c in changes if spec.column(c).dtype not in ("float", "int")]
    if textual:
        raise TrafficError(f"--shift: {', '.join(textual)} not a numeric column")
    from components.core.drift import shift  # Evidently: imported only when asked for

    out = shift(frame, changes)
    for column in changes:
        if spec.column(column).dtype == "int":
            out[column] = out[column].round()
    return out


def instances(spec: ProjectSpec, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON objects of the input fields; blanks as null."""
    return [
        {
            str(k): None if v is None or (isinstance(v, float) and math.isnan(v)) else v
            for k, v in record.items()
        }
        for record in frame[spec.input_columns].astype(object).to_dict("records")
    ]


def api_token(token_file: Path | None) -> str | None:
    """The bearer token from the file (its content, stripped), else $MLOPS_API_TOKEN; None
    when neither is given."""
    if token_file is None:
        return os.environ.get(TOKEN_ENV, "").strip() or None
    try:
        token = token_file.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise TrafficError(f"cannot read the API token file {token_file}: {reason}") from None
    if not token:
        raise TrafficError(f"the API token file {token_file} is empty")
    return token


def _target_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def send(
    spec: ProjectSpec,
    frame: pd.DataFrame,
    url: str,
    batch: int,
    deadline_s: float,
    client: httpx.Client,
    token: str | None = None,
) -> Tally:
    tally = Tally()
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    bodies = instances(spec, frame)
    targets = frame[spec.target].tolist() if spec.target in frame.columns else None
    tally.has_target = targets is not None
    stop_at = time.monotonic() + deadline_s
    for start in range(0, len(frame), batch):
        if time.monotonic() >= stop_at:
            tally.stopped_by_deadline = True
            break
        rows = bodies[start : start + batch]
        request_id = uuid.uuid4().hex
        tally.requests += 1
        tally.sent += len(rows)
        try:
            response = client.post(
                url,
                json={"instances": rows},
                headers={REQUEST_ID_HEADER: request_id, **auth},
                timeout=min(TIMEOUT_SECONDS, max(stop_at - time.monotonic(), 1.0)),
            )
        except httpx.TransportError as exc:
            if tally.answered + tally.rejected == 0:
                raise TrafficError(
                    f"no answer from {url} ({type(exc).__name__}: {exc}); is the server running? "
                    f"(make serve PROJECT={spec.name})"
                ) from None
            tally.failed += len(rows)
            continue
        if response.status_code == 401:  # every other request would be refused too
            raise TrafficError(
                f"{url} answered 401: "
                + (
                    "it refused the bearer token given"
                    if token
                    else f"it requires a bearer token (make traffic TOKEN=..., ${TOKEN_ENV} "
                    "or --api-token-file)"
                )
            )
        if response.status_code == 400:
            tally.rejected += len(rows)
            continue
        if response.status_code != 200:
            tally.failed += len(rows)
            continue
        tally.answered += len(rows)
        answered_id = response.headers.get(REQUEST_ID_HEADER, request_id)
        if targets is None:
            continue
        for row in range(len(rows)):
            label = _target_value(targets[start + row])
            if label is not None:
                tally.labels.append({"request_id": answered_id, "row": row, spec.target: label})
    return tally


def _labels_columns(spec: ProjectSpec) -> list[str]:
    return ["request_id", "row", spec.target]


def _write_labels(path: Path, labels: pd.DataFrame) -> None:
    """Appends to an existing labels file with the same columns (request ids are unique, so
    runs accumulate); otherwise writes a new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size:
        header = path.read_text().split("\n", 1)[0].strip().split(",")
        if header == list(labels.columns):
            labels.to_csv(path, mode="a", header=False, index=False)
            return
    labels.to_csv(path, index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.traffic", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--project", required=True, choices=sorted(PROJECTS))
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--host",
        default=LOCAL_HOST,
        help="the server's host (default %(default)s); naming another host is the only way to "
        "send traffic off this machine",
    )
    parser.add_argument("--data", default=None, help="CSV path or http(s) URL (default: synthetic)")
    parser.add_argument("--rows", type=int, default=500, help="rows to send (default %(default)s)")
    parser.add_argument("--batch", type=int, default=1, help="rows per request (default 1)")
    parser.add_argument("--shift", default="", help="COLUMN:FACTOR[,...] multiplies the column")
    parser.add_argument(
        "--labels", type=Path, default=None, help="CSV of the answered rows' targets"
    )
    parser.add_argument(
        "--deadline", type=float, default=120.0, help="seconds before it stops sending"
    )
    parser.add_argument("--seed", type=int, default=0, help="row order and synthetic rows")
    parser.add_argument(
        "--api-token-file",
        type=Path,
        default=None,
        help=f"file holding the server's bearer token (default: ${TOKEN_ENV}, if set)",
    )
    args = parser.parse_args(argv)
    if args.rows < 1 or args.batch < 1 or args.deadline <= 0:
        parser.error("--rows, --batch and --deadline must be positive")
    spec = get_spec(args.project)
    if not is_local(args.host):
        print(f"sending to {args.host}, not this machine (--host)", file=sys.stderr)
    url = f"http://{args.host}:{args.port}/v1/models/{spec.name}:predict"
    try:
        token = api_token(args.api_token_file)
        if token and not is_local(args.host):
            print("the bearer token travels unencrypted over http", file=sys.stderr)
        frame = shifted(
            spec, source_rows(spec, args.data, args.rows, args.seed), parse_shift(args.shift)
        )
        with httpx.Client() as client:
            tally = send(spec, frame, url, args.batch, args.deadline, client, token)
    except (TrafficError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    source = args.data or "synthetic rows"
    print(
        f"{spec.name}: sent {tally.sent} rows from {source} in {tally.requests} requests to {url}: "
        f"{tally.answered} answered, {tally.rejected} rejected (400), {tally.failed} failed"
        + (f"; stopped at the {args.deadline:g} s deadline" if tally.stopped_by_deadline else "")
    )
    if args.labels is not None:
        _write_labels(args.labels, pd.DataFrame(tally.labels, columns=_labels_columns(spec)))
        note = "" if tally.has_target else f" (no {spec.target} column in the source)"
        print(f"labels: {args.labels} ({len(tally.labels)} rows){note}")
    return 0 if tally.answered else 1


if __name__ == "__main__":
    sys.exit(main())
