"""The compiled serving path: a champion's fitted pipeline as one ONNX graph, run by ONNX Runtime.

The sklearn pipeline spends most of a single-row prediction in per-call pandas and Python loops
(one Python call per tree of a histogram booster, a joblib dispatch per forest), not in its
arithmetic. At registration the pipeline after the project's feature step (preprocessing and
estimator, calibration included) is converted to ONNX with skl2onnx, plus two converters of our
own where skl2onnx has none that is exact:

- HistGradientBoostingRegressor, native categorical splits included, as one `TreeEnsemble`
  (ai.onnx.ml opset 5) in float64, following sklearn's rules for blanks and unseen categories;
- CatBoostClassifier, through CatBoost's own ONNX export.

The feature step stays Python: it is the project's own code (`transform_columns`, numpy) run from
the fitted pipeline the server loads anyway for explanations. The decision threshold is applied
outside the graph. The graph is kept only if it reproduces the sklearn pipeline on every row of
the held-out test split (probabilities within 1e-6 and the same decisions, prices within a
cent); otherwise the reason is recorded and the sklearn pipeline serves.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.core.derived import ColumnFeatures, columns_of
from components.core.spec import ProjectSpec

logger = logging.getLogger(__name__)

FOLDER = "compiled"
"""Folder of the MLflow model directory holding the graph and its record."""
GRAPH_FILE = "model.onnx"
RECORD_FILE = "compiled.json"
RUNTIME = "onnxruntime"
PROBABILITY_TOLERANCE = 1e-6
PRICE_TOLERANCE = 0.01
"""One cent, in the target's unit (USD)."""
ML_DOMAIN = "ai.onnx.ml"
PENDING_DOMAIN = "project.pending"
"""Where a TreeEnsemble v5 node waits while skl2onnx, which knows ai.onnx.ml 3 at most, builds."""
TAG_CHARS = 4900
"""At most this much of a reason goes into a version tag (MLflow takes 5,000 characters)."""
BLANK_TEXT = ""
"""What a blank text value is fed to the graph as (ONNX string tensors have no NaN)."""


class NotCompiled(Exception):
    """The pipeline has no exact compiled form; the message says why."""


@dataclass(frozen=True)
class Agreement:
    """How the compiled graph's outputs compared with the sklearn pipeline's on a frame."""

    rows: int
    max_abs_difference: float
    tolerance: float
    decisions_differ: int = 0
    """Rows whose decision at the threshold differs (binary tasks)."""

    @property
    def matches(self) -> bool:
        return self.max_abs_difference <= self.tolerance and self.decisions_differ == 0

    def text(self) -> str:
        extra = f", {self.decisions_differ} decisions differ" if self.decisions_differ else ""
        return (
            f"max |difference| {self.max_abs_difference:.3g} over {self.rows:,} rows "
            f"(tolerance {self.tolerance:g}){extra}"
        )


@dataclass(frozen=True)
class CompiledRecord:
    """`compiled/compiled.json`: what the graph is and how it was checked."""

    runtime: str
    input_dtype: str
    graph_sha256: str
    verified_on: str
    agreement: dict[str, Any]
    versions: dict[str, str] = field(default_factory=dict)


def parts(model: Any) -> tuple[Any, ColumnFeatures, list[tuple[str, Any]]]:
    """(the pipeline, its feature step, the steps after it that predict) of a project model: a
    pipeline, maybe inside a FixedThresholdClassifier. Resamplers do nothing at prediction."""
    pipeline = getattr(model, "estimator_", model)
    steps = getattr(pipeline, "steps", None)
    if not steps or steps[0][0] != "features" or not isinstance(steps[0][1], ColumnFeatures):
        raise NotCompiled(
            f"{type(pipeline).__name__} is not a project pipeline starting with its feature step"
        )
    rest = [(name, step) for name, step in steps[1:] if not hasattr(step, "fit_resample")]
    return pipeline, steps[0][1], rest


