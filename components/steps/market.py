from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def market(
    project: str,
    source: str,
    seed: int,
    source_info: Input[Artifact],
    run_name: str,
    report: Output[HTML],
):
    """The market in the listings ingest read: asking price by model year, mileage, condition,
    body type and brand, listings per brand, days listed by price band, and what the cleaning
    rules removed. It reads `source` again (the removed rows are not in the splits) and stops
    unless the bytes have the sha256 ingest recorded in `source_info`."""
    from components.core import market as logic
    from components.core.contracts import SourceInfo
    from components.core.projects import get_spec
    from components.core.step_io import training_provenance, write_document

    spec = get_spec(project)
    recorded = SourceInfo.read(source_info.path).sha256
    listings = logic.read_listings(spec, source, seed, expected_sha256=recorded)
    analysis = logic.analyse(spec, listings.kept)
    provenance = training_provenance(project, source_info.path, run_name)
    write_document(report, logic.report_html(spec, listings, analysis, provenance))
    print(logic.summary_line(analysis))
