"""What a failing step leaves for its run's notice. kfp.local hands an exit task only "the body
failed", not which step or why, and a step's log goes to the runner's terminal; so a step that
raises writes a `StepFailure` beside the file KFP reads its outputs from, and the notice reads
it from the run's folder (components/core/notice.py).

Installed by importing `components.core` (every step's body does), and only in a process that
KFP's executor CLI started (`--executor_input`). On a cluster the record stays in the pod: the
KFP UI shows the step's log there. Standard library only, so that it costs nothing to import.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from types import TracebackType

FAILURE_FILE = "step_failure.json"
ERROR_CHARS = 2000
"""How much of the traceback's tail a record keeps."""

_installed = False


def _output_folder(argv: list[str]) -> Path | None:
    """The folder of the executor's output file, from KFP's executor arguments; None when the
    arguments are not an executor's."""
    try:
        executor_input = json.loads(argv[argv.index("--executor_input") + 1])
        return Path(executor_input["outputs"]["outputFile"]).parent
    except (ValueError, IndexError, KeyError, TypeError):
        return None


SUMMARY_CHARS = 500


def summary_of(error: BaseException) -> str:
    """`Type: message` on one line (its lines joined, bounded): what a notice's text shows."""
    message = " ".join(str(error).split())
    if len(message) > SUMMARY_CHARS:
        message = message[: SUMMARY_CHARS - 3] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def record(
    folder: Path,
    kind: type[BaseException],
    error: BaseException,
    trace: TracebackType | None,
) -> None:
    """Writes the failure's record into the step's output folder."""
    from components.core.contracts import StepFailure

    text = "".join(traceback.format_exception(kind, error, trace))
    StepFailure(summary=summary_of(error), error=text[-ERROR_CHARS:]).write(folder / FAILURE_FILE)


def install(argv: list[str] | None = None) -> None:
    """In a KFP executor process, records an uncaught exception before Python prints it."""
    global _installed
    folder = _output_folder(sys.argv if argv is None else argv)
    if folder is None or _installed:
        return
    _installed = True
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        try:
            record(folder, kind, error, trace)
        except (OSError, ImportError):
            pass  # the step's own traceback, printed next, is what matters
        finally:
            previous(kind, error, trace)

    sys.excepthook = hook
