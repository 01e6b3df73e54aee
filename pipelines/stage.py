"""Moves a registered version along its rollout by hand, or shows where it is (`make stage`,
`make rollout-status`).

`python -m pipelines.stage --project telecom --version 7 --to shadow|canary|champion|rolled_back
[--share 0.1] [--reason "..."]`; without `--to` it prints the staged version, if any. The
registry is MLFLOW_TRACKING_URI's. Servers following `models:/<project>@champion` pick the
change up within their refresh interval (components.core.rollout, docs/operations.md).

On a cluster, `--manifest PATH` also writes the rollout as KServe's InferenceService: the champion
pinned to its version and a canary's share as `spec.canary` (`--namespace`, `--image`); apply it
with kubectl, or with `--apply` through the in-cluster API as the deploy step does.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from components.core import deploy, rollout
from components.core.projects import PROJECTS, get_spec
from components.core.rollout import RolloutError, Stage


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "someone"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", required=True, choices=sorted(PROJECTS))
    parser.add_argument("--version", help="the registered version to move (with --to)")
    parser.add_argument("--to", choices=[str(s) for s in Stage])
    parser.add_argument("--share", type=float, help="a canary's share of requests (0 to 1)")
    parser.add_argument("--reason", default="", help="recorded on the version")
    parser.add_argument(
        "--manifest", help="write the rollout's InferenceService here ('-': stdout)"
    )
    parser.add_argument("--namespace", default=deploy.Target().namespace)
    parser.add_argument("--image", default=deploy.Target().image)
    parser.add_argument("--apply", action="store_true", help="create or patch it (in-cluster)")
    decided = parser.add_mutually_exclusive_group()
    decided.add_argument("--approve", action="store_true", help="promote a version awaiting it")
    decided.add_argument("--reject", action="store_true", help="roll back a version awaiting it")
    args = parser.parse_args(argv)
    if args.approve or args.reject:
        if args.to is not None or not args.version:
            parser.error("--approve and --reject take --version and no --to")
        args.to = str(Stage.CHAMPION if args.approve else Stage.ROLLED_BACK)
        waiting = rollout.awaiting(args.project, args.version)
        verb = "approved" if args.approve else "rejected"
        args.reason = (
            f"{verb} by {_who()}"
            + (f": {args.reason}" if args.reason else "")
            + (f" (the judge: {waiting})" if waiting else "")
        )
    try:
        if args.to is not None:
            if not args.version:
                parser.error("--to needs --version")
            reason = args.reason or f"moved by hand by {_who()}"
            rollout.stage(args.project, args.version, Stage(args.to), share=args.share,
                          reason=reason)  # fmt: skip
        staged = rollout.current(args.project)
    except RolloutError as exc:
        print(f"stage: {exc}", file=sys.stderr)
        return 1
    if staged is None:
        print(f"{args.project}: no version is being rolled out; the champion answers every request")
    else:
        share = f", answering {staged.share:.0%} of the requests" if staged.share else ""
        print(f"{args.project}: version {staged.version} in {staged.stage}{share} "
              f"({staged.reason or 'no reason recorded'})")  # fmt: skip
    if args.manifest or args.apply:
        return _write_service(args.project, args.manifest, args.namespace, args.image, args.apply)
    return 0


def _write_service(project: str, path: str | None, namespace: str, image: str, apply: bool) -> int:
    try:
        target = deploy.Target(namespace=namespace, image=image)
        service = deploy.rollout_service(get_spec(project), target)
        text = deploy.to_yaml(service)
        if path == "-":
            sys.stdout.write(text)
        elif path:
            Path(path).write_text(text)
            print(f"{project}: InferenceService written to {path}")
        if apply:
            print(f"{project}: InferenceService {deploy.apply(service, deploy.in_cluster_api())}")
    except deploy.DeployError as exc:
        print(f"stage: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
