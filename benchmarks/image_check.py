"""Runs a compiled pipeline step inside the project image, as a cluster would (`make check-image`).

The step's command and arguments are taken from `pipelines/compiled/<project>.yaml` as they are.
The executor input is built by kfp.local's own helpers, so the container sees what a KFP
launcher would give it, and it writes its outputs to a folder mounted from this machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from kfp.local import executor_input_utils, placeholder_utils
from kfp.pipeline_spec import pipeline_spec_pb2

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", default="telecom")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="image-check-") as folder:
        result = run_ingest(args.project, Path(folder))
    info = result["source_info"]
    print(f"{result['image']}: compiled ingest step of {args.project} ran, {info['rows']} rows")
    print("model server:", server_help().splitlines()[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
