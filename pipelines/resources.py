"""What each pipeline task asks for and may use, and which tasks retry: one table, keyed by the
step's display name, applied to every task of the training, monitoring and batch scoring
pipelines (the monitoring pipeline's retraining branch reuses the training steps' figures).

The figures come from `make bench-cost DATA_DIR=../shared/data` of 2026-11-30 12:39 UTC, and
carvision's again at 19:37 with its v2 champion (.state/bench/cost.md; docs/finops.md quotes
it): one run of each pipeline per project on the real files, every step in its own process, its
CPU-seconds, wall time, most cores used in any second and max RSS. For each step, over the three
projects:

- memory request: the largest max RSS, rounded up to a multiple of 128 MiB;
- memory limit: 1.5x the largest max RSS, rounded up to a multiple of 128 MiB (the headroom for
  data somewhat larger than the real files; past it the step is killed, not slowed);
- CPU request: the highest mean cores (CPU-seconds / wall seconds), rounded to the nearest half
  core: CPU is compressible, a step that wants a little more than its request runs a little
  slower;
- CPU limit: the most cores used in any second, less 0.02 (the 1-s samples are read in clock
  ticks of 10 ms), rounded up to a whole core. The machine had 2 cores: train and explain used
  both, and would use more where there are more.

The steps whose work grows with the traffic or the batch (compact-log, collect, check,
validate-rows, drift-check, split, score, merge) stream it, so their memory does not grow with
the rows; they were also measured at production volume by `make bench-scale` (telecom windows
of 1M, 3M and 10M logged rows, bankchurn batches of 1M, 3M and 10M rows; .state/bench/scale.md,
quoted in docs/monitoring.md and docs/batch.md). For them the memory request is the larger of
the two rules' and the limit the larger of: the rule above on the real files, and 1.25x the
largest max RSS at volume rounded up to 128 MiB (the headroom is for the allocator and the
model, not for more rows: 10M rows take within a few per cent of the memory 1M take). collect's
DuckDB is capped at 64 MiB (`engine_mb`): its labels join spills past it at no cost in time,
where the default 160 MiB let its memory grow with the window's labels up to the cap.

Retries: a step that talks to the network (a source URL, MLflow, the Kubernetes API, the
Pushgateway) is retried RETRIES times, BACKOFF then BACKOFF_FACTOR times longer each time; the
others fail the same way on every try (a gate, a schema violation) and are not retried. Local
runs (kfp.local, which honours retries) run a copy without them: there, nothing is remote and a
failing step fails the same way on every try (`for_local_run`).
`make bench-cost` again, then this table, when the steps or the data change.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp.dsl import PipelineTask
from kfp.dsl import pipeline_task as kfp_pipeline_task

ENGINE_MEMORY_ENV = "MLOPS_ENGINE_MEMORY_MB"
"""components.core.engine.MEMORY_ENV (this module imports no step code)."""
RETRIES = 2
BACKOFF = "5s"
BACKOFF_FACTOR = 2.0
BACKOFF_MAX = "60s"


@dataclass(frozen=True)
class _Sized:
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    network: bool = False
    """Reads a URL or talks to MLflow, the Kubernetes API or the Pushgateway: retried."""
    engine_mb: int | None = None
    """The step's DuckDB memory cap in MiB (components.core.engine.MEMORY_ENV; past it DuckDB
    spills to disk), when it differs from the engine's default."""


