"""Screenshots in headless Chromium: each champion's reports as MLflow holds them, or each tab of
the CarVision dashboard running against the champion's predictor.

    python -m benchmarks.screenshots [--reports evaluation,explanation] [--out docs/images]
    python -m benchmarks.screenshots --app --data ../shared/data/vehicles_us.csv [--allow-unverified-model]

Reads the tracking store `make run` wrote (MLFLOW_TRACKING_URI, else the local SQLite store), so
the pictures in docs/ are of the registered champions, version stamped in their headers. With
`--app` it starts the predictor (`models:/carvision@champion`) and the dashboard on free local
ports, opens each tab by its `?tab=` link over Chromium's DevTools protocol, waits until the page
has finished running, and captures the whole page; the estimator tab after its form is sent.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow

from components.core.contracts import CHAMPION
from components.core.projects import PROJECTS
from pipelines.local import default_tracking_uri

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run")
REPO = Path(__file__).resolve().parents[1]
APP = REPO / "apps" / "carvision" / "app.py"
APP_TABS = ("overview", "market", "model", "estimator")
APP_PROJECT = "carvision"


def champion_report(project: str, report: str, folder: Path) -> Path:
    version = mlflow.MlflowClient().get_model_version_by_alias(project, CHAMPION)
    local = mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path=f"reports/{report}.html", dst_path=str(folder)
    )
    return Path(local)


def browser() -> str:
    found = shutil.which("chromium")
    if found is None:
        raise SystemExit("chromium is not installed (Debian package `chromium`)")
    return found


def shoot(page: Path, out: Path, width: int = 1100, height: int = 2900) -> None:
    subprocess.run(
        [
            browser(),
            *FLAGS,
            f"--window-size={width},{height}",
            f"--screenshot={out}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )


def app_command(python: str, port: int, address: str = "127.0.0.1") -> list[str]:
    """`streamlit run` of the CarVision dashboard, headless, as `make app` runs it."""
    return [
        python, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port),
        "--server.address", address,
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip


# --- Chromium over its DevTools protocol ------------------------------------------------------


class Page:
    """One headless Chromium tab: navigate, run JavaScript, wait, capture."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.calls = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=120))
            if message.get("id") == self.calls:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float, settle: float = 1.5) -> None:
        """Until `expression` has been true for `settle` seconds (the page stopped changing)."""
        deadline = time.monotonic() + timeout
        since = None
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                since = since or time.monotonic()
                if time.monotonic() - since >= settle:
                    return
            else:
                since = None
            time.sleep(0.25)
        raise TimeoutError(f"not within {timeout:g} s: {expression}")

    def resize(self, width: int, height: int) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def capture(self, out: Path, width: int, height: int) -> None:
        self.resize(width, height)
        time.sleep(1.0)  # the layout follows the new size
        shot = self.call("Page.captureScreenshot", format="png")
        out.write_bytes(base64.b64decode(shot["data"]))


@contextmanager
def chromium_page(width: int, height: int) -> Iterator[Page]:
    from websockets.sync.client import connect

    from tests.support.servers import free_port

    port = free_port()
    process = subprocess.Popen(
        [
            *(browser(), *FLAGS, f"--remote-debugging-port={port}"),
            *(f"--window-size={width},{height}", "about:blank"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                    targets = [t for t in json.load(r) if t.get("type") == "page"]
                if targets:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("chromium's DevTools did not open")
            time.sleep(0.2)
        with connect(targets[0]["webSocketDebuggerUrl"], max_size=None) as socket:
            yield Page(socket)
    finally:
        process.terminate()
        process.wait(timeout=30)


SETTLED = (
    "document.querySelectorAll('[role=tab]').length === 4"
    " && !document.querySelector('[data-testid=stStatusWidgetRunningIcon]')"
    " && !document.querySelector('[data-stale=true]')"
    " && [...document.images].every(i => i.complete)"
)
ESTIMATED = "[...document.querySelectorAll('[data-testid=stMetricLabel]')].some(m => m.innerText.includes('Estimated price'))"
SUBMIT = "[...document.querySelectorAll('button')].find(b => b.innerText.includes('Estimate the price')).click()"
PAGE_HEIGHT = "document.querySelector('[data-testid=stMain]').scrollHeight"


def shoot_app(url: str, out_dir: Path, width: int = 1400) -> list[Path]:
    """Each tab of the dashboard at `url`, opened by its link, as one whole-page picture."""
    written = []
    with chromium_page(width, 1000) as page:
        page.call("Page.enable")
        for tab in APP_TABS:
            page.resize(width, 1000)
            page.call("Page.navigate", url=f"{url}/?tab={tab}")
            page.wait_for(SETTLED, timeout=300)
            if tab == "estimator":
                page.evaluate(SUBMIT)
                page.wait_for(f"({ESTIMATED}) && {SETTLED}", timeout=120)
            height = int(page.evaluate(PAGE_HEIGHT)) + 80
            target = (out_dir / f"{APP_PROJECT}-app-{tab}.png").resolve()
            page.capture(target, width, height)
            written.append(target)
    return written


def app_screenshots(data: str, out_dir: Path, allow_unverified: bool) -> list[Path]:
    """The predictor on the champion and the dashboard beside it, then every tab."""
    from apps.carvision.settings import DATA_ENV, PREDICTOR_ENV, TRACKING_ENV
    from tests.support.servers import free_port, launch, start

    tracking = default_tracking_uri()
    with tempfile.TemporaryDirectory() as folder:
        logs = Path(folder)
        predictor = launch(
            APP_PROJECT,
            f"models:/{APP_PROJECT}@{CHAMPION}",
            logs / "predictor.log",
            env={TRACKING_ENV: tracking},
            extra_args=["--allow-unverified-model"] if allow_unverified else [],
        )
        port = free_port()
        env = {TRACKING_ENV: tracking, DATA_ENV: data, PREDICTOR_ENV: predictor.url}
        dashboard = start(
            "dashboard", app_command(sys.executable, port), logs / "app.log", port, env
        )
        try:
            predictor.wait_ready(600)
            dashboard.wait_ready(120, path="/_stcore/health")
            return shoot_app(dashboard.url, out_dir)
        finally:
            dashboard.stop()
            predictor.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reports", default="evaluation")
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--projects", default=",".join(sorted(PROJECTS)))
    parser.add_argument("--app", action="store_true", help="the dashboard's tabs instead")
    parser.add_argument("--data", help="the listings the dashboard reads (with --app)")
    parser.add_argument(
        "--allow-unverified-model",
        action="store_true",
        help="serve a champion registered without its model file's sha256 (with --app)",
    )
    args = parser.parse_args(argv)
    mlflow.set_tracking_uri(default_tracking_uri())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.app:
        if not args.data:
            parser.error("--app needs --data, the listings file or URL")
        for path in app_screenshots(args.data, out, args.allow_unverified_model):
            print(f"dashboard: {path}")
        return
    with tempfile.TemporaryDirectory() as folder:
        for project in args.projects.split(","):
            for report in args.reports.split(","):
                page = champion_report(project, report, Path(folder) / project)
                target = (out / f"{report}-{project}.png").resolve()
                shoot(page, target)
                print(f"{project} {report}: {target}")


if __name__ == "__main__":
    main()
