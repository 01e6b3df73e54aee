"""Runs a compiled pipeline step inside the project image, as a cluster would (`make check-image`).

The step's command and arguments are taken from `pipelines/compiled/<project>.yaml` as they are.
The executor input is built by kfp.local's own helpers, so the container sees what a KFP
launcher would give it, and it writes its outputs to a folder mounted from this machine.

With a stack (`make check-image STACK=1`, after `make stack`), the image also writes an
inference log part to the stack's `s3://` store with the server's own writer and reads the
window back with monitoring's reader, beside a part this machine wrote: what a server pod and a
monitoring step do on a cluster, with the S3 client the image carries.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from kfp.local import executor_input_utils, placeholder_utils
from kfp.pipeline_spec import pipeline_spec_pb2

from benchmarks.stack import INFERENCE_LOG, Stack
from components.core import inference_log
from components.core.lineage import utc_now
from components.image import IMAGE
from pipelines.compile import load_compiled

PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
RUN = [*PODMAN, "run", "--rm", "--network", "host"]
RUN += ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


class ImageCheckError(RuntimeError):
    pass


def image_exists(image: str = IMAGE) -> bool:
    if shutil.which("podman") is None:
        return False
    found = subprocess.run([*PODMAN, "image", "exists", image], capture_output=True, check=False)
    return found.returncode == 0


def image_revision(image: str = IMAGE) -> str:
    """The commit the image was built from (its OCI revision label)."""
    found = subprocess.run(
        [*PODMAN, "image", "inspect", "--format",
         '{{index .Labels "org.opencontainers.image.revision"}}', image],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return found.stdout.strip()


def tree_revision() -> str:
    """This checkout's commit, as `make image` names it."""
    found = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--abbrev=12"],
        capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    return found.stdout.strip() or "unknown"


def step_command(
    project: str, step: str, arguments: dict[str, Any], root: Path
) -> tuple[str, list[str]]:
    """(image, full command) of one compiled step, its placeholders resolved under `root`."""
    spec, _ = load_compiled(project)
    component = pipeline_spec_pb2.ComponentSpec()
    json_format.ParseDict(spec["components"][f"comp-{step}"], component)
    container = spec["deploymentSpec"]["executors"][f"exec-{step}"]["container"]
    executor_input = executor_input_utils.construct_executor_input(
        component, arguments, str(root / step), block_input_artifact=True
    )
    command = placeholder_utils.replace_placeholders(
        container["command"] + container["args"],
        executor_input_utils.executor_input_to_dict(executor_input, component),
        f"{project}-training",
        step,
        str(root),
        "image-check",
    )
    return container["image"], command


def run_ingest(project: str, root: Path) -> dict[str, Any]:
    """The compiled `ingest` step on synthetic rows, in the image; returns its source_info."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o777)  # the image runs as an unprivileged user
    image, command = step_command(
        project,
        "ingest",
        {"project": project, "source": "synthetic:600", "seed": 42, "test_size": 0.2},
        root,
    )
    if not image_exists(image):
        raise ImageCheckError(f"image {image} not found: build it with `make image`")
    done = subprocess.run(
        [*RUN, "-v", f"{root}:{root}", "--entrypoint", command[0], image, *command[1:]],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ImageCheckError(f"ingest exited {done.returncode} in {image}:\n{done.stderr[-3000:]}")
    outputs = json.loads((root / "ingest" / "executor_output.json").read_text())
    info = json.loads((root / "ingest" / "source_info").read_text())
    return {"image": image, "executor_output": outputs, "source_info": info}


def server_help(image: str = IMAGE) -> str:
    """The model server's usage, from the image's entrypoint."""
    done = subprocess.run([*RUN, image, "--help"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ImageCheckError(f"the server in {image} did not start:\n{done.stderr[-3000:]}")
    return done.stdout


# Run inside the image: the server's writer puts rows tagged `image-<token>` into the log, and
# monitoring's reader reads the project's log back. Prints {request id: rows} as JSON.
_IN_IMAGE = """
import collections, datetime as dt, json, sys
import numpy as np
from components.core.inference_log import read_window
from serving.inference_log import Answered, InferenceLogWriter
root, project, token, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
writer = InferenceLogWriter(root, project, flush_seconds=0.1).start()
writer.submit(Answered(
    request_id=f"image-{token}", when=dt.datetime.now(dt.UTC), model_version="image-check",
    inputs={"calls": np.arange(rows, dtype=float)}, outputs={"label": np.zeros(rows)},
    rows=rows))
writer.close()
since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)  # this check's rows, not the log
window = read_window(root, project, start=since)
print(json.dumps(collections.Counter(window["request_id"])))
"""


def log_round_trip(
    stack: Stack, project: str = "telecom", rows: int = 5, image: str = IMAGE
) -> dict[str, Any]:
    """A log part written here and one written in the image, both read back on each side.

    Returns the rows per request id that the image read and that this machine read."""
    if not image_exists(image):
        raise ImageCheckError(f"image {image} not found: build it with `make image`")
    token = uuid.uuid4().hex[:12]
    here = inference_log.record(
        f"host-{token}", 0, utc_now(), project, "image-check", {"calls": 1.0}, {"label": 0}
    )
    import s3fs

    env = stack.s3_env()
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # fsspec keeps one S3 filesystem per process, bound to the endpoint it first saw
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        inference_log.write_part(INFERENCE_LOG, project, [here])
        environment = [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]
        done = subprocess.run(
            [*RUN, *environment, "--entrypoint", "python", image, "-c", _IN_IMAGE,
             INFERENCE_LOG, project, token, str(rows)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise ImageCheckError(
                f"the log round trip exited {done.returncode} in {image} against {stack.s3_url}:"
                f"\n{done.stderr[-3000:]}"
            )
        in_image = json.loads(done.stdout.strip().splitlines()[-1])
        since = utc_now() - dt.timedelta(minutes=10)
        window = inference_log.read_window(INFERENCE_LOG, project, start=since)
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        s3fs.S3FileSystem.clear_instance_cache()
    counts = window["request_id"].value_counts()
    on_host = {k: int(counts.get(k, 0)) for k in (f"host-{token}", f"image-{token}")}
    mine = {k: int(in_image.get(k, 0)) for k in on_host}
    return {"image": image, "root": INFERENCE_LOG, "token": token,
            "read_in_image": mine, "read_here": on_host}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", default="telecom")
    parser.add_argument("--stack-dir", type=Path, help="a stack `make stack` started (STACK=1)")
    args = parser.parse_args(argv)
    try:
        return _check(args)
    except ImageCheckError as exc:
        print(f"check-image: {exc}", file=sys.stderr)
        return 1


def _check(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="image-check-") as folder:
        result = run_ingest(args.project, Path(folder))
    info = result["source_info"]
    print(f"{result['image']}: compiled ingest step of {args.project} ran, {info['rows']} rows")
    print("model server:", server_help().splitlines()[0])
    if args.stack_dir is not None:
        stack = Stack(args.stack_dir)
        if stack.running("s3") is None:
            raise ImageCheckError(f"no object store runs in {args.stack_dir}: run `make stack`")
        trip = log_round_trip(stack, args.project)
        print(f"inference log on {trip['root']} ({stack.s3_url}): read in the image "
              f"{trip['read_in_image']}, read here {trip['read_here']}")  # fmt: skip
        if 0 in trip["read_in_image"].values() or 0 in trip["read_here"].values():
            raise ImageCheckError("a log part was not read back on both sides")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
