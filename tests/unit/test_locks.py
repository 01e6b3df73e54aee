"""The two lock files: the image's has no development tool, the same versions as the venv's, and
a hash for every file; the SBOM check names what it finds wrong."""

import re
from pathlib import Path

from benchmarks import sbom

REPO = Path(__file__).resolve().parents[2]


def test_the_runtime_lock_is_the_dev_lock_without_tools_and_every_pin_has_hashes() -> None:
    runtime = sbom.locked(REPO / "requirements-runtime.lock")
    development = sbom.locked(REPO / "requirements.lock")
    assert not set(sbom.FORBIDDEN) & set(runtime)
    assert set(sbom.FORBIDDEN) <= set(development)
    assert {n: v for n, v in runtime.items() if development.get(n) != v} == {}
    for name, pinned in (
        ("requirements-runtime.lock", runtime),
        ("requirements.lock", development),
    ):
        text = (REPO / name).read_text()
        hashed = re.findall(r"^[A-Za-z0-9_.\-]+==\S+ \\\n\s+--hash=sha256:[0-9a-f]{64}", text, re.M)
        assert len(hashed) == len(pinned) > 100, name


def test_the_sbom_check_names_tools_drift_from_the_lock_and_strays() -> None:
    lock = {"pandas": "2.3.3", "numpy": "2.2.6"}
    installed = {"pandas": "2.3.3", "numpy": "2.3.0", "pytest": "9.0.0", "pip": "25.0"}
    assert sbom.problems(installed, lock) == [
        "pytest is in the image",
        "numpy: lock 2.2.6, image 2.3.0",
        "pytest 9.0.0 is in the image but not in the lock",
    ]
    assert sbom.problems(lock, lock) == []
