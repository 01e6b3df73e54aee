"""CarVision market intelligence: the listings, the market, the champion model and a price
estimator answered by the running predictor.

    streamlit run apps/carvision/app.py     (or `make app`; settings: apps/carvision/settings.py)

`?tab=overview|market|model|estimator` opens the page on that tab.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from apps.carvision import form
from apps.carvision.champion import Champion, NoChampion, RegistryUnavailable, champion
from apps.carvision.predictor import Predictor, PredictorUnavailable, Reasons, RequestRefused
from apps.carvision.settings import Settings, SettingsError
from components.core import market, report
from components.core.ingest import IngestError
from components.core.projects import get_spec

SPEC = get_spec("carvision")
TABS = {"overview": "Overview", "market": "Market", "model": "Model", "estimator": "Estimator"}
TAB_PARAM = "tab"
SAMPLE_ROWS = 20
CACHE_S = 600
SUBMIT_KEY = "estimate"
LOG = logging.getLogger(__name__)


# --- Cached reads: the listings once per source, figures once per filter ----------------------


@st.cache_resource(ttl=CACHE_S, show_spinner="Reading the listings...")
def listings(source: str) -> market.Listings:
    return market.read_listings(SPEC, source)


Filters = tuple[tuple[str, ...], tuple[str, ...], tuple[float, float] | None]


@st.cache_data(ttl=CACHE_S, max_entries=64, show_spinner=False)
def analysis(source: str, filters: Filters) -> market.MarketAnalysis:
    return market.analyse(SPEC, market.filter_listings(listings(source).kept, *filters))


@st.cache_data(ttl=CACHE_S, max_entries=256, show_spinner=False)
def _figure_png(source: str, filters: Filters, view: int) -> bytes:
    figure = market.VIEWS[view].draw(analysis(source, filters))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    report.pyplot().close(figure)
    return buffer.getvalue()


@st.cache_data(ttl=60, show_spinner=False)
def registered(tracking_uri: str) -> Champion:
    return champion(SPEC, tracking_uri)


# --- Tabs --------------------------------------------------------------------------------------


def md(text: str) -> str:
    """Text for st.markdown: dollar signs shown as such, not read as LaTeX."""
    return text.replace("$", "\\$")


def guarded(render: Callable[[], None]) -> None:
    """One tab's unexpected failure is shown in that tab; the others still render."""
    try:
        render()
    except Exception as exc:
        LOG.exception("a tab failed")  # the traceback goes to the server's log
        st.error(f"This tab failed: {type(exc).__name__}: {exc}")


def loaded(settings: Settings) -> market.Listings | None:
    """The listings, or None after saying why there are none."""
    if not settings.data_source:
        st.info("No listings: set CARVISION_DATA to a path or URL of the listings CSV.")
        return None
    try:
        return listings(settings.data_source)
    except (IngestError, market.MarketError) as exc:
        st.error(f"The listings cannot be read: {exc}")
        return None


def overview(settings: Settings) -> None:
    data = loaded(settings)
    if data is None:
        return
    kind = "SYNTHETIC DATA" if data.synthetic else "REAL DATA"
    st.caption(f"{kind} · {data.source} · sha256 {data.sha256[:12]}")
    posted = pd.to_datetime(data.kept[market.POSTED], errors="coerce")
    rows, kept, first, last = st.columns(4)
    rows.metric("Listings read", f"{data.loaded:,}")
    kept.metric(
        "Kept after cleaning", f"{len(data.kept):,}", f"-{len(data.removed):,} removed", "off"
    )
    first.metric("First posted", f"{posted.min():%Y-%m-%d}")
    last.metric("Last posted", f"{posted.max():%Y-%m-%d}")
    everything = pd.concat([data.kept.drop(columns=market.BRAND), data.removed])
    blanks = everything.isna().sum()
    st.subheader("Blanks per column")
    st.dataframe(
        pd.DataFrame(
            {
                "column": blanks.index,
                "blank": blanks.to_numpy(),
                "share": [f"{v:.1%}" for v in blanks.to_numpy() / max(len(everything), 1)],
            }
        ),
        hide_index=True,
    )
    st.subheader(f"A sample of {SAMPLE_ROWS} listings")
    st.dataframe(
        data.kept.drop(columns=market.BRAND).sample(
            min(SAMPLE_ROWS, len(data.kept)), random_state=0
        ),
        hide_index=True,
    )