# Per step: largest max RSS MiB (project), highest mean cores, most cores in any second.
STEPS: dict[str, _Sized] = {
    # -- training (also the monitoring pipeline's retraining branch)
    # 229 (carvision), 0.98, 1.00
    "ingest": _Sized("1", "1", "256Mi", "384Mi", network=True),
    # 209 (carvision), 0.99, 0.99
    "validate": _Sized("1", "1", "256Mi", "384Mi"),
    # 240 (carvision), 1.06, 1.11
    "features": _Sized("1", "2", "256Mi", "384Mi"),
    # 312 (carvision), 1.74 (carvision v2, 2026-11-30 19:37), 2.01: the search uses every core
    "train": _Sized("1500m", "2", "384Mi", "512Mi"),
    # 288 (bankchurn), 1.02, 1.22
    "evaluate": _Sized("1", "2", "384Mi", "512Mi"),
    # 442 (carvision), 1.39 (carvision v2, 2026-11-30 19:37), 1.99: carvision's permutation SHAP
    # on both cores
    "explain": _Sized("1500m", "2", "512Mi", "768Mi"),
    # 459 (carvision), 1.00, 1.10
    "drift": _Sized("1", "2", "512Mi", "768Mi", network=True),
    # 468 (carvision), 0.87, 1.05
    "register": _Sized("1", "2", "512Mi", "768Mi", network=True),
    # 209 (carvision), 1.04, 1.10
    "deploy": _Sized("1", "2", "256Mi", "384Mi", network=True),
    # 270 (carvision), 0.75, 0.99
    "market": _Sized("1", "1", "384Mi", "512Mi", network=True),
    # -- monitoring; "at volume": make bench-scale 2026-12-06 23:31 UTC, the largest of its
    # telecom windows of 1M, 3M and 10M logged rows (max RSS MiB, mean cores, peak cores)
    # at volume 353 (10M, first run), 1.02, 1.11
    "compact-log": _Sized("1", "2", "384Mi", "512Mi", network=True),
    # 230 (carvision), 0.98, 1.00; at volume 684 (3M), 1.29, 1.47
    "collect": _Sized("1500m", "2", "768Mi", "896Mi", network=True, engine_mb=64),
    # 501 (carvision), 0.97, 1.00; at volume 704 (10M), 1.24, 2.00
    "check": _Sized("1", "2", "768Mi", "896Mi", network=True),
    # 200 (all three), 0.97, 0.99; at volume 236, 1.04, 1.10
    "publish": _Sized("1", "2", "256Mi", "384Mi", network=True),
    # Not measured: it reads the log since the staged version's stage began, as collect reads
    # a window, and the registry; sized as collect.
    "rollout": _Sized("1500m", "2", "768Mi", "896Mi", network=True),
    # Not measured (it runs only when a check calls for retraining): it re-reads the champion's
    # data as ingest does and reads MLflow as check does; sized as check.
    "prepare-retraining": _Sized("1", "2", "768Mi", "896Mi", network=True),
    # -- batch scoring; "at volume": make bench-scale 2026-12-06 23:31 UTC, the largest of its
    # bankchurn batches of 1M, 3M and 10M rows, reasons off
    # 317 (carvision, telecom), 0.99, 1.05; at volume 320, 1.02, 1.11
    "resolve": _Sized("1", "2", "384Mi", "512Mi", network=True),
    # 282 (carvision), 1.04, 1.10; at volume 364 (10M), 1.02, 1.11
    "validate-rows": _Sized("1", "2", "384Mi", "512Mi", network=True),
    # 493 (carvision), 1.00, 1.38; at volume 573 (1M), 1.08, 1.63
    "drift-check": _Sized("1", "2", "640Mi", "768Mi", network=True),
    # 296 (carvision), 0.99, 1.02; at volume 239, 1.04, 1.10
    "split": _Sized("1", "2", "384Mi", "512Mi"),
    # 493 (bankchurn, 10,000 rows with reasons), 0.99, 1.06; at volume 659 (a shard of 1M rows,
    # 3M), 1.04, 1.15
    "score": _Sized("1", "2", "768Mi", "896Mi", network=True),
    # 465 (carvision), 0.98, 1.00; at volume 524 (10M), 1.18, 1.97
    "merge": _Sized("1", "2", "640Mi", "768Mi", network=True),
    # -- every pipeline's exit task: not in make bench-cost's runs. Measured alone (2026-12-07),
    # the registry read against SQLite and the post: 256 MiB max RSS, one core. It retries its
    # own post: a second try of the task would post the notice again.
    "notify": _Sized("1", "1", "256Mi", "384Mi"),
}

