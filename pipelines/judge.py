"""The rollout judge from the command line (`make judge`): one look, or one every `--every`
seconds, at the version being rolled out, acted on in the registry.

`python -m pipelines.judge --project telecom [--log-root ROOT] [--labels CSV]
[--approval automatic|required] [--every SECONDS]`. The log is the one the servers write
($MLOPS_INFERENCE_LOG, else .state/inference); the labels file joins it on request id and row,
as a monitoring run's does. Every verdict is printed and recorded on the version
(`rollout_verdict`); a rollback, an advance to canary, a promotion or a retirement moves the
version (components.core.rollout). With `--approval required` a promotion waits for
`make approve` instead. The judge's policy and its stated error rates: components/core/judge.py
and docs/operations.md, "Safe rollout".
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from components.core import judge
from components.core.judge import APPROVALS, Action
from components.core.projects import PROJECTS, get_spec
from components.core.rollout import RolloutError
from pipelines.monitor import DEFAULT_LOG_ROOT

ENDED = {Action.PROMOTE, Action.ROLLBACK, Action.RETIRE}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", required=True, choices=sorted(PROJECTS))
    parser.add_argument(
        "--log-root", default=os.environ.get("MLOPS_INFERENCE_LOG") or str(DEFAULT_LOG_ROOT)
    )
    parser.add_argument("--labels", default="", help="CSV of request_id, row and the target")
    parser.add_argument("--approval", choices=APPROVALS, default="automatic")
    parser.add_argument("--every", type=float, default=0.0, help="seconds between looks (0: one)")
    parser.add_argument(
        "--registered-name", default="", help="the registered model (default: the project)"
    )
    args = parser.parse_args(argv)
    if args.every < 0:
        parser.error("--every is 0 (one look) or a number of seconds")
    spec = get_spec(args.project)
    while True:
        try:
            verdict = judge.review(spec, args.log_root, args.labels, approval=args.approval,
                                   registered_name=args.registered_name)  # fmt: skip
        except (RolloutError, ValueError) as exc:
            print(f"judge: {exc}", file=sys.stderr)
            return 1
        if verdict is None:
            print(f"{args.project}: no version is being rolled out")
            return 0
        print(f"{args.project} {verdict.stage}: {verdict.action}: {verdict.reason}", flush=True)
        if not args.every or verdict.action in ENDED:
            return 0
        time.sleep(args.every)


if __name__ == "__main__":
    raise SystemExit(main())