def market_tab(settings: Settings) -> None:
    data = loaded(settings)
    if data is None:
        return
    kept = data.kept
    brands = kept[market.BRAND].value_counts().index.tolist()
    types = kept[market.BODY].value_counts().index.tolist()
    years = kept[market.YEAR].dropna()
    low, high = int(years.min()), int(years.max())
    left, middle, right = st.columns(3)
    chosen_brands = left.multiselect("Brand", brands, key="market.brands")
    chosen_types = middle.multiselect("Body type", types, key="market.types")
    span = right.slider("Model year", low, high, (low, high), key="market.years")
    filters: Filters = (
        tuple(chosen_brands),
        tuple(chosen_types),
        None if tuple(span) == (low, high) else (float(span[0]), float(span[1])),
    )
    try:
        found = analysis(data.source, filters)
    except market.MarketError as exc:
        st.warning(str(exc))
        return
    st.markdown(md(market.summary_line(found)))
    for index, view in enumerate(market.VIEWS):
        st.subheader(view.title)
        st.image(_figure_png(data.source, filters, index), caption=view.caption)
        with st.expander(f"{view.title}: the table"):
            st.dataframe(market.format_table(view.table(found)), hide_index=True)
    st.subheader("What the cleaning rules removed")
    st.caption("Of every listing read, before the filters above.")
    st.dataframe(market.format_table(market.cleaning_table(data)), hide_index=True)
    if len(data.removed):
        st.dataframe(market.removed_prices(data), hide_index=True)


def _model_tab(settings: Settings) -> None:
    try:
        found = registered(settings.tracking_uri)
    except NoChampion as exc:
        st.warning(f"No champion model: {exc}")
        return
    except RegistryUnavailable as exc:
        st.error(f"The model registry is not available: {exc}")
        return
    kind = "trained on SYNTHETIC data" if found.synthetic else "trained on real data"
    st.markdown(
        f"**models:/{found.name}@champion is version {found.version}**, registered "
        f"{found.registered}, {kind} ({found.source})."
    )
    if found.decision:
        st.caption(found.decision)
    record = found.evaluation
    if record is not None and record.reading:
        st.markdown(md(record.reading))
    st.subheader("Test figures")
    st.dataframe(found.figures(), hide_index=True)
    if record is None:
        st.info(
            f"Version {found.version} was registered before runs logged their evaluation record: "
            "its test figures are shown without intervals or per-group errors."
        )
        return
    st.caption(
        f"{record.rows:,} test listings, scored once. Intervals: 95% percentile bootstrap "
        "over the test rows."
    )
    st.subheader("Error by condition and body type")
    st.dataframe(found.groups(SPEC), hide_index=True)
    for line in found.gaps(SPEC):
        st.caption(f"Gap: {line}.")


def _field_widget(field: form.Field, default: Any, models: list[str]) -> Any:
    column = field.column
    if column.dtype == "category":
        choices = form.options(column)
        return st.selectbox(
            field.label,
            choices,
            index=choices.index(default) if default in choices else 0,
            format_func=lambda v: form.NOT_GIVEN if v is None else str(v),
            key=field.key,
            help=field.help,
        )
    if column.dtype == "string":
        known = models if default in models else [default, *models]
        return st.selectbox(
            field.label,
            known,
            index=known.index(default),
            accept_new_options=True,
            key=field.key,
            help=field.help,
        )
    if column.dtype == "date":
        return st.date_input(field.label, default, key=field.key, help=field.help)
    # Numbers as text: blank is a blank, and the predictor's parser reads the rest.
    return st.text_input(
        field.label, default, key=field.key, help=field.help, placeholder=form.NOT_GIVEN
    )