# kfp.local runs the steps as local processes and says, once per task, that requests and limits
# mean nothing there: true, and nothing a local run can act on.
warnings.filterwarnings(
    "ignore",
    message=r"Task '[^']*': settings \[('(cpu|memory)_(request|limit)'(, )?)+\] have no effect",
)


class _CallerNames:
    """What kfp 2.17's PipelineTask needs of `inspect`: `stack()[1][3]`, the name of the method
    that set a resource, for its error message. `inspect.stack()` reads the source file of every
    frame to get it, which cost about 5 s per pipeline built (a minute to compile them all); the
    frames alone give the same name."""

    @staticmethod
    def stack(context: int = 1) -> list[tuple[Any, None, None, str]]:
        frame = sys._getframe(1)
        frames = []
        while frame is not None:
            frames.append((frame, None, None, frame.f_code.co_name))
            frame = frame.f_back  # type: ignore[assignment]
        return frames


if getattr(kfp_pipeline_task, "inspect", None) is not None:
    kfp_pipeline_task.inspect = _CallerNames


def sized(task: PipelineTask, step: str) -> PipelineTask:
    """`task` named `step`, with the step's requests and limits, and its retries if it talks to
    the network."""
    figures = STEPS[step]
    task.set_display_name(step)
    task.set_cpu_request(figures.cpu_request).set_cpu_limit(figures.cpu_limit)
    task.set_memory_request(figures.memory_request).set_memory_limit(figures.memory_limit)
    if figures.engine_mb is not None:
        task.set_env_variable(ENGINE_MEMORY_ENV, str(figures.engine_mb))
    if figures.network:
        task.set_retry(
            num_retries=RETRIES,
            backoff_duration=BACKOFF,
            backoff_factor=BACKOFF_FACTOR,
            backoff_max_duration=BACKOFF_MAX,
        )
    return task


STEP_CODE = Path(__file__).resolve().parents[1] / "components"
SOURCE_DIGEST_ENV = "MLOPS_SOURCE_SHA256"


def source_digest(root: Path | None = None) -> str:
    """sha256 over the path and bytes of every Python file under root (STEP_CODE: the code the
    steps run)."""
    root = root or STEP_CODE
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.cache
def for_local_run(pipeline: Any) -> Any:
    """A copy of a compiled-graph pipeline for kfp.local, without retry policies: on one machine
    MLflow is a file and a source a path, so a retry only delays the step's error (by 15 s of
    back-off and two more runs of the step). The cluster runs the compiled pipelines, retries
    and all.

    Every step's environment also carries the digest of the step code (SOURCE_DIGEST_ENV):
    kfp.local's cache key covers a step's inputs, command and environment but not the modules
    it imports, so without it a step whose code changed (a project's candidates, say) would be
    served from the cache. On a cluster the image tag, the package version, plays that part."""
    found = copy.deepcopy(pipeline)
    spec = found.component_spec.implementation.graph
    dags = [spec.root.dag, *(c.dag for c in spec.components.values() if c.HasField("dag"))]
    for dag in dags:
        for task in dag.tasks.values():
            task.ClearField("retry_policy")
    code = {"name": SOURCE_DIGEST_ENV, "value": source_digest()}
    for executor in spec.deployment_spec["executors"].values():
        container = executor["container"]
        others = [dict(e) for e in container["env"]] if "env" in container else []
        container["env"] = [*others, code]
    return found


def cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("1", "1500m") in cores."""
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory quantity in Mi or Gi, in MiB."""
    found = re.fullmatch(r"([0-9.]+)(Mi|Gi)", quantity)
    if found is None:
        raise ValueError(f"{quantity!r}: expected a number of Mi or Gi")
    return float(found[1]) * (1024 if found[2] == "Gi" else 1)
