"""Headless Chromium (Debian package `chromium`): what a person's browser makes of a file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmarks.screenshots import FLAGS
from tests.support.observability import require


def chromium() -> str:
    return require("chromium", "Debian package `chromium`; .ci/run installs it")


def rendered_dom(path: Path, timeout: float = 60) -> str:
    """The DOM Chromium builds from the file: a page rendered as HTML, or, for a file it does not
    read as HTML, its text wrapped in a <pre>."""
    done = subprocess.run(
        [chromium(), *FLAGS, "--dump-dom", path.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return done.stdout