def _reason_line(field: str, value: Any, amount: float) -> str:
    shown = form.NOT_GIVEN if value is None else value
    way = "raises" if amount >= 0 else "lowers"
    return md(f"**{field}** = {shown}: {way} the estimate by ${abs(amount):,.0f}")


def estimator(settings: Settings) -> None:
    data = None
    if settings.data_source:
        try:
            data = listings(settings.data_source)
        except (IngestError, market.MarketError):
            data = None
    latest = pd.to_datetime(data.kept[market.POSTED]).max().date() if data is not None else None
    models = data.kept[market.MODEL].value_counts().index.tolist() if data is not None else []
    values = form.defaults(SPEC, latest)
    with st.form("car"):
        columns = st.columns(3)
        entered = {
            field.column.name: _field_widget_in(columns[i % 3], field, values, models)
            for i, field in enumerate(form.fields(SPEC))
        }
        submitted = st.form_submit_button("Estimate the price", key=SUBMIT_KEY, type="primary")
    if not submitted:
        st.caption(
            f"The price comes from the predictor at {settings.predictor_url}, and the reasons "
            "from its explanation of the same car; nothing is estimated here."
        )
        return
    car = form.instance(SPEC, entered)
    predictor = Predictor(settings, SPEC.name)
    try:
        price = predictor.price(car, SPEC.task.explained_field)
    except RequestRefused as refused:
        st.error(f"The predictor refused this car: {refused.message}")
        for problem in refused.problems:
            st.markdown(
                f"- field **{problem.get('field')}**: rule `{problem.get('rule')}`, "
                f"value {problem.get('value')!r}"
            )
        return
    except PredictorUnavailable as down:
        st.error(f"No estimate: the price estimator is not available ({down}).")
        return
    st.metric(
        "Estimated price",
        f"${price:,.0f}",
        help="The predictor's answer, rounded to the dollar.",
    )
    st.caption(
        f"The model's answer: {price:,.2f} USD (models:/{SPEC.name}, version "
        f"{predictor.served_version()}, at {settings.predictor_url})."
    )
    try:
        reasons: Reasons | None = predictor.reasons(car)
    except (RequestRefused, PredictorUnavailable) as exc:
        reasons = None
        st.warning(f"No reasons: the explanation failed: {exc}")
    if reasons is not None:
        st.subheader("Top reasons")
        for name, amount in reasons.top():
            st.markdown(_reason_line(name, car.get(name), amount))
        st.caption(
            md(f"Against an average car's ${reasons.base_value:,.0f}; method: {reasons.method}.")
        )
    st.subheader("Comparable listings")
    near = market.comparables(data.kept, car) if data is not None else None
    if near is None:
        st.info("Too few listings like this car in the data to give their price range.")
    else:
        st.markdown(
            md(
                f"{near.listings:,} listings ({near.criteria}) asked between ${near.low:,.0f} "
                f"and ${near.high:,.0f} (the middle 80%; median ${near.median:,.0f})."
            )
        )
        st.caption("From the listings, not from the model: asking prices, not sale prices.")


def _field_widget_in(
    container: Any, field: form.Field, values: dict[str, Any], models: list[str]
) -> Any:
    with container:
        return _field_widget(field, values[field.column.name], models)


# --- The page ----------------------------------------------------------------------------------


def main() -> None:
    st.set_page_config(page_title="CarVision market intelligence", layout="wide")
    st.title("CarVision market intelligence")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        st.error(f"Settings: {exc}")
        return
    with st.sidebar:
        st.header("Settings")
        for name, value in settings.describe():
            st.markdown(f"**{name}**  \n`{value}`")
    requested = str(st.query_params.get(TAB_PARAM, "")).lower()
    tabs = st.tabs(list(TABS.values()), default=TABS.get(requested, TABS["overview"]))
    renderers = (overview, market_tab, _model_tab, estimator)
    for tab, render in zip(tabs, renderers, strict=True):
        with tab:
            guarded(lambda render=render: render(settings))  # type: ignore[misc]


main()
