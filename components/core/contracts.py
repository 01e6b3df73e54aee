"""What crosses a step boundary: one typed record per artifact, defined once.

Each record is written as JSON with its schema name and version, and read back through the same
class, so a renamed or mistyped field fails where it is read, naming the field, instead of at the
end of a run. A reader takes the current version and older ones whose fields it still finds;
anything else is refused with a `ContractError` that says what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

Scalar = str | int | float | bool | None


class ContractError(ValueError):
    """An artifact that is not the record its reader expects; the message names the field."""


class Contract(BaseModel):
    """Base of every step record: JSON with `schema` and `schema_version` beside the fields."""

    # Fields an older writer added and this version dropped are ignored, not refused.
    model_config = ConfigDict(frozen=True, extra="ignore")

    SCHEMA: ClassVar[str]
    VERSION: ClassVar[int] = 1

    def to_json(self) -> str:
        header = {"schema": self.SCHEMA, "schema_version": self.VERSION}
        return json.dumps(header | self.model_dump(mode="python"), indent=2)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def from_json(cls, text: str, where: str = "") -> Self:
        where = f" ({where})" if where else ""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ContractError(f"{cls.SCHEMA}{where} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ContractError(f"{cls.SCHEMA}{where}: expected a JSON object")
        schema = data.pop("schema", cls.SCHEMA)
        if schema != cls.SCHEMA:
            raise ContractError(f"{cls.SCHEMA}{where}: field 'schema' is {schema!r}")
        # Records written before versions were stamped carry none: version 0.
        version = data.pop("schema_version", 0)
        if not isinstance(version, int) or version > cls.VERSION:
            raise ContractError(
                f"{cls.SCHEMA}{where}: field 'schema_version' is {version!r}; this code reads "
                f"versions up to {cls.VERSION} (written by a newer release?)"
            )
        try:
            return cls.model_validate(cls.upgrade(data, version))
        except ValidationError as exc:
            problems = "; ".join(
                f"field '{'.'.join(str(p) for p in e['loc'])}': {e['msg'].lower()}"
                for e in exc.errors()
            )
            raise ContractError(
                f"{cls.SCHEMA}{where} (schema_version {version}): {problems}"
            ) from None

    @classmethod
    def read(cls, path: str | Path) -> Self:
        return cls.from_json(Path(path).read_text(), str(path))

    @classmethod
    def upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Older versions' fields as this version names them (a record that renames a field
        says so here)."""
        return data


class DataSource(BaseModel):
    """What ingest read: the source, its hash and what cleaning removed."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    source: str
    synthetic: bool
    rows: int
    columns: int
    sha256: str
    removed_rows: dict[str, int]
    """Rows each cleaning rule removed, by the rule's description."""
    notice: str
    """The SYNTHETIC label, shown on everything made from generated data; empty for real data."""


class SourceInfo(Contract, DataSource):
    """What ingest read, and how it split it."""

    SCHEMA: ClassVar[str] = "source_info"

    stratified: bool
    train_rows: int
    test_rows: int


class Selection(Contract):
    """The model the search chose, with its cross-validation figures."""

    SCHEMA: ClassVar[str] = "selection"

    candidate: str
    params: dict[str, Scalar]
    threshold: float | None
    """Decision threshold of a classifier; None for regression."""
    trials: int
    seconds: float
    notes: list[str]
    cv_mean: dict[str, float]
    """CV figures of the chosen configuration (at the chosen threshold for classifiers)."""
    cv_std: dict[str, float]


class GroupFigures(BaseModel):
    model_config = ConfigDict(frozen=True)

    column: str
    group: str
    rows: int
    figures: dict[str, float]


