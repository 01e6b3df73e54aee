from kfp import dsl
from kfp.dsl import Artifact, Dataset, Markdown, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(
    project: str,
    source: str,
    seed: int,
    test_size: float,
    train: Output[Dataset],
    test: Output[Dataset],
    current: Output[Dataset],
    source_info: Output[Artifact],
    summary: Output[Markdown],
):
    """Reads a path, an http(s) URL or `synthetic[:ROWS]`, applies the cleaning rules and splits.
    `current` is the test split without its target, standing for unlabelled traffic (validate
    checks it as such); `summary` says what was read, removed and split for a reader of the run
    in the KFP UI, and no later step reads it (register reads the same facts in `source_info`)."""
    from pathlib import Path

    from components.core import ingest as logic
    from components.core.projects import get_spec

    spec = get_spec(project)
    parts, info = logic.ingest(spec, source, seed, test_size)
    for artifact, part in ((train, parts.train), (test, parts.test), (current, parts.current)):
        part.to_csv(artifact.path, index=False)
        artifact.metadata.update(
            {"rows": len(part), "columns": part.shape[1], "synthetic": info.synthetic}
        )
    info.write(source_info.path)
    source_info.metadata.update({"sha256": info.sha256, "rows": info.rows})
    Path(summary.path).write_text(logic.summary_markdown(spec, info, seed, len(parts.current)))
    if info.notice:
        print(info.notice)
