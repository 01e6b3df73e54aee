"""Compiles each project's pipeline to KFP IR YAML in pipelines/compiled/ (checked in; CI
regenerates and compares)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml
from kfp import compiler

from pipelines import batch_scoring, monitoring, training

COMPILED_DIR = Path(__file__).parent / "compiled"


KINDS = {
    "training": training.PIPELINES,
    "monitoring": monitoring.PIPELINES,
    batch_scoring.KIND: batch_scoring.PIPELINES,
}
"""Each kind of pipeline, by project. A training pipeline compiles to `<project>.yaml`, any other
kind to `<project>-<kind>.yaml`."""


def compiled_name(project: str, kind: str = "training") -> str:
    return f"{project}.yaml" if kind == "training" else f"{project}-{kind}.yaml"


def compiled_path(project: str, kind: str = "training") -> Path:
    return COMPILED_DIR / compiled_name(project, kind)


def load_compiled(project: str, kind: str = "training") -> tuple[dict[str, Any], dict[str, Any]]:
    """(pipeline spec, Kubernetes platform spec) of a compiled pipeline: kfp-kubernetes writes
    its bindings as a second YAML document."""
    documents = [d for d in yaml.safe_load_all(compiled_path(project, kind).read_text()) if d]
    platform = documents[1] if len(documents) > 1 else {}
    return documents[0], platform


def compile_all(out_dir: Path = COMPILED_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, pipelines in KINDS.items():
        for project, pipeline in pipelines.items():
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