class EvaluationSummary(Contract):
    """Test-split figures, per group, and the gate's verdict."""

    SCHEMA: ClassVar[str] = "evaluation"
    VERSION: ClassVar[int] = 2

    rows: int
    metrics: dict[str, float]
    groups: list[GroupFigures]
    gates: list[str]
    """One line per gate: metric, value, threshold and verdict."""
    passed: bool
    intervals: dict[str, tuple[float, float]] = {}
    """95% percentile-bootstrap interval of each test figure (version 2 on)."""
    reading: str = ""
    """The figures in the business's words, e.g. how many churners the model finds."""


class ExplanationSummary(Contract):
    """Global importance: SHAP of the model's features, and of each raw input column."""

    SCHEMA: ClassVar[str] = "explanation"
    VERSION: ClassVar[int] = 3

    method: str
    base_value: float
    importance: dict[str, float]
    """Mean |SHAP| per raw input column (version 3 on; per engineered feature before), in
    `unit`, largest first."""
    input_importance: dict[str, float]
    """Per raw input column: how much the primary metric worsens when it is shuffled (held-out
    rows), largest first. What drift monitoring weighs columns by."""
    unit: str = ""
    """What the contributions are measured in, e.g. "P(churns)" or "USD"."""
    rows: int = 0
    """Test rows explained."""


class DriftSummary(Contract):
    """Data drift of a batch against a model's reference, and the verdict with its reason."""

    SCHEMA: ClassVar[str] = "drift"
    VERSION: ClassVar[int] = 2

    rows: int
    reference_rows: int
    reference: str
    """What the batch was compared with, e.g. "bankchurn v3 training sample"."""
    enough_data: bool
    drift_detected: bool
    drifted_columns: list[str]
    drift_share: float
    """Share of the input columns that drifted."""
    weighted_drift_share: float
    """Share of the total importance that the drifted columns carry."""
    important_columns: list[str]
    drifted_important_columns: list[str]
    column_scores: dict[str, float]
    column_methods: dict[str, str]
    column_drifted: dict[str, bool]
    reason: str


class Reference(Contract):
    """The record beside a model version's reference rows."""

    SCHEMA: ClassVar[str] = "reference"

    project: str
    rows: int
    """Rows in the sample."""
    training_rows: int
    """Rows of the training split it was drawn from."""
    target: str
    input_columns: list[str]
    ignored_columns: list[str]
    importance: dict[str, float]
    """Each input column's importance to the model (permutation importance, explain step)."""
    test_metrics: dict[str, float]
    threshold: float | None
    source: str
    source_sha256: str
    synthetic: bool
    seed: int
    test_size: float


class OutputFigures(BaseModel):
    """A window's outputs over every row it holds, each row weighed by 1/sample_rate: the mean
    (and, for a classifier, the share of positive decisions) with 95% intervals on the rows'
    effective count; the quantiles are those of the window's sample."""

    model_config = ConfigDict(frozen=True)

    field: str
    unit: str
    rows: int
    weighted_rows: float
    effective_rows: float
    """(sum of weights)^2 / sum of squared weights: the rows' count for an interval."""
    mean: float
    mean_interval: tuple[float, float]
    std: float
    minimum: float
    maximum: float
    positive_label: str | None = None
    positive_share: float | None = None
    positive_share_interval: tuple[float, float] | None = None
    """Wilson's 95% interval."""
    quantiles: dict[str, float] = {}


class LogMaintenance(Contract):
    """What the compact step did to the inference log."""

    SCHEMA: ClassVar[str] = "log_maintenance"

    root: str
    project: str
    hours_compacted: int
    parts_compacted: int
    rows_compacted: int
    parts_quarantined: int
    quarantined: list[str]
    hours_pruned: int
    kept_from: str
    summary: str


class RolloutCheck(BaseModel):
    """One of the judge's comparisons of the staged version with the champion."""

    model_config = ConfigDict(frozen=True)

    name: str
    champion: float
    challenger: float
    n_champion: int
    n_challenger: int
    log_lambda: float
    """log of the sequential test's statistic (0: nothing to test yet)."""
    verdict: str
    """"worse", "better" or "" (no evidence either way, or not judged)."""
    unit: str = ""

    def described(self) -> str:
        threshold = f"log-LR {self.log_lambda:.2f}"
        return (
            f"{self.name}: challenger {self.challenger:.4g}{self.unit} on {self.n_challenger:,} vs "
            f"champion {self.champion:.4g}{self.unit} on {self.n_champion:,} ({threshold}"
            f"{', ' + self.verdict if self.verdict else ''})"
        )


