"""The used-car market in a file of listings: what asking prices follow (model year, mileage,
condition, body type, brand), how long listings stay up by price band, and what the cleaning
rules removed.

One piece of code for two readers: the training pipeline's market report and the dashboard's
market tab both call `analyse` on the listings and draw the same figures.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from components.core import report
from components.core.ingest import clean, parse_csv, parse_synthetic, read_bytes
from components.core.lineage import Provenance
from components.core.spec import ProjectSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PRICE = "price"
YEAR = "model_year"
MILEAGE = "odometer"
CONDITION = "condition"
BODY = "type"
MODEL = "model"
BRAND = "brand"
DAYS = "days_listed"
POSTED = "date_posted"
COLUMNS = (PRICE, YEAR, MILEAGE, CONDITION, BODY, MODEL, DAYS, POSTED)
"""What the analysis reads from each listing."""

MIN_YEAR_LISTINGS = 30
"""Model years with fewer listings are left out of the year curve: their medians are noise."""
MILEAGE_BANDS = (0, 25_000, 50_000, 75_000, 100_000, 150_000, 200_000, math.inf)
PRICE_BANDS = (0, 5_000, 10_000, 15_000, 20_000, 30_000, math.inf)
UNKNOWN = "unknown"
SUMMARY = ["listings", "median price", "25th percentile", "75th percentile"]
COMPARABLE_MIN = 5
"""Fewer comparable listings than this give no price range."""
ROW = "__row__"
BLUE = "#2563eb"


class MarketError(ValueError):
    """The listings cannot be analysed; the message says which column or check failed."""


@dataclass(frozen=True)
class Listings:
    """A source as read, split by the project's cleaning rules into kept and removed rows."""

    source: str
    sha256: str
    synthetic: bool
    kept: pd.DataFrame
    removed: pd.DataFrame
    removed_by_rule: dict[str, int]

    @property
    def loaded(self) -> int:
        return len(self.kept) + len(self.removed)


def read_listings(
    spec: ProjectSpec, source: str, seed: int = 42, expected_sha256: str = ""
) -> Listings:
    """Reads a path, an http(s) URL or `synthetic[:ROWS]` as ingest does (same bytes, same
    sha256) and applies the spec's cleaning rules through ingest's `clean`. With
    `expected_sha256`, other bytes than those are refused."""
    rows = parse_synthetic(source)
    if rows is not None:
        frame = spec.make_synthetic(rows or spec.synthetic_rows, seed)
        raw = frame.to_csv(index=False).encode()
    else:
        raw = read_bytes(source)
        frame = parse_csv(raw, source)
    digest = hashlib.sha256(raw).hexdigest()
    if expected_sha256 and digest != expected_sha256:
        raise MarketError(
            f"{source} is not the data expected: sha256 {digest}, expected {expected_sha256} "
            "(did it change since ingest read it?)"
        )
    return _split_by_rules(spec, frame, source, digest, rows is not None)


def _split_by_rules(
    spec: ProjectSpec, frame: pd.DataFrame, source: str, sha256: str, synthetic: bool
) -> Listings:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise MarketError(f"{source}: the market analysis needs the columns {missing}")
    if not pd.api.types.is_numeric_dtype(frame[PRICE]):
        raise MarketError(f"{source}: column {PRICE!r} is not numeric")
    # A row number carried through the rules tells which rows they removed.
    numbered = frame.reset_index(drop=True).assign(**{ROW: np.arange(len(frame))})
    kept, removed_by_rule = clean(spec, numbered)
    removed = numbered.loc[~numbered[ROW].isin(kept[ROW])].drop(columns=ROW)
    return Listings(
        source=source,
        sha256=sha256,
        synthetic=synthetic,
        kept=_with_brand(kept.drop(columns=ROW)),
        removed=removed.reset_index(drop=True),
        removed_by_rule=removed_by_rule,
    )


def _with_brand(frame: pd.DataFrame) -> pd.DataFrame:
    """The listings with `brand`, the first word of `model` (as the model's features read it)."""
    model = frame[MODEL].astype(str).str.strip().str.lower()
    return frame.assign(**{BRAND: model.str.split().str[0]})


