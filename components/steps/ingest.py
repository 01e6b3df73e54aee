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
    """Reads a path, an http(s) URL or `synthetic[:ROWS]`, applies the cleaning rules and splits."""
    import json

    from components.core import ingest as logic
    from components.core.projects import get_spec

    spec = get_spec(project)
    frame, info = logic.load(spec, source, seed)
    parts = logic.split(spec, frame, test_size, seed)
    for artifact, part in ((train, parts.train), (test, parts.test), (current, parts.current)):
        part.to_csv(artifact.path, index=False)
        artifact.metadata.update(
            {"rows": len(part), "columns": part.shape[1], "synthetic": info.synthetic}
        )
    with open(source_info.path, "w") as handle:
        json.dump(info.to_dict() | {"stratified": parts.stratified}, handle, indent=2)
    source_info.metadata.update({"sha256": info.sha256, "rows": info.rows})
    removed = "".join(f"- {rule}: **{n}** rows removed\n" for rule, n in info.removed_rows.items())
    with open(summary.path, "w") as handle:
        handle.write(
            f"# {spec.name}: ingest\n\n{('**' + info.notice + '**') if info.notice else ''}\n\n"
            f"- source: `{info.source}`\n- sha256: `{info.sha256}`\n- rows: {info.rows}, columns: {info.columns}\n"
            f"{removed}- split: train {len(parts.train)}, test {len(parts.test)} "
            f"({'stratified' if parts.stratified else 'plain'}, seed {seed}); current batch {len(parts.current)}\n"
        )
    if info.notice:
        print(info.notice)
