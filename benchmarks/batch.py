"""How fast batch scoring scores, next to the champion's own predict call, on the real data with
the registered champions (`make bench-batch`).

For each project: the champion is pinned and loaded exactly as a score step loads it (its file
verified, or its digest pinned when it has no tag); the real file is read with its target
dropped and screened as the validate-rows step screens it. Then, in the same process, on the
same valid rows, alternately:

- the champion's own sklearn call: `predict_proba` (classifiers) or `predict` (regression);
- its compiled graph (components/core/compiled.py), on one core and on all of them, when the
  version has one; its outputs are checked against the sklearn call's on every row;
- the score step's logic without reasons (`scoring.score_frame`: outputs, through the compiled
  graph as the score step runs it, labels at the stored threshold, risk bands, identifiers,
  model name, version and time), and its own work apart from the model (the same call with the
  model's answers replayed);
- with reasons (each row explained by `explainer_for`, its top three in words), on all rows when
  the explainer is fast and on the first rows when it is not (how many is said).

Each figure is the best of REPEATS timings (the model call and the step alternated). The pipeline's fixed costs (a process per step,
loading the model, reading and writing files) are not in these figures: `make score` prints
each step's wall time. Writes .state/bench/batch.md and prints it.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np

from benchmarks.options import champion_benchmark_parser
from components.core import scoring
from components.core.explain import explainer_for
from components.core.projects import PROJECTS
from pipelines.local import project_list

OUT_DIR = Path(".state/bench")
REPEATS = 7
REASONS_BUDGET_S = 30.0
"""Reasons on all rows when that is projected to take less than this."""
PROBE_S = 10.0
"""Else on the first head of the rows (1, 4, 16, ...) that takes at least this long."""


class Replay:
    """A model that answers what the real one answered: times everything else in the step."""

    def __init__(self, output: np.ndarray) -> None:
        self.output = output

    def predict_proba(self, frame: object) -> np.ndarray:
        return np.column_stack([1 - self.output, self.output])

    def predict(self, frame: object) -> np.ndarray:
        return self.output


def rate(value: float) -> str:
    """Rows per second with the digits that matter, from 12,345 down to 0.042."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.2g}"


def timed(call: Callable[[], object], repeats: int = REPEATS) -> float:
    """The fastest of `repeats` calls, in seconds: what the work costs when the machine's other
    load leaves it alone (this machine is shared)."""
    found = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        found.append(time.perf_counter() - start)
    return min(found)


def bench_project(name: str, data_dir: Path) -> str:
    spec = PROJECTS[name]
    pinned = scoring.pin(spec, allow_unverified=True)
    start = time.perf_counter()
    loaded = scoring.load_pinned(spec, pinned)
    load_s = time.perf_counter() - start
    source = data_dir / spec.data_file
    frame, _, _ = scoring.read_table(str(source))
    frame = frame.drop(columns=[spec.target])
    screen_s = timed(lambda: scoring.screen(spec, frame), 3)
    valid = scoring.screen(spec, frame).valid
    inputs = valid[spec.input_columns]
    model, threshold, version = loaded.model, loaded.threshold, pinned.version
    rows = len(valid)

    graph = loaded.compiled
    one_core = graph.with_threads(1) if graph is not None else None

    def bare() -> object:
        return spec.task.model_output(model, inputs)

    def step() -> object:
        return scoring.score_frame(spec, model, threshold, valid, version, compiled=graph)

    calls: dict[str, Callable[[], object]] = {"sklearn": bare, "step": step}
    if graph is not None and one_core is not None:
        calls |= {"compiled, 1 core": lambda: one_core.output(inputs)}
        calls |= {f"compiled, {graph.threads} cores": lambda: graph.output(inputs)}
        difference = float(
            np.max(np.abs(graph.output(inputs) - spec.task.model_output(model, inputs)))
        )
    seconds: dict[str, list[float]] = {label: [] for label in calls}
    for measured in calls.values():
        measured()  # warm
    for _ in range(REPEATS):  # alternated, so that a slow moment of the machine hits all
        for label, measured in calls.items():
            seconds[label].append(timed(measured, 1))
    rates = {label: rows / min(found) for label, found in seconds.items()}
    bare_rate, step_rate = rates.pop("sklearn"), rates.pop("step")
    compiled_text = (
        "; ".join(
            f"{label}: {value:,.0f} ({value / bare_rate:.1f}x)" for label, value in rates.items()
        )
        + f"; max diff {difference:.2g}"
        if graph is not None
        else f"none: {loaded.compiled_note}"
    )
    # The step's own work, apart from the model: the same call with the model's answers replayed,
    # which the machine's other load disturbs far less than a call of a second.
    replay = Replay(spec.task.model_output(model, inputs))
    own_s = timed(lambda: scoring.score_frame(spec, replay, threshold, valid, version))

    # Reasons on growing heads of the rows: all of them when that fits the budget, else the
    # largest head timed (each call builds its explainer, as each shard does).
    def with_reasons(rows_: int) -> object:
        head = valid.head(rows_)
        return scoring.score_frame(spec, model, threshold, head, version, loaded.background)

    sample = 1
    while True:
        reasons_s = timed(functools.partial(with_reasons, sample), 2 if sample == rows else 1)
        if sample == rows or reasons_s >= PROBE_S:
            break
        fits = reasons_s / sample * rows <= REASONS_BUDGET_S
        sample = rows if fits else min(rows, sample * 4)
    method = explainer_for(spec, model, loaded.background).method
    reasons_rate = sample / reasons_s
    checked = "" if pinned.verified else ", unverified"
    call = "predict_proba" if spec.task.probabilistic else "predict"
    return (
        f"| {name} v{version}{checked} | {type(model).__name__} | {rows:,} of {len(frame):,} | "
        f"{rows / screen_s:,.0f} | {bare_rate:,.0f} ({call}) | {compiled_text} | {step_rate:,.0f} | "
        f"{step_rate / bare_rate:.0%} | {own_s * 1000:.1f} ms ({own_s * bare_rate / rows:.1%}) | "
        f"{rate(reasons_rate)} ({sample:,} rows; {method}) | "
        f"{load_s:.1f} s |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = champion_benchmark_parser(__doc__)
    args = parser.parse_args(argv)
    mlflow.set_tracking_uri(args.tracking_uri)
    names = project_list(args.project)
    lines = []
    for name in names:
        path = args.data_dir / PROJECTS[name].data_file
        if not path.is_file():
            lines.append(
                f"| {name} | real data not available: {path} is absent | | | | | | | | | |"
            )
            continue
        try:
            lines.append(bench_project(name, args.data_dir))
        except scoring.ScoringError as why:
            lines.append(f"| {name} | {why} (train it first: `make run DATA_DIR=...`) |||||||||")
        print(lines[-1], flush=True)
    text = "\n".join(
        [
            "# Batch scoring: rows per second on the real data",
            "",
            f"Command: `make bench-batch DATA_DIR={args.data_dir}` against {args.tracking_uri}, "
            f"on {os.cpu_count()} cores (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); "
            f"each file with its target dropped, best of {REPEATS} timings in one process.",
            "",
            "| champion | model | valid rows | validation rows/s | sklearn model rows/s | "
            "compiled graph rows/s (vs sklearn) | score step rows/s | step / sklearn model | "
            "step's own work (of the sklearn call) | with reasons rows/s | load (verified) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *lines,
            "",
        ]
    )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "batch.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
