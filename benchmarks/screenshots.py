"""Screenshots of each champion's reports, as MLflow holds them, in headless Chromium.

    python -m benchmarks.screenshots [--reports evaluation,explanation] [--out docs/images]

Reads the tracking store `make run` wrote (MLFLOW_TRACKING_URI, else the local SQLite store), so
the pictures in docs/ are of the registered champions, version stamped in their headers.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import mlflow

from components.core.contracts import CHAMPION
from components.core.projects import PROJECTS
from pipelines.local import default_tracking_uri

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run")


def champion_report(project: str, report: str, folder: Path) -> Path:
    version = mlflow.MlflowClient().get_model_version_by_alias(project, CHAMPION)
    local = mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path=f"reports/{report}.html", dst_path=str(folder)
    )
    return Path(local)


def shoot(page: Path, out: Path, width: int = 1100, height: int = 2900) -> None:
    browser = shutil.which("chromium")
    if browser is None:
        raise SystemExit("chromium is not installed (Debian package `chromium`)")
    subprocess.run(
        [browser, *FLAGS, f"--window-size={width},{height}", f"--screenshot={out}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", default="evaluation")
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--projects", default=",".join(sorted(PROJECTS)))
    args = parser.parse_args(argv)
    mlflow.set_tracking_uri(default_tracking_uri())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        for project in args.projects.split(","):
            for report in args.reports.split(","):
                page = champion_report(project, report, Path(folder) / project)
                target = (out / f"{report}-{project}.png").resolve()
                shoot(page, target)
                print(f"{project} {report}: {target}")


if __name__ == "__main__":
    main()
