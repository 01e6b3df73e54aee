"""Accuracy and speed of a tree-boosting champion's shape beside others (`make bench-tree-shapes`).

A histogram-boosting champion's batch rate is bound by its trees: each row walks every tree from
root to leaf, a few nanoseconds per node whatever runs it (sklearn, ONNX Runtime). Fewer trees
score faster and larger ones cost more each; this measures what each shape scores and how fast,
side by side.

For the project's registered champion (histogram boosting) and variants of it (other shapes:
learning rate, number of trees and leaves per tree; or a categorical column as ordinal codes
instead of native set splits): on the champion's own training split, read again from the
real file (which must hash as the champion's run recorded), the primary metric in
cross-validation on the trainer's folds, the metrics on the champion's test split, the number of
trees and of categorical set splits, and rows per second of the compiled graph (as the score step
runs it, on all cores) and of the sklearn call, on the valid rows of the real file, in the same
process. The champion's row is the registered model itself; each variant is fitted here with the
champion's other hyperparameters. Writes .state/bench/tree_shapes.md and prints it.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from benchmarks.options import champion_benchmark_parser
from components.core import compiled, metrics, retraining, scoring, train
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec

OUT_DIR = Path(".state/bench")
REPEATS = 5


@dataclass(frozen=True)
class Variant:
    name: str
    params: dict[str, Any]
    """Estimator parameters that differ from the champion's."""


SHAPES = ((0.05, 1000, 63), (0.1, 500, 63), (0.05, 350, 127), (0.1, 150, 160), (0.05, 200, 255))
"""Learning rate, trees and leaves per tree: from many small trees to few large ones, and the same
learning budget in half the trees."""


def variants(estimator: Any, categorical: list[str]) -> list[Variant]:
    """The champion, each shape of SHAPES it does not already have (with its other parameters),
    and the widest categorical column as ordinal codes."""
    own = (estimator.learning_rate, estimator.max_iter, estimator.max_leaf_nodes)
    found = [
        Variant(f"the champion (learning rate {own[0]:g}, {own[1]} trees of {own[2]} leaves)", {})
    ]
    found += [
        Variant(
            f"learning rate {rate:g}, {trees} trees of {leaves} leaves",
            {"learning_rate": rate, "max_iter": trees, "max_leaf_nodes": leaves},
        )
        for rate, trees, leaves in SHAPES
        if (rate, trees, leaves) != own
    ]
    if categorical:
        widest = categorical[0]
        found.append(
            Variant(
                f"{widest} as ordinal codes",
                {"categorical_features": [c for c in categorical if c != widest]},
            )
        )
    return found


def set_splits(estimator: Any) -> int:
    return sum(
        int(np.sum(predictor.nodes["is_categorical"] & ~predictor.nodes["is_leaf"].astype(bool)))
        for (predictor,) in estimator._predictors
    )


def widest_first(estimator: Any, frame: pd.DataFrame) -> list[str]:
    """The estimator's categorical columns, the one with most values first."""
    names = estimator.categorical_features
    if names is None or isinstance(names, str):
        return []
    return sorted(names, key=lambda name: -frame[name].nunique())


def fastest(call: Callable[[], object]) -> float:
    found = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        call()
        found.append(time.perf_counter() - start)
    return min(found)


def bench_project(spec: ProjectSpec, data_dir: Path) -> list[str]:
    champion = retraining.champion_data(spec)
    source = data_dir / spec.data_file
    train_frame, test_frame, info = retraining.champion_splits(spec, champion, str(source))
    if info.sha256 != champion.sha256:
        raise SystemExit(
            f"{spec.name} v{champion.version} was trained on data with sha256 {champion.sha256}; "
            f"{source} has {info.sha256}: its splits cannot be rebuilt from it"
        )
    model = mlflow.sklearn.load_model(f"models:/{spec.name}/{champion.version}")
    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    if type(estimator).__name__ != "HistGradientBoostingRegressor":
        return [
            f"| {spec.name} | champion v{champion.version} is {type(estimator).__name__}, "
            "not histogram boosting regression: nothing to compare |||||||"
        ]
    candidate = next(
        c for c in spec.candidates if type(c.make_estimator(champion.seed)) is type(estimator)
    )
    X, y = train.split_xy(spec, train_frame)
    X_test, y_test = train.split_xy(spec, test_frame)
    engineered = model[:-1].transform(X.head(2000))
    frame, _, _ = scoring.read_table(str(source))
    valid = scoring.screen(spec, frame.drop(columns=[spec.target])).valid[spec.input_columns]
    primary = spec.primary_metric
    lines = []
    for variant in variants(estimator, widest_first(estimator, engineered)):
        params = {f"model__{k}": v for k, v in estimator.get_params().items()}
        params |= {f"model__{k}": v for k, v in variant.params.items()}
        trial = train.run_trial(spec, candidate, params, X, y, champion.seed)
        if variant.params:
            fitted = train.build_pipeline(spec, candidate, champion.seed, params).fit(X, y)
        else:
            fitted = model
        test = metrics.regression_metrics(y_test.to_numpy(), spec.task.model_output(fitted, X_test))
        compilation = compiled.compile_model(spec, fitted, test_frame, "test split")
        sklearn_s = fastest(functools.partial(spec.task.model_output, fitted, valid))
        if compilation.graph is not None:
            graph = compiled.CompiledModel(
                spec, fitted, compilation.graph, compiled.serving_threads()
            )
            graph_rate = f"{len(valid) / fastest(functools.partial(graph.output, valid)):,.0f}"
        else:
            graph_rate = f"none: {compilation.reason}"
        inner = fitted.steps[-1][1]
        lines.append(
            f"| {spec.name} | {variant.name} | {trial.cv_mean[primary]:.4f} "
            f"± {trial.cv_std[primary]:.4f} | {test[primary]:.4f} | {test['rmse']:,.0f} | "
            f"{inner.n_iter_} | {set_splits(inner):,} | {graph_rate} | "
            f"{len(valid) / sklearn_s:,.0f} |"
        )
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    args = champion_benchmark_parser(__doc__, project="carvision").parse_args(argv)
    mlflow.set_tracking_uri(args.tracking_uri)
    if args.project not in PROJECTS:
        raise SystemExit(f"--project is one project of {sorted(PROJECTS)}, got {args.project!r}")
    spec = PROJECTS[args.project]
    path = args.data_dir / spec.data_file
    if not path.is_file():
        raise SystemExit(f"the real data is not available: {path} is absent")
    lines = bench_project(spec, args.data_dir)
    text = "\n".join(
        [
            f"# {spec.name}: speed and accuracy of the champion's tree shapes",
            "",
            f"Command: `make bench-tree-shapes PROJECT={spec.name} DATA_DIR={args.data_dir}` "
            f"against {args.tracking_uri}, on {os.cpu_count()} cores; cross-validation on the "
            "champion's training split with the trainer's folds, test figures on its test "
            f"split, rates on every valid row of {spec.data_file} (best of {REPEATS}).",
            "",
            f"| project | model | CV {spec.primary_metric} (± std over folds) | "
            f"test {spec.primary_metric} | test RMSE | trees | categorical set splits | "
            "compiled graph rows/s | sklearn call rows/s |",
            "|---|---|---|---|---|---|---|---|---|",
            *lines,
            "",
        ]
    )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "tree_shapes.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
