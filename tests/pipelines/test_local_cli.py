"""`python -m pipelines.local` as `make run` calls it: several pipelines side by side, each in its
own process, sharing one fresh SQLite MLflow store."""

import re
from pathlib import Path

import pytest

from components.core import model_card
from components.core.spec import ProjectSpec
from pipelines.local import Progress, project_list
from tests.support.browser import rendered_dom

REPO = Path(__file__).resolve().parents[2]


def test_project_list_accepts_all_or_names_and_names_what_it_rejects() -> None:
    assert project_list("all") == ["bankchurn", "carvision", "telecom"]
    assert project_list("telecom, bankchurn,telecom") == ["telecom", "bankchurn"]
    with pytest.raises(Exception, match="unknown project churn"):
        project_list("churn,telecom")


def test_a_log_handler_left_on_the_progress_stream_writes_nothing_once_its_log_is_closed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kfp.local's log handler keeps the stream it found during a run: records logged after the
    run (an HTTP client's, by a benchmark that goes on) must not fail on the closed log file."""
    import io
    import logging

    terminal = io.StringIO()
    logger = logging.getLogger("tests.progress")
    logger.propagate = False
    with (tmp_path / "run.log").open("w") as log:
        handler = logging.StreamHandler(Progress(terminal, log, live=False))
        logger.addHandler(handler)
        logger.warning("Executing task 'train'")
    try:
        logger.warning("Task 'train' finished with status SUCCESS")
    finally:
        logger.removeHandler(handler)
    assert "Logging error" not in capsys.readouterr().err
    assert (tmp_path / "run.log").read_text() == "Executing task 'train'\n"
    assert "train" in terminal.getvalue() and "SUCCESS" in terminal.getvalue()


def printed_paths(stdout: str, project: str) -> dict[str, list[Path]]:
    """The report and card paths `make run` printed in a project's summary."""
    block = stdout.split(f"== {project}: OK", 1)[1].split("\n== ", 1)[0]
    found: dict[str, list[Path]] = {}
    label = ""
    for line in block.splitlines():
        match = re.match(r"^   (\w+)? +(/\S+)$", line)
        if match:
            label = match.group(1) or label
            found.setdefault(label, []).append(Path(match.group(2)))
    return found


def assert_reports_render_with_provenance(spec: ProjectSpec, stdout: str, real: bool) -> None:
    """Every printed report opens in Chromium as a rendered page with its title, badge and
    provenance; the card has every section, with intervals."""
    paths = printed_paths(stdout, spec.name)
    assert len(paths["reports"]) == 3
    for path in paths["reports"]:
        assert path.suffix == ".html", path
        dom = rendered_dom(path)
        assert re.search(rf"<title>{re.escape(spec.title)} \({spec.name}\): ", dom), path
        assert "<pre" not in dom[:2000], f"{path} was shown as text"
        header = dom.split("data-provenance", 1)[1].split("</header>", 1)[0]
        assert ("REAL DATA" if real else "SYNTHETIC DATA") in header
        for field in ("data", "model", "model-version", "run", "created", "code"):
            assert f'data-field="{field}"' in header, (path, field)
        assert f"{spec.name}-training" in header
    [card] = paths["card"]
    assert card.suffix == ".md"
    text = card.read_text()
    headings = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert headings == list(model_card.SECTIONS)
    assert re.search(rf"\| {spec.primary_metric} \| [\d.]+ \| [\d.]+ to [\d.]+ \|", text)
