"""Compiles each project's pipeline to KFP IR YAML in pipelines/compiled/ (checked in; CI
regenerates and compares)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from kfp import compiler

from pipelines.kinds import BATCH_SCORING, KINDS, MONITORING, TRAINING

COMPILED_DIR = Path(__file__).parent / "compiled"


def _pipelines_of(kind: str) -> Mapping[str, Any]:
    """The pipelines of a kind, by project. Imported here, not above: building them takes
    seconds, and submitting or scheduling reads only the compiled files."""
    from pipelines import batch_scoring, monitoring, training

    return {
        TRAINING: training.PIPELINES,
        MONITORING: monitoring.PIPELINES,
        BATCH_SCORING: batch_scoring.PIPELINES,
    }[kind]


def compiled_name(project: str, kind: str = TRAINING) -> str:
    return f"{project}.yaml" if kind == TRAINING else f"{project}-{kind}.yaml"


def compiled_path(project: str, kind: str = TRAINING) -> Path:
    return COMPILED_DIR / compiled_name(project, kind)


def load_compiled(project: str, kind: str = TRAINING) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pipeline spec, Kubernetes platform spec) of a compiled pipeline: kfp-kubernetes writes
    its bindings as a second YAML document."""
    documents = [d for d in yaml.safe_load_all(compiled_path(project, kind).read_text()) if d]
    platform = documents[1] if len(documents) > 1 else {}
    return documents[0], platform


EXIT_HANDLER = "exit-handler-1"
"""The root task that holds a compiled pipeline's body; the other is its exit task, `notify`."""


def body_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The DAG of a compiled pipeline's body: the tasks inside its exit handler."""
    handler = spec["root"]["dag"]["tasks"][EXIT_HANDLER]
    return dict(spec["components"][handler["componentRef"]["name"]]["dag"])


def compile_all(out_dir: Path = COMPILED_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        for project, pipeline in _pipelines_of(kind).items():
            path = out_dir / compiled_name(project, kind)
            compiler.Compiler().compile(pipeline, str(path))
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=COMPILED_DIR)
    for path in compile_all(parser.parse_args().out_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
