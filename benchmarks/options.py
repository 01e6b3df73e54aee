"""The command line every benchmark of the registered champions starts from."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.local import default_tracking_uri
from tests.support.data import real_data_dir


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=real_data_dir(),
        help="folder with the real files (default: DATA_DIR, else ../shared/data: %(default)s)",
    )


def champion_benchmark_parser(
    doc: str | None, project: str = "all", prog: str | None = None
) -> argparse.ArgumentParser:
    """`--data-dir` (the real files), `--project` and `--tracking-uri` (the registry whose
    champions are measured), with the module's docstring as its help."""
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_data_dir(parser)
    parser.add_argument(
        "--project", default=project, help="all, or project names with commas (%(default)s)"
    )
    parser.add_argument("--tracking-uri", default=default_tracking_uri())
    return parser