def filter_listings(
    frame: pd.DataFrame,
    brands: Iterable[str] = (),
    types: Iterable[str] = (),
    years: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """The listings of the given brands and body types (none given: all), with a model year in
    `years` (None: any year, blank included)."""
    keep = pd.Series(True, index=frame.index)
    brands, types = list(brands), list(types)
    if brands:
        keep &= frame[BRAND].isin(brands)
    if types:
        keep &= frame[BODY].isin(types)
    if years is not None:
        keep &= frame[YEAR].between(*years)
    return frame.loc[keep]


def _band_labels(edges: tuple[float, ...]) -> list[str]:
    def short(value: float) -> str:
        return f"{value / 1000:g}k"

    labels = [f"{short(lo)} to {short(hi)}" for lo, hi in itertools.pairwise(edges)]
    labels[-1] = f"{short(edges[-2])} or more"
    if edges[0] == 0:
        labels[0] = f"under {short(edges[1])}"
    return labels


def _banded(values: pd.Series, edges: tuple[float, ...]) -> pd.Series:
    """Each value's band (left edge included), `unknown` for blanks, in the bands' order."""
    labels = _band_labels(edges)
    bands = pd.cut(pd.to_numeric(values), list(edges), labels=labels, right=False)
    return bands.cat.add_categories([UNKNOWN]).fillna(UNKNOWN)


def _price_summary(
    prices: pd.Series, groups: pd.Series, order: Iterable[Any] | None = None
) -> pd.DataFrame:
    """Listings and asking price quartiles per group; groups in `order` when given (those
    without listings left out), else by listings, most first."""
    grouped = prices.groupby(groups, observed=True)
    stats = pd.DataFrame(
        {
            "count": grouped.count(),
            "median": grouped.median(),
            "q25": grouped.quantile(0.25),
            "q75": grouped.quantile(0.75),
        }
    )
    stats.columns = SUMMARY
    if order is not None:
        stats = stats.reindex([g for g in order if g in stats.index])
    else:
        stats = stats.sort_values("listings", ascending=False, kind="stable")
    stats["listings"] = stats["listings"].astype(int)
    return stats.rename_axis("group").reset_index()


def _days_by_price_band(frame: pd.DataFrame) -> pd.DataFrame:
    """How long listings stayed up, per asking price band."""
    bands = _banded(frame[PRICE], PRICE_BANDS)
    days = frame[DAYS].groupby(bands, observed=True)
    table = pd.DataFrame(
        {
            "listings": days.count().astype(int),
            "median days listed": days.median(),
            "mean days listed": days.mean(),
            "share listed 60 days or more": days.apply(lambda d: float((d >= 60).mean())),
        }
    )
    order = [b for b in _band_labels(PRICE_BANDS) if b in table.index]
    return table.reindex(order).rename_axis("price band (USD)").reset_index()


@dataclass(frozen=True)
class MarketAnalysis:
    """The tables every figure is drawn from (one row per group)."""

    listings: int
    median_price: float
    first_posted: str
    last_posted: str
    unknown_year: int
    by_year: pd.DataFrame
    by_mileage: pd.DataFrame
    by_condition: pd.DataFrame
    by_type: pd.DataFrame
    by_brand: pd.DataFrame
    days_listed: pd.DataFrame


def analyse(spec: ProjectSpec, frame: pd.DataFrame) -> MarketAnalysis:
    """The market in `frame` (kept listings, with `brand`); conditions in the order of the
    spec's categories (worst to best)."""
    conditions = spec.column(CONDITION).categories
    if frame.empty:
        raise MarketError("no listings to analyse (the filters leave none)")
    prices = frame[PRICE].astype(float)
    years = frame[YEAR].dropna()
    whole_years = years.astype(int)
    by_year = _price_summary(prices.loc[years.index], whole_years, sorted(whole_years.unique()))
    by_year = by_year.loc[by_year["listings"] >= MIN_YEAR_LISTINGS].rename(columns={"group": YEAR})
    posted = pd.to_datetime(frame[POSTED], errors="coerce").dropna()
    return MarketAnalysis(
        listings=len(frame),
        median_price=float(prices.median()),
        first_posted=posted.min().date().isoformat() if len(posted) else UNKNOWN,
        last_posted=posted.max().date().isoformat() if len(posted) else UNKNOWN,
        unknown_year=int(frame[YEAR].isna().sum()),
        by_year=by_year.reset_index(drop=True),
        by_mileage=_price_summary(
            prices,
            _banded(frame[MILEAGE], MILEAGE_BANDS),
            [*_band_labels(MILEAGE_BANDS), UNKNOWN],
        ).rename(columns={"group": "mileage (miles)"}),
        by_condition=_price_summary(prices, frame[CONDITION], conditions).rename(
            columns={"group": CONDITION}
        ),
        by_type=_price_summary(prices, frame[BODY]).rename(columns={"group": BODY}),
        by_brand=_price_summary(prices, frame[BRAND]).rename(columns={"group": BRAND}),
        days_listed=_days_by_price_band(frame),
    )


def cleaning_table(listings: Listings) -> pd.DataFrame:
    """Rows each cleaning rule removed, and their share of the rows read."""
    loaded = max(listings.loaded, 1)
    return pd.DataFrame(
        [
            {"rule": rule, "listings removed": n, "share of listings read": n / loaded}
            for rule, n in listings.removed_by_rule.items()
        ],
        columns=["rule", "listings removed", "share of listings read"],
    )


def removed_prices(listings: Listings, top: int = 8) -> pd.DataFrame:
    """The asking prices the removed listings had most often (placeholders such as 1 USD stand
    out), with how many listings had each."""
    counts = listings.removed[PRICE].value_counts().head(top)
    return pd.DataFrame({"asking price (USD)": counts.index, "listings removed": counts.to_numpy()})


# --- Figures: the same drawings in the report and the dashboard --------------------------------


def _quartile_bars(table: pd.DataFrame, label: str, title: str, horizontal: bool = False) -> Figure:
    plt = report.pyplot()
    groups = table[label].astype(str).tolist()
    median = table["median price"].to_numpy()
    spread = np.vstack(
        [median - table["25th percentile"].to_numpy(), table["75th percentile"].to_numpy() - median]
    )
    if horizontal:
        fig, ax = plt.subplots(figsize=(9, 0.32 * len(groups) + 1.4))
        ax.barh(groups[::-1], median[::-1], xerr=spread[:, ::-1], color=BLUE, ecolor="#6b7280")
        ax.set(title=title, xlabel="asking price (USD)")
    else:
        fig, ax = plt.subplots(figsize=(9, 3.8))
        ax.bar(groups, median, yerr=spread, color=BLUE, ecolor="#6b7280", capsize=3)
        ax.set(title=title, ylabel="asking price (USD)", xlabel=label)
        ax.tick_params(axis="x", labelrotation=30)
    return fig


def _year_figure(analysis: MarketAnalysis) -> Figure:
    plt = report.pyplot()
    table = analysis.by_year
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.fill_between(
        table[YEAR], table["25th percentile"], table["75th percentile"], color=BLUE, alpha=0.2
    )
    ax.plot(table[YEAR], table["median price"], color=BLUE, marker="o", markersize=3)
    ax.set(
        title="Asking price by model year (median, band: 25th to 75th percentile)",
        xlabel="model year",
        ylabel="asking price (USD)",
    )
    return fig


def _mileage_figure(analysis: MarketAnalysis) -> Figure:
    return _quartile_bars(
        analysis.by_mileage, "mileage (miles)", "Asking price by mileage (median, 25th to 75th)"
    )


def _condition_figure(analysis: MarketAnalysis) -> Figure:
    return _quartile_bars(
        analysis.by_condition, CONDITION, "Asking price by condition (median, 25th to 75th)"
    )


def _type_figure(analysis: MarketAnalysis) -> Figure:
    return _quartile_bars(
        analysis.by_type, BODY, "Asking price by body type (median, 25th to 75th)", True
    )


def _brand_figure(analysis: MarketAnalysis) -> Figure:
    plt = report.pyplot()
    table = analysis.by_brand
    brands = table[BRAND].tolist()[::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.3 * len(brands) + 1.4), sharey=True)
    left.barh(brands, table["listings"].to_numpy()[::-1], color="#6b7280")
    left.set(title="Listings per brand", xlabel="listings")
    right.barh(brands, table["median price"].to_numpy()[::-1], color=BLUE)
    right.set(title="Median asking price per brand", xlabel="asking price (USD)")
    return fig


