"""The market analysis (components/core/market.py) on small synthetic listings, and its place in
the compiled training pipelines: carvision's alone, after validate, read by register.

No `from __future__ import annotations` here: KFP reads a pipeline's annotations as types."""

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from components.core import ingest, market
from components.core.contracts import DataSource
from components.core.lineage import Provenance
from components.core.projects import PROJECTS
from pipelines.compile import body_of, load_compiled
from pipelines.training import MARKET_STEP

SPEC = PROJECTS["carvision"]
SOURCE = "synthetic:2000"


@pytest.fixture(scope="module")
def listings() -> market.Listings:
    return market.read_listings(SPEC, SOURCE, seed=3)


def test_the_listings_are_split_by_the_cleaning_rules_exactly_as_ingest_splits_them(
    listings: market.Listings,
) -> None:
    kept, info = ingest.load(SPEC, SOURCE, seed=3)
    assert listings.sha256 == info.sha256 and listings.synthetic
    assert listings.removed_by_rule == info.removed_rows
    assert len(listings.kept) == len(kept) == info.rows
    assert listings.loaded == 2000 == len(kept) + sum(info.removed_rows.values())
    # the rows the rule refuses, the synthetic 1 USD placeholders among them
    raw = SPEC.make_synthetic(2000, 3)
    [rule] = SPEC.cleaning_rules
    refused = raw.loc[~rule.apply(raw)].reset_index(drop=True)
    pd.testing.assert_frame_equal(listings.removed, refused, check_dtype=False)
    assert (listings.removed[market.PRICE] == 1).sum() > 0
    assert listings.kept[market.BRAND].tolist() == kept["model"].str.split().str[0].tolist()


def test_other_bytes_than_ingest_read_are_refused_naming_both_digests(tmp_path: Path) -> None:
    path = tmp_path / "vehicles_us.csv"
    SPEC.make_synthetic(300, 1).to_csv(path, index=False)
    expected = "0" * 64
    with pytest.raises(market.MarketError, match=f"expected {expected}") as raised:
        market.read_listings(SPEC, str(path), expected_sha256=expected)
    assert market.read_listings(SPEC, str(path)).sha256 in str(raised.value)
    broken = tmp_path / "broken.csv"
    SPEC.make_synthetic(50, 1).drop(columns=["days_listed"]).to_csv(broken, index=False)
    with pytest.raises(market.MarketError, match=r"needs the columns \['days_listed'\]"):
        market.read_listings(SPEC, str(broken))


def test_the_analysis_counts_every_listing_once_per_view(listings: market.Listings) -> None:
    found = market.analyse(SPEC, listings.kept)
    rows = len(listings.kept)
    assert found.listings == rows
    for table in (found.by_mileage, found.by_condition, found.by_type, found.by_brand):
        assert table["listings"].sum() == rows
    assert found.days_listed["listings"].sum() == rows
    assert found.by_year["listings"].sum() + found.unknown_year <= rows
    assert (found.by_year["listings"] >= market.MIN_YEAR_LISTINGS).all()
    # conditions worst to best, as the spec lists them; bands in their own order
    conditions = list(SPEC.column("condition").categories or ())
    assert found.by_condition["condition"].tolist() == [
        c for c in conditions if c in set(listings.kept["condition"])
    ]
    assert found.days_listed["price band (USD)"].iloc[0] == "under 5k"
    assert found.by_mileage["mileage (miles)"].iloc[-1] == market.UNKNOWN
    ford = listings.kept.loc[listings.kept[market.BRAND] == "ford", market.PRICE]
    [row] = found.by_brand.loc[found.by_brand[market.BRAND] == "ford"].to_dict("records")
    assert row["listings"] == len(ford) and row["median price"] == ford.median()


def test_filters_narrow_the_listings_and_an_empty_choice_is_said(
    listings: market.Listings,
) -> None:
    kept = listings.kept
    chosen = market.filter_listings(kept, ["ford", "bmw"], ["pickup", "SUV"], (2010, 2015))
    assert len(chosen) > 0
    assert set(chosen[market.BRAND]) <= {"ford", "bmw"}
    assert set(chosen[market.BODY]) <= {"pickup", "SUV"}
    assert chosen[market.YEAR].between(2010, 2015).all()
    assert len(market.filter_listings(kept)) == len(kept)
    with pytest.raises(market.MarketError, match="no listings"):
        market.analyse(SPEC, market.filter_listings(kept, ["no-such-brand"]))


