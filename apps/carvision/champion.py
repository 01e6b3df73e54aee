"""The champion as the registry records it: its version, how it was chosen, and its test figures
with their intervals and per-group errors (the evaluation record its run logged)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from components.core.contracts import CHAMPION, SYNTHETIC_TAG, ContractError, EvaluationSummary
from components.core.evaluate import Evaluation, figures_table, group_gaps, small_group
from components.core.spec import ProjectSpec

TEST_PREFIX = "test_"


class NoChampion(LookupError):
    """The registry has no champion for the project; the message says what it has."""


class RegistryUnavailable(RuntimeError):
    """The registry could not be read; the message says where and why."""


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    run_id: str
    registered: str
    decision: str
    synthetic: bool
    source: str
    metrics: dict[str, float]
    """Test-split figures, as the run logged them (`test_<metric>`)."""
    evaluation: EvaluationSummary | None
    """The run's evaluation record; None for a version registered before runs logged it."""

    def figures(self) -> pd.DataFrame:
        """Metric, test figure, 95% interval, gate and meaning: the evaluation report's table."""
        record = self.evaluation
        metrics = record.metrics if record else self.metrics
        groups = record.groups if record else []
        return figures_table(
            Evaluation(metrics, groups, record.rows if record else 0),
            dict(record.intervals) if record else {},
            record.gates if record else [],
        )

    def groups(self, spec: ProjectSpec) -> pd.DataFrame:
        """Error per group of the spec's group columns (condition, type), small groups marked."""
        if self.evaluation is None:
            return pd.DataFrame()
        return pd.DataFrame(
            [
                {
                    "column": g.column,
                    "group": g.group,
                    "test rows": g.rows,
                    **g.figures,
                    "note": "too small to judge" if small_group(spec, g) else "",
                }
                for g in self.evaluation.groups
            ]
        )

    def gaps(self, spec: ProjectSpec) -> list[str]:
        return group_gaps(spec, self.evaluation.groups) if self.evaluation else []


def champion(spec: ProjectSpec, tracking_uri: str) -> Champion:
    """`models:/<project>@champion` and its run, read from the registry at `tracking_uri`."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not tracking_uri:
        # MLflow's default would make a new, empty store in the working directory.
        raise RegistryUnavailable("MLFLOW_TRACKING_URI is not set: no registry to read")
    where = tracking_uri
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        version = client.get_model_version_by_alias(spec.name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise NoChampion(
                f"no models:/{spec.name}@{CHAMPION} in {where}: train and register one "
                "(make run) first"
            ) from None
        raise RegistryUnavailable(f"cannot read the registry at {where}: {exc.message}") from None
    run_id = str(version.run_id)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise RegistryUnavailable(
            f"{spec.name} v{version.version}: its run {run_id} cannot be read: {exc.message}"
        ) from None
    tags = version.tags or {}
    return Champion(
        name=spec.name,
        version=str(version.version),
        run_id=run_id,
        registered=datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        decision=tags.get("decision", ""),
        synthetic=tags.get(SYNTHETIC_TAG, "false") == "true",
        source=run.data.params.get("source", tags.get("source", "")),
        metrics={
            k.removeprefix(TEST_PREFIX): float(v)
            for k, v in run.data.metrics.items()
            if k.startswith(TEST_PREFIX)
        },
        evaluation=_evaluation_record(client, run_id),
    )


def _evaluation_record(client: object, run_id: str) -> EvaluationSummary | None:
    """The run's logged evaluation record, or None when the run has none."""
    from mlflow.exceptions import MlflowException

    # Imported here: the registry module brings MLflow, which the page's first paint can skip.
    from components.core.registry import EVALUATION_RECORD

    with tempfile.TemporaryDirectory() as folder:
        try:
            local = client.download_artifacts(run_id, EVALUATION_RECORD, folder)  # type: ignore[attr-defined]
        except (MlflowException, OSError):
            return None
        try:
            return EvaluationSummary.read(Path(local))
        except ContractError:
            return None