def _days_figure(analysis: MarketAnalysis) -> Figure:
    plt = report.pyplot()
    table = analysis.days_listed
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.bar(table["price band (USD)"], table["median days listed"], color=BLUE, label="median")
    ax.plot(
        table["price band (USD)"], table["mean days listed"], "o", color="#b91c1c", label="mean"
    )
    ax.set(title="Days listed by asking price band", ylabel="days listed", xlabel="USD")
    ax.legend()
    return fig


@dataclass(frozen=True)
class _View:
    """One figure with the table behind it and how to read it."""

    title: str
    draw: Callable[[MarketAnalysis], Figure]
    table: Callable[[MarketAnalysis], pd.DataFrame]
    caption: str


VIEWS = (
    _View(
        "Price by model year",
        _year_figure,
        lambda a: a.by_year,
        f"Model years with at least {MIN_YEAR_LISTINGS} listings; listings without a year are "
        "left out.",
    ),
    _View(
        "Price by mileage",
        _mileage_figure,
        lambda a: a.by_mileage,
        "Odometer reading in miles; `unknown` is a listing without one.",
    ),
    _View(
        "Price by condition",
        _condition_figure,
        lambda a: a.by_condition,
        "As the seller states it.",
    ),
    _View("Price by body type", _type_figure, lambda a: a.by_type, "Most listed first."),
    _View(
        "Brands: listings and median price",
        _brand_figure,
        lambda a: a.by_brand,
        "The brand is the first word of the model.",
    ),
    _View(
        "Days listed by price band",
        _days_figure,
        lambda a: a.days_listed,
        "How long a listing stayed up before it was taken down, by its asking price.",
    ),
)