def test_comparables_take_the_closest_criteria_that_leave_enough_listings() -> None:
    rows = [("bmw x5", 2011, 140_000 + 1000 * i, 9000 + 100 * i) for i in range(6)]
    rows += [("bmw x5", 2005, 200_000, 4000)] * 3 + [("ford f-150", 2011, 140_000, 20_000)]
    frame = pd.DataFrame(rows, columns=[market.MODEL, market.YEAR, market.MILEAGE, market.PRICE])
    near = market.comparables(frame, {"model": " BMW X5", "model_year": 2012, "odometer": 141_000})
    assert near is not None and near.listings == 6
    assert near.criteria.startswith("same model, model year within 1, mileage within")
    assert near.median == 9250 and near.low < near.median < near.high
    blank = market.comparables(frame, {"model": "bmw x5", "model_year": None, "odometer": None})
    assert blank is not None and (blank.listings, blank.criteria) == (9, "same model, any year")
    assert market.comparables(frame, {"model": "ford f-150", "model_year": 2011}) is None


def test_the_report_opens_with_the_provenance_header_and_shows_what_cleaning_removed(
    listings: market.Listings,
) -> None:
    source = DataSource(
        source=SOURCE,
        synthetic=True,
        rows=len(listings.kept),
        columns=13,
        sha256=listings.sha256,
        removed_rows=listings.removed_by_rule,
        notice=ingest.SYNTHETIC_NOTICE,
    )
    provenance = Provenance.of_training(SPEC.name, source, "market-run", "none")
    page = market.report_html(SPEC, listings, market.analyse(SPEC, listings.kept), provenance)
    assert 'data-kind="synthetic"' in page and "market-run" in page
    assert "Used-car price (carvision): the market" in page
    for view in market.VIEWS:
        assert f"<h2>{view.title}</h2>" in page
    assert "<h2>What the cleaning rules removed</h2>" in page
    [rule] = SPEC.cleaning_rules
    assert rule.description in page
    assert page.count("<img") == len(market.VIEWS)


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_only_a_spec_that_asks_for_it_gets_the_market_step(project: str) -> None:
    tasks = body_of(load_compiled(project)[0])["tasks"]
    register = tasks["register"]["inputs"]["artifacts"]
    if not PROJECTS[project].market_analysis:
        assert MARKET_STEP not in tasks and "market_report" not in register
        return
    step = tasks[MARKET_STEP]
    assert set(step["dependentTasks"]) == {"ingest", "validate"}
    # the pipeline parameter, as the exit handler's DAG hands it on
    assert step["inputs"]["parameters"]["source"] == {
        "componentInputParameter": "pipelinechannel--source"
    }
    assert register["market_report"]["taskOutputArtifact"] == {
        "outputArtifactKey": "report",
        "producerTask": MARKET_STEP,
    }


def test_the_market_step_runs_through_kfp_local(tmp_path: Path) -> None:
    """The step as a pipeline task: its HTML artifact on the listings ingest read (the same
    bytes, or the step would stop)."""
    from kfp import dsl, local
    from kfp.dsl import Artifact

    from components.steps import market as market_step

    _, info = ingest.ingest(SPEC, SOURCE, 3, 0.2)
    info.write(tmp_path / "source_info.json")

    def pipeline_on(record: Path) -> Any:
        @dsl.pipeline(name="market-only")
        def market_only() -> None:
            imported = dsl.importer(artifact_uri=str(record), artifact_class=Artifact)
            market_step(
                project=SPEC.name,
                source=SOURCE,
                seed=3,
                source_info=imported.output,
                run_name="market-only-run",
            )

        return market_only

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    try:
        pipeline_on(tmp_path / "source_info.json")()
        [page] = (tmp_path / "kfp").glob("market-only-*/market/report.html")
        text = page.read_text()
        assert "market-only-run" in text and "What the cleaning rules removed" in text
    finally:
        local.config.LocalExecutionConfig.instance = None