class RolloutVerdict(Contract):
    """One look of the rollout judge (components.core.judge): what it found and what it did."""

    SCHEMA: ClassVar[str] = "rollout_verdict"

    project: str
    registered_name: str
    time: str
    """When the judge looked (UTC, ISO 8601)."""
    version: str
    """The version being rolled out ("" when none is)."""
    stage: str
    """Its stage when the judge looked ("" when none is staged)."""
    action: str
    """hold, advance, promote, rollback, retire; "none" when nothing is staged, "skipped" when
    the run's source is not the inference log."""
    moved_to: str
    """The stage the judge moved it to ("" for none; "awaiting approval" for a held promotion)."""
    reason: str
    checks: list[RolloutCheck] = []
    challenger_requests: int = 0
    challenger_failed: int = 0
    agreement: float | None = None
    """In shadow: the share of rows whose decision (or value within 1%) matched the champion's."""


class WindowStats(Contract):
    """What the collect step read: counts over every row of the window, and what it kept."""

    SCHEMA: ClassVar[str] = "window"

    project: str
    window: str
    """Where the rows came from and which span they cover."""
    start: str
    end: str
    note: str
    """What changed the window as asked (its start moved to the log's retention), or ""."""
    rows: int
    """Rows logged in the window (or read from the file)."""
    rows_estimated: float
    """Rows served in the window: each logged row weighs 1/sample_rate."""
    rows_sampled: int
    """Rows of the sample that the drift check compares (every row when the window is small)."""
    sample_size: int
    """The sample's largest size."""
    labelled_rows: int
    rows_by_version: dict[str, int]
    sample_rates: list[float]
    parts_read: int
    parts_skipped: int
    """Parts of the log that could not be read (torn, not JSON or Parquet): skipped, counted."""
    skipped: list[str]
    """The first of them, with the reason."""
    output: OutputFigures | None
    maintenance: LogMaintenance | None = None
    """What compacting and pruning the log did just before the window was read."""


class MonitoringSummary(Contract):
    """One monitoring run: the window, drift, live quality and the verdict."""

    SCHEMA: ClassVar[str] = "monitoring"
    VERSION: ClassVar[int] = 3

    project: str
    time: str
    """When the check ran (UTC, ISO 8601)."""
    champion_version: str | None
    window: str
    """Where the rows came from and which span they cover."""
    rows: int
    """Every row of the window (version 2 on; before, the rows read whole)."""
    labelled_rows: int
    drift: DriftSummary
    """The window's sample against the champion's reference (version 3 on; before, eight of
    its fields were copied here)."""
    live_metrics: dict[str, float]
    registered_metrics: dict[str, float]
    quality_ok: bool | None
    """None when too few labelled rows to judge."""
    retrain: bool
    """The policy calls for retraining."""
    reason: str
    retrain_now: bool = False
    """The pipeline retrains: recommended, switched on, and enough labelled rows to judge it."""
    retraining: str = ""
    """Why it retrains or not, when retraining is called for."""
    rows_sampled: int = 0
    """Rows the drift check compared: the window's sample (version 2 on)."""
    live_intervals: dict[str, tuple[float, float]] = {}
    """95% interval of each live figure (version 2 on)."""
    collected: WindowStats | None = None
    """What the collect step counted (version 2 on)."""

    @classmethod
    def upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        if version < 2:  # the window was read whole: every row was compared
            data.setdefault("rows_sampled", data.get("rows", 0))
        if version < 3:  # the drift fields were copied flat; what they did not copy is unknown
            drifted = data.get("drifted_columns", [])
            data["drift"] = {
                "rows": data.get("rows_sampled", data.get("rows", 0)),
                "reference_rows": 0,
                "reference": data.pop("reference", ""),
                "enough_data": data.pop("enough_data", False),
                "drift_detected": data.pop("drift_detected", False),
                "drifted_columns": data.pop("drifted_columns", []),
                "drift_share": data.pop("drift_share", 0.0),
                "weighted_drift_share": data.pop("weighted_drift_share", 0.0),
                "important_columns": [],
                "drifted_important_columns": data.pop("drifted_important_columns", []),
                "column_scores": {},
                "column_methods": {},
                "column_drifted": dict.fromkeys(drifted, True),
                "reason": data.pop("drift_reason", ""),
            }
        return data


