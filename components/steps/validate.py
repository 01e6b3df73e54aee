from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def validate(
    project: str,
    train: Input[Dataset],
    test: Input[Dataset],
    current: Input[Dataset],
    report: Output[Markdown],
):
    """Stops the run, naming each column and rule broken, when any split breaks the schema.
    `report`, the checks each split passed, is for a reader of the run in the KFP UI; no later
    step reads it."""
    import pandas as pd

    from components.core.projects import get_spec
    from components.core.validate import validate as check

    spec = get_spec(project)
    parts = [("train", train, True), ("test", test, True), ("current", current, False)]
    sections = [
        check(spec, pd.read_csv(a.path), name, with_target).to_markdown(name)
        for name, a, with_target in parts
    ]
    with open(report.path, "w") as handle:
        handle.write(f"# {spec.name}: validation passed\n\n" + "\n".join(sections))
