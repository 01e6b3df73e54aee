"""The project image runs the compiled steps and the model server (needs podman and `make image`)."""

from pathlib import Path

import pandas as pd
import pytest

from benchmarks.image_check import image_exists, run_ingest, server_help
from components.core.projects import get_spec
from components.image import IMAGE

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