CHAMPION = "champion"
PROMOTIONS = ("direct", "staged")
"""How a version that beats the champion takes over: `direct` moves the champion alias to it;
`staged` puts it in shadow beside the champion, for the rollout judge to take through canary
(components.core.judge). A first champion is always direct: there is nothing to compare with."""
SYNTHETIC_TAG = "synthetic_data"
"""Run and version tag: "true" when the model learnt from the synthetic generator's data."""


def trained_on_synthetic(
    version_tags: Mapping[str, str], run_tags: Callable[[], Mapping[str, str]]
) -> bool:
    """A registered model's data kind: its version tag, else (versions registered before the
    version tag) its run's, fetched only then."""
    found = version_tags.get(SYNTHETIC_TAG)
    if found is None:
        found = run_tags().get(SYNTHETIC_TAG)
    return found == "true"


CHALLENGER = "challenger"
KFP_RUN_ID_TAG = "kfp_run_id"
"""Run and version tag: the id of the KFP run that registered it, which the run's notice looks
up (a run's name need not be unique; its id is)."""


class Registration(Contract):
    """What the register step did in the model registry."""

    SCHEMA: ClassVar[str] = "registration"

    run_id: str
    version: str
    aliases: list[str]
    champion_before: str | None
    """The champion's version before this registration (None: there was none)."""
    decision: str
    metrics: dict[str, float]
    model_file_sha256: str = ""
    """sha256 of the model file as logged in MLflow (what a server unpickles); "" for versions
    registered before it was recorded."""
    compiled_model: str = ""
    """How the version is compiled for serving, or `none: <why>` (its `compiled_model` tag)."""
    compiled_model_sha256: str = ""
    """sha256 of its compiled graph; "" when it has none."""

    @property
    def is_champion(self) -> bool:
        return CHAMPION in self.aliases


@dataclass(frozen=True)
class RunRecord:
    """Everything the steps before register said about one training run, with the run's own
    settings: what register logs and what the model card is written from."""

    source: SourceInfo
    selection: Selection
    evaluation: EvaluationSummary
    explanation: ExplanationSummary
    drift: DriftSummary
    seed: int
    test_size: float
    run_name: str
    model_sha256: str
    run_id: str = ""
    """The KFP run's id (KFP_RUN_ID_TAG); "" where no pipeline run made the record."""

    @staticmethod
    def read(
        *,
        source: str,
        selection: str,
        evaluation: str,
        explanation: str,
        drift: str,
        **settings: Any,
    ) -> RunRecord:
        """From the files the earlier steps wrote, each checked against its contract."""
        return RunRecord(
            source=SourceInfo.read(source),
            selection=Selection.read(selection),
            evaluation=EvaluationSummary.read(evaluation),
            explanation=ExplanationSummary.read(explanation),
            drift=DriftSummary.read(drift),
            **settings,
        )

    def params(self) -> dict[str, Any]:
        return {
            "source": self.source.source,
            "source_sha256": self.source.sha256,
            "rows": self.source.rows,
            "seed": self.seed,
            "test_size": self.test_size,
            "candidate": self.selection.candidate,
            "threshold": self.selection.threshold,
            # The chosen model's CV figures are taken at its own threshold; its trials' at 0.5.
            "cv_threshold": self.selection.threshold,
            "trials": self.selection.trials,
            **{f"model.{k}": v for k, v in self.selection.params.items()},
        }

    def metrics(self) -> dict[str, float]:
        """The run's figures as MLflow names them: test_*, cv_mean_*, cv_std_*, drift."""
        return (
            {f"test_{k}": v for k, v in self.evaluation.metrics.items()}
            | {f"cv_mean_{k}": v for k, v in self.selection.cv_mean.items()}
            | {f"cv_std_{k}": v for k, v in self.selection.cv_std.items()}
            | {
                "drift_share": self.drift.drift_share,
                "drifted_columns": float(len(self.drift.drifted_columns)),
            }
        )

    def tags(self) -> dict[str, str]:
        return {
            "kfp.run_name": self.run_name,
            "model_sha256": self.model_sha256,
            SYNTHETIC_TAG: str(self.source.synthetic).lower(),
            "source": self.source.source,
        }