def threshold_of(model: Any) -> float:
    """The decision threshold of a binary model: FixedThresholdClassifier stores the tuned one;
    a bare classifier predicts at 0.5."""
    threshold = getattr(model, "threshold", 0.5)
    return 0.5 if threshold == "auto" else float(threshold)


# --- converters skl2onnx lacks ------------------------------------------------------------------


def _bits(words: np.ndarray) -> list[int]:
    """The categories a sklearn bitset (8 x uint32) holds."""
    return [c for c in range(32 * len(words)) if (int(words[c // 32]) >> (c % 32)) & 1]


def _hist_gradient_boosting_attributes(estimator: Any) -> tuple[dict[str, Any], float]:
    """The attributes of one ai.onnx.ml v5 `TreeEnsemble` computing the raw sum of a fitted
    single-output HistGradientBoosting's trees, and its baseline.

    sklearn's rules (`_predict_one_from_raw_data`): a blank goes where `missing_go_to_left` says;
    a categorical value goes left when in the split's bitset, right when a known category, and
    like a blank otherwise (negative or unseen). A set-membership node tests the side blanks do
    not take, so everything outside that set follows the blanks.
    """
    from onnx import numpy_helper

    if len(estimator._predictors[0]) != 1:
        raise NotCompiled("only single-output histogram boosting is converted")
    known, feature_map = estimator._bin_mapper.make_known_categories_bitsets()
    column, category, categories_of = _internal_encoding(estimator)
    modes: list[int] = []
    features: list[int] = []
    splits: list[float] = []
    true_ids: list[int] = []
    true_leaf: list[int] = []
    false_ids: list[int] = []
    false_leaf: list[int] = []
    missing_true: list[int] = []
    members: list[float] = []
    leaf_weights: list[float] = []
    roots: list[int] = []
    for (predictor,) in estimator._predictors:
        nodes = predictor.nodes
        first = len(modes)
        index: dict[int, tuple[bool, int]] = {}
        interior = first
        for i, node in enumerate(nodes):
            if node["is_leaf"]:
                index[i] = (True, len(leaf_weights))
                leaf_weights.append(float(node["value"]))
            else:
                index[i] = (False, interior)
                interior += 1
        if nodes[0]["is_leaf"]:  # a one-leaf tree: a split whose sides both reach the leaf
            modes.append(0)
            features.append(0)
            splits.append(0.0)
            for ids, leafs in ((true_ids, true_leaf), (false_ids, false_leaf)):
                ids.append(index[0][1])
                leafs.append(1)
            missing_true.append(0)
            roots.append(first)
            continue
        roots.append(first)
        for node in nodes:
            if node["is_leaf"]:
                continue
            left, right = index[int(node["left"])], index[int(node["right"])]
            blanks_left = bool(node["missing_go_to_left"])
            inner = int(node["feature_idx"])
            features.append(column(inner))
            if node["is_categorical"]:
                left_set = category(
                    inner, _bits(predictor.raw_left_cat_bitsets[node["bitset_idx"]])
                )
                known_codes = _bits(known[feature_map[inner]])
                right_set = category(inner, known_codes) - left_set
                # Blanks and negative codes arrive as NaN (see the converter); when every code
                # is a known category nothing else follows the blanks, so the smaller side is
                # tested (a smaller graph).
                every_code_known = len(known_codes) == categories_of(inner)
                test_left = (len(left_set) <= len(right_set) and every_code_known) or (
                    not blanks_left
                )
                tested = sorted(left_set if test_left else right_set)
                on_true, on_false = (left, right) if test_left else (right, left)
                modes.append(6)  # BRANCH_MEMBER
                splits.append(0.0)
                members.extend([*map(float, tested), float("nan")])
                missing_true.append(int(blanks_left == test_left))
            else:
                on_true, on_false = left, right
                modes.append(0)  # BRANCH_LEQ
                splits.append(float(node["num_threshold"]))
                missing_true.append(int(blanks_left))
            true_leaf.append(int(on_true[0]))
            true_ids.append(on_true[1])
            false_leaf.append(int(on_false[0]))
            false_ids.append(on_false[1])
    attributes: dict[str, Any] = {
        "n_targets": 1,
        "aggregate_function": 1,  # SUM
        "post_transform": 0,
        "tree_roots": roots,
        "nodes_featureids": features,
        "nodes_modes": numpy_helper.from_array(np.asarray(modes, dtype=np.uint8)),
        "nodes_splits": numpy_helper.from_array(np.asarray(splits, dtype=np.float64)),
        "nodes_truenodeids": true_ids,
        "nodes_trueleafs": true_leaf,
        "nodes_falsenodeids": false_ids,
        "nodes_falseleafs": false_leaf,
        "nodes_missing_value_tracks_true": missing_true,
        "leaf_targetids": [0] * len(leaf_weights),
        "leaf_weights": numpy_helper.from_array(np.asarray(leaf_weights, dtype=np.float64)),
    }
    if members:
        attributes["membership_values"] = numpy_helper.from_array(
            np.asarray(members, dtype=np.float64)
        )
    baseline = float(np.asarray(estimator._baseline_prediction).ravel()[0])
    return attributes, baseline


def _internal_encoding(
    estimator: Any,
) -> tuple[Callable[[int], int], Callable[[int, list[int]], set[float]], Callable[[int], int]]:
    """(input column of an internal feature index, input values of its internal category codes,
    how many codes it has).

    With categorical features, the booster re-encodes its input first (`_preprocessor`): the
    categorical columns, each as codes 0..k-1 of its sorted values, then the numeric ones.
    """
    encoding = getattr(estimator, "_preprocessor", None)
    if encoding is None:
        return int, lambda _, codes: {float(c) for c in codes}, lambda _: -1
    mask = np.asarray(estimator.is_categorical_, dtype=bool)
    order = [*np.flatnonzero(mask), *np.flatnonzero(~mask)]
    values = encoding.named_transformers_["encoder"].categories_

    def category(inner: int, codes: list[int]) -> set[float]:
        found = {float(values[inner][c]) for c in codes if c < len(values[inner])}
        return {v for v in found if not np.isnan(v)}

    def count(inner: int) -> int:
        return int(np.sum(~np.isnan(np.asarray(values[inner], dtype=float))))

    return lambda inner: int(order[inner]), category, count


def _convert_hist_gradient_boosting(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto

    estimator = operator.raw_operator
    if estimator.loss != "squared_error":
        raise NotCompiled(f"histogram boosting with loss {estimator.loss!r} is not converted")
    attributes, baseline = _hist_gradient_boosting_attributes(estimator)
    as_double = scope.get_unique_variable_name("as_double")
    container.add_node("Cast", [operator.inputs[0].full_name], [as_double], to=TensorProto.DOUBLE)
    mask = getattr(estimator, "is_categorical_", None)
    if mask is not None and np.any(mask):
        # sklearn reads a negative category code as a blank
        negative, is_code = (scope.get_unique_variable_name(n) for n in ("neg", "cat"))
        zero, nan, codes = (scope.get_unique_variable_name(n) for n in ("zero", "nan", "codes"))
        container.add_initializer(zero, TensorProto.DOUBLE, [], [0.0])
        container.add_initializer(nan, TensorProto.DOUBLE, [], [float("nan")])
        container.add_initializer(codes, TensorProto.BOOL, [1, len(mask)], [bool(m) for m in mask])
        container.add_node("Less", [as_double, zero], [negative])
        container.add_node("And", [negative, codes], [is_code])
        cleaned = scope.get_unique_variable_name("codes_cleaned")
        container.add_node("Where", [is_code, nan, as_double], [cleaned])
        as_double = cleaned
    raw = scope.get_unique_variable_name("tree_sum")
    # skl2onnx targets ai.onnx.ml 3 at most: `_to_graph` moves this node to ai.onnx.ml 5
    container.add_node(
        "TreeEnsemble", [as_double], [raw], op_domain=PENDING_DOMAIN, op_version=1, **attributes
    )
    base = scope.get_unique_variable_name("baseline")
    container.add_initializer(base, TensorProto.DOUBLE, [1], [baseline])
    container.add_node("Add", [raw, base], [operator.outputs[0].full_name])


def _hist_gradient_boosting_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import DoubleTensorType

    operator.outputs[0].type = DoubleTensorType([None, 1])


def _convert_imputer(scope: Any, operator: Any, container: Any) -> None:
    """A numeric SimpleImputer as IsNaN and Where, in the input's precision (ai.onnx.ml's
    Imputer is float32 only in ONNX Runtime); text imputers keep skl2onnx's converter."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer

    imputer = operator.raw_operator
    if isinstance(operator.inputs[0].type, StringTensorType):
        convert_sklearn_imputer(scope, operator, container)
        return
    double = isinstance(operator.inputs[0].type, DoubleTensorType)
    statistics = np.asarray(imputer.statistics_, dtype=np.float64)
    if not np.isnan(imputer.missing_values):
        raise NotCompiled(f"an imputer of {imputer.missing_values!r} values is not converted")
    fill = scope.get_unique_variable_name("fill")
    container.add_initializer(
        fill,
        TensorProto.DOUBLE if double else TensorProto.FLOAT,
        [1, len(statistics)],
        statistics.tolist(),
    )
    blank = scope.get_unique_variable_name("blank")
    source = operator.inputs[0].full_name
    container.add_node("IsNaN", [source], [blank])
    container.add_node("Where", [blank, fill, source], [operator.outputs[0].full_name])


_registered = False


def _register_converters() -> None:
    """Adds the converters above to skl2onnx's registry (once per process)."""
    global _registered
    if _registered:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer

    update_registered_converter(
        HistGradientBoostingRegressor,
        "ProjectHistGradientBoostingRegressor",
        _hist_gradient_boosting_shape,
        _convert_hist_gradient_boosting,
    )
    update_registered_converter(
        SimpleImputer,
        "SklearnImputer",
        calculate_sklearn_imputer_output_shapes,
        _convert_imputer,
    )
    _registered = True


# --- building and checking the graph -----------------------------------------------------------


def convertible(rest: list[tuple[str, Any]]) -> Any:
    """A copy of the predicting steps skl2onnx converts exactly: the imputer of text columns
    reads a blank as the empty string (the feed writes blanks so), not as NaN."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    steps = copy.deepcopy(rest)
    for _, step in steps:
        for inner in _walk(step):
            if isinstance(inner, SimpleImputer) and isinstance(inner.fill_value, str):
                inner.missing_values = BLANK_TEXT
    return Pipeline(steps)


def _walk(obj: Any) -> list[Any]:
    found = [obj]
    for _, inner, _columns in getattr(obj, "transformers_", []):
        found.extend(_walk(inner))
    for _, inner in getattr(obj, "steps", []):
        found.extend(_walk(inner))
    return found


def _graph_inputs(engineered: dict[str, np.ndarray], names: Sequence[str], dtype: str) -> list[Any]:
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    number = DoubleTensorType if dtype == "float64" else FloatTensorType
    return [
        (name, StringTensorType([None, 1]) if _is_text(engineered[name]) else number([None, 1]))
        for name in names
    ]


def _is_text(values: np.ndarray) -> bool:
    return not np.issubdtype(np.asarray(values).dtype, np.number)


def _to_graph(spec: ProjectSpec, model: Any, sample: pd.DataFrame, dtype: str) -> bytes:
    """The ONNX graph of `model` after its feature step, with inputs of `dtype`."""
    from skl2onnx import to_onnx

    _register_converters()
    _, features, rest = parts(model)
    engineered = features.transform_columns(columns_of(sample, features.input_columns))
    names = list(rest[0][1].feature_names_in_)
    pipeline = convertible(rest[:-1] if _native_tail(rest) else rest)
    options: dict[Any, Any] = {}
    if spec.task.probabilistic and not _native_tail(rest):
        options = {id(pipeline.steps[-1][1]): {"zipmap": False}}
    graph = to_onnx(
        pipeline,
        initial_types=_graph_inputs(engineered, names, dtype),
        target_opset={"": 18, "ai.onnx.ml": 3},
        options=options,
    )
    pending = [node for node in graph.graph.node if node.domain == PENDING_DOMAIN]
    if pending:
        # the domain's other operators (encoders, imputers) read the same in version 5
        for node in pending:
            node.domain = ML_DOMAIN
        kept = [o for o in graph.opset_import if o.domain not in (PENDING_DOMAIN, ML_DOMAIN)]
        del graph.opset_import[:]
        graph.opset_import.extend(kept)
        graph.opset_import.add(domain=ML_DOMAIN, version=5)
    return bytes(graph.SerializeToString())


def _native_tail(rest: list[tuple[str, Any]]) -> Any:
    """The estimator that evaluates itself after the graph, or None: CatBoost's own compiled
    evaluator scores a batch about ten times faster than ONNX Runtime runs its exported trees
    (bankchurn here), so the graph stops at its input."""
    estimator = rest[-1][1]
    return estimator if type(estimator).__module__.startswith("catboost") else None


class CompiledModel:
    """Runs the graph: the feature step in numpy, then ONNX Runtime. `output(frame)` is
    the task's output of the sklearn pipeline (P(positive) or the price), computed faster."""

    def __init__(self, spec: ProjectSpec, model: Any, graph: bytes, threads: int = 1) -> None:
        import onnxruntime

        _, self.features, rest = parts(model)
        self.spec = spec
        self.tail = _native_tail(rest)
        options = onnxruntime.SessionOptions()
        # a graph that only encodes the inputs of a tail: threads cost more than they share
        options.intra_op_num_threads = 1 if self.tail is not None else threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            graph, options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [(i.name, i.type) for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        # probabilities of a classifier, the value of a regressor, or the tail's input matrix
        self.output_name = outputs[-1]
        self.graph = graph
        self.graph_sha256 = hashlib.sha256(graph).hexdigest()
        self.threshold = threshold_of(model)
        self.threads = threads
        self._model = model

    def with_threads(self, threads: int) -> CompiledModel:
        """The same graph, run on `threads` cores."""
        return CompiledModel(self.spec, self._model, self.graph, threads)

    def feed(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        engineered = self.features.transform_columns(columns_of(frame, self.features.input_columns))
        feed = {}
        for name, kind in self.inputs:
            values = np.asarray(engineered[name])
            if kind == "tensor(string)":
                text = values.astype(object)
                blank = pd.isna(text)
                if blank.any():
                    text = np.where(blank, BLANK_TEXT, text)
                feed[name] = text.astype(str).reshape(-1, 1)
            else:
                dtype = np.float64 if kind == "tensor(double)" else np.float32
                feed[name] = values.astype(dtype).reshape(-1, 1)
        return feed

    def output(self, frame: pd.DataFrame) -> np.ndarray:
        result = np.asarray(self.session.run([self.output_name], self.feed(frame))[0])
        if self.tail is not None:
            # column-major, as pandas hands a frame over: CatBoost reads it about 7x faster
            result = np.asarray(
                self.tail.predict_proba(np.asfortranarray(result), thread_count=self.threads)
            )
        if not self.spec.task.probabilistic:
            return result.reshape(-1).astype(np.float64)
        probability = result[:, 1].astype(np.float64)
        # Within the tolerance of the threshold the graph's rounding may take the other side (a
        # forest's vote share 0.25 read as 0.2499999702 against a threshold of 0.25): those rows,
        # rare but real, are answered by the pipeline itself, so decisions are always its own.
        near = np.abs(probability - self.threshold) <= PROBABILITY_TOLERANCE
        if near.any():
            probability[near] = self.spec.task.model_output(self._model, frame[near])
        return probability


def agreement(
    spec: ProjectSpec, model: Any, compiled: CompiledModel, frame: pd.DataFrame
) -> Agreement:
    expected = spec.task.model_output(model, frame)
    found = compiled.output(frame)
    difference = float(np.max(np.abs(found - expected))) if len(frame) else 0.0
    if not np.all(np.isfinite(found)):
        difference = float("inf")
    if spec.task.probabilistic:
        threshold = threshold_of(model)
        differ = int(np.sum((found >= threshold) != (expected >= threshold)))
        return Agreement(len(frame), difference, PROBABILITY_TOLERANCE, differ)
    return Agreement(len(frame), difference, PRICE_TOLERANCE)


@dataclass
class Compilation:
    """What `compile_model` found: the graph and its record, or why there is none."""

    graph: bytes | None
    record: CompiledRecord | None
    reason: str
    tried: list[str] = field(default_factory=list)

    @property
    def tag(self) -> str:
        """The version's `compiled_model` tag: how it is compiled, or `none: <why>`."""
        text = self.reason if self.graph is not None else f"none: {self.reason}"
        return text[:TAG_CHARS]

    @property
    def graph_sha256(self) -> str:
        return self.record.graph_sha256 if self.record is not None else ""


def compile_model(
    spec: ProjectSpec,
    model: Any,
    check: pd.DataFrame,
    checked_on: str,
    dtypes: Sequence[str] = ("float64", "float32"),
) -> Compilation:
    """The graph of `model` that reproduces it on every row of `check`, trying float64 inputs
    first (exact trees) and float32 (the precision sklearn's own trees compare in) next."""
    tried: list[str] = []
    for dtype in dtypes:
        try:
            graph = _to_graph(spec, model, check.head(5), dtype)
            found = agreement(spec, model, CompiledModel(spec, model, graph), check)
        except NotCompiled as exc:
            return Compilation(None, None, str(exc), [f"{dtype}: {exc}"])
        except Exception as exc:  # a converter or the runtime refused this form: try the next
            tried.append(f"{dtype}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            continue
        if not found.matches:
            tried.append(f"{dtype}: {found.text()}")
            continue
        record = CompiledRecord(
            runtime=RUNTIME,
            input_dtype=dtype,
            graph_sha256=hashlib.sha256(graph).hexdigest(),
            verified_on=checked_on,
            agreement={**asdict(found), "summary": found.text()},
            versions=_versions(),
        )
        return Compilation(graph, record, f"{RUNTIME}, {dtype} inputs: {found.text()}", tried)
    return Compilation(None, None, "no exact graph: " + "; ".join(tried), tried)


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("onnx", "onnxruntime", "skl2onnx")}


def write(compilation: Compilation, folder: Path) -> Path:
    """Writes the graph and its record into `folder` (created)."""
    assert compilation.graph is not None and compilation.record is not None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / GRAPH_FILE).write_bytes(compilation.graph)
    (folder / RECORD_FILE).write_text(json.dumps(asdict(compilation.record), indent=2) + "\n")
    return folder


def read(model_dir: Path) -> tuple[bytes, CompiledRecord] | None:
    """The graph and record in an MLflow model directory, or None when it has none."""
    folder = model_dir / FOLDER
    if not (folder / GRAPH_FILE).is_file():
        return None
    record = CompiledRecord(**json.loads((folder / RECORD_FILE).read_text()))
    return (folder / GRAPH_FILE).read_bytes(), record


def serving_threads() -> int:
    """ONNX Runtime threads for a batch: the cores this process may use."""
    return max(1, len(os.sched_getaffinity(0)))
