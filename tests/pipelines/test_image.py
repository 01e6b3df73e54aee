"""The project image runs the compiled steps and the model server (needs podman and `make image`)."""

from pathlib import Path

import pandas as pd
import pytest

from benchmarks.image_check import (
    image_exists,
    image_revision,
    log_round_trip,
    run_ingest,
    server_help,
    tree_revision,
)
from components.core.projects import get_spec
from components.image import IMAGE
from tests.support.stack import stack_on

pytestmark = [
    pytest.mark.image,
    pytest.mark.skipif(not image_exists(), reason=f"{IMAGE} not built here (`make image`)"),
]


def test_a_compiled_step_runs_in_the_project_image(tmp_path: Path) -> None:
    result = run_ingest("telecom", tmp_path)
    assert result["image"] == IMAGE
    assert result["source_info"]["rows"] == 600 and result["source_info"]["synthetic"]
    spec = get_spec("telecom")
    train = pd.read_csv(tmp_path / "ingest" / "train")
    test = pd.read_csv(tmp_path / "ingest" / "test")
    assert (len(train), len(test)) == (480, 120)
    assert set(spec.input_columns) | {spec.target} <= set(train.columns)


def test_the_image_entrypoint_is_the_model_server() -> None:
    usage = server_help()
    assert "--model_uri" in usage and "--model_name" in usage


def test_the_image_writes_and_reads_the_inference_log_on_the_stack(tmp_path: Path) -> None:
    built, here = image_revision(), tree_revision()
    if built != here:  # an older image may not read the log format this tree writes
        pytest.skip(f"{IMAGE} was built from {built}, this tree is {here}: `make image`")
    stack = stack_on(tmp_path / "stack", only=["s3"])
    try:
        trip = log_round_trip(stack, "telecom", rows=5)
    finally:
        stack.down()
    host, image = f"host-{trip['token']}", f"image-{trip['token']}"
    assert trip["read_in_image"] == {host: 1, image: 5}
    assert trip["read_here"] == {host: 1, image: 5}