class PinnedModel(Contract):
    """The one model version a batch is scored with, resolved once before any shard starts, and
    the digest every shard checks its model file against before unpickling it."""

    SCHEMA: ClassVar[str] = "pinned_model"

    project: str
    requested: str
    """What the run asked for, e.g. models:/NAME@champion or models:/NAME/7."""
    name: str
    version: str
    run_id: str
    uri: str
    """The version itself, models:/NAME/VERSION: what every shard loads."""
    model_file_sha256: str
    verified: bool
    """The digest is the version's registered tag; False: computed from the file at resolve
    time, with nothing to vouch for it (allowed by the run's settings)."""
    trained_on_synthetic: bool = False
    """The version learnt from the synthetic generator's data (its `synthetic_data` tag)."""


class RowScreening(Contract):
    """What the batch's row-by-row validation read, kept and set aside."""

    SCHEMA: ClassVar[str] = "row_screening"

    source: str
    source_sha256: str
    source_format: str
    rows: int
    valid_rows: int
    rejected_rows: int
    rejected_by_rule: dict[str, int]
    """Rows that broke each rule (`Violation.code`); a row breaking two rules counts in both."""
    max_rejected_share: float
    identifier_columns: list[str]
    """Identifier columns found in the source and carried through."""
    ignored_columns: list[str]
    """Columns of the source that are neither inputs nor identifiers."""


class ScoringSummary(Contract):
    """One batch scoring run: what was read, scored and set aside, by which model, and the drift
    verdict."""

    SCHEMA: ClassVar[str] = "scoring"

    project: str
    model_name: str
    model_version: str
    model_file_sha256: str
    model_verified: bool
    source: str
    source_sha256: str
    rows: int
    valid_rows: int
    rejected_rows: int
    rejected_by_rule: dict[str, int]
    scored_rows: int
    shards: int
    with_reasons: bool
    drift_gate: str
    drift_detected: bool
    drifted_columns: list[str]
    drift_reason: str
    output_columns: list[str]
    output_format: str
    score_field: str
    """The field whose distribution is compared with the reference's (probability or price)."""
    score_quantiles: dict[str, float]
    reference_score_quantiles: dict[str, float]
    """The same model's scores on its own reference rows (empty: the version has none)."""
    positive_share: float | None = None
    """Share of the scored rows labelled the positive class (classifiers)."""
    reference_positive_share: float | None = None
    """The same share on the reference rows, at the same threshold."""
    finished: str
    """When the merge finished (UTC, ISO 8601)."""


class StepFailure(Contract):
    """What a step that raised left beside its outputs (components/core/failure.py), for the
    run's notice: kfp.local tells the exit task only that the body failed."""

    SCHEMA: ClassVar[str] = "step_failure"

    summary: str
    """The exception's type and message, on one line."""
    error: str
    """The tail of the traceback, as the step's log ends."""