def summary_line(analysis: MarketAnalysis) -> str:
    return (
        f"{analysis.listings:,} listings posted from {analysis.first_posted} to "
        f"{analysis.last_posted}; median asking price ${analysis.median_price:,.0f}."
    )


def format_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Prices and days as whole numbers, shares as percentages, for reading."""
    out = frame.copy()
    for column in out.columns:
        if column.startswith("listings"):
            out[column] = out[column].map(lambda v: f"{v:,}")
        elif column.startswith("share"):
            out[column] = out[column].map(lambda v: f"{v:.1%}")
        elif column in SUMMARY[1:] or "days" in column:
            out[column] = out[column].map(lambda v: f"{v:,.0f}")
    return out


def report_html(
    spec: ProjectSpec, listings: Listings, analysis: MarketAnalysis, provenance: Provenance
) -> str:
    """The market report: the provenance header, every view, then what cleaning removed."""
    intro = report.paragraph(
        f"{summary_line(analysis)} Read from {listings.loaded:,} listings; the cleaning rules "
        f"removed {len(listings.removed):,}. Prices are asking prices, not sale prices.",
        "reading",
    )
    sections = [
        (
            view.title,
            report.figure_to_html(view.draw(analysis), view.title)
            + report.paragraph(view.caption)
            + report.table_html(format_table(view.table(analysis))),
        )
        for view in VIEWS
    ]
    removed = report.table_html(format_table(cleaning_table(listings)))
    if len(listings.removed):
        removed += report.paragraph(
            "The asking prices the removed listings had most often:"
        ) + report.table_html(removed_prices(listings))
    sections.append(("What the cleaning rules removed", removed))
    return report.page(f"{spec.title} ({spec.name}): the market", provenance, sections, intro)


# --- Comparable listings for one car -----------------------------------------------------------


@dataclass(frozen=True)
class Comparables:
    """The asking prices of listings like one car: the middle 80% and the median."""

    listings: int
    criteria: str
    low: float
    median: float
    high: float


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def comparables(frame: pd.DataFrame, car: Mapping[str, Any]) -> Comparables | None:
    """Listings of the same model, as close in year and mileage as leaves at least
    COMPARABLE_MIN of them: the closest of (year within 1 and mileage within 20,000 miles),
    (year within 1), (year within 3), (any year). None when even the last has too few."""
    model = str(car.get(MODEL) or "").strip().lower()
    same = frame.loc[frame[MODEL].astype(str).str.strip().str.lower() == model]
    year, mileage = _number(car.get(YEAR)), _number(car.get(MILEAGE))
    ladder: list[tuple[str, pd.Series]] = []
    if year is not None:
        near_year = (same[YEAR] - year).abs() <= 1
        if mileage is not None:
            near_miles = (same[MILEAGE] - mileage).abs() <= 20_000
            ladder.append(
                ("same model, model year within 1, mileage within 20,000", near_year & near_miles)
            )
        ladder.append(("same model, model year within 1", near_year))
        ladder.append(("same model, model year within 3", (same[YEAR] - year).abs() <= 3))
    ladder.append(("same model, any year", pd.Series(True, index=same.index)))
    for criteria, keep in ladder:
        prices = same.loc[keep, PRICE].astype(float)
        if len(prices) >= COMPARABLE_MIN:
            return Comparables(
                listings=len(prices),
                criteria=criteria,
                low=float(prices.quantile(0.1)),
                median=float(prices.median()),
                high=float(prices.quantile(0.9)),
            )
    return None
