"""Gives registered champions that predate the compiled serving path their ONNX graph.

`python -m pipelines.compile_champions [--project P|all] [--source PATH] [--allow-unverified]`
(`make compile-champions`). For each champion: its own test split is read again from the source
its run recorded (or `--source`, which must hash the same), the verified model is loaded, and the
register step's own `log_compiled` converts it, checks it on every test row and logs the graph
and its tags on the version, or tags why there is none. A version that already says how it is
compiled is left as it is.
"""

from __future__ import annotations

import argparse
import os
import sys

from components.core import loading, registry, retraining
from components.core.projects import PROJECTS, get_spec
from components.core.spec import ProjectSpec
from pipelines.local import default_tracking_uri


def compile_champion(spec: ProjectSpec, source: str = "", allow_unverified: bool = False) -> str:
    import mlflow

    project = spec.name
    champion = retraining.champion_data(spec)
    version = mlflow.MlflowClient().get_model_version(spec.name, champion.version)
    done = (version.tags or {}).get(registry.COMPILED_TAG)
    if done:
        return f"{project} v{champion.version}: already recorded: {done}"
    _, test, info = retraining.champion_splits(spec, champion, source)
    if info.sha256 != champion.sha256:
        raise retraining.RetrainingError(
            f"{project} v{champion.version}: {info.source} has sha256 {info.sha256}, but the "
            f"champion was trained on data with sha256 {champion.sha256}: its test split "
            "cannot be rebuilt from it"
        )
    uri = f"models:/{spec.name}/{champion.version}"
    loaded = loading.load(
        spec, uri, verification=loading.Verification(require=not allow_unverified)
    )
    model_id = str(version.source).removeprefix("models:/")
    found = registry.log_compiled(spec, loaded.model, model_id, champion.version, test)
    verdict = "compiled" if found.graph is not None else "not compiled"
    return f"{project} v{champion.version}: {verdict}: {found.reason}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="all", choices=["all", *PROJECTS])
    parser.add_argument("--source", default="", help="the champion's data file, if moved")
    parser.add_argument("--tracking-uri", default=default_tracking_uri())
    parser.add_argument(
        "--allow-unverified",
        action="store_true",
        help="load a version whose model file has no digest tag (registered before tagging)",
    )
    args = parser.parse_args(argv)
    os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    projects = list(PROJECTS) if args.project == "all" else [args.project]
    failed = 0
    for project in projects:
        try:
            done = compile_champion(get_spec(project), args.source, args.allow_unverified)
            print(done, flush=True)
        except (retraining.RetrainingError, loading.ModelLoadError) as exc:
            print(f"{project}: FAILED: {exc}", file=sys.stderr, flush=True)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
