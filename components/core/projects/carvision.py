"""carvision: the market price of a used car listing (regression, USD)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor

from components.core.derived import ColumnFeatures, Columns
from components.core.spec import Candidate, CardFacts, CleaningRule, Column, Gate, ProjectSpec
from components.core.tasks import Regression

CONDITIONS = ("salvage", "fair", "good", "excellent", "like new", "new")
COLUMNS = (
    Column("model_year", "float", 1900, 2030, nullable=True),
    Column("model", "string", description="make and model, e.g. 'ford f-150'"),
    Column("condition", "category", categories=CONDITIONS),
    Column("cylinders", "float", 2, 16, nullable=True),
    Column("fuel", "category", categories=("diesel", "electric", "gas", "hybrid", "other")),
    Column("odometer", "float", 0, 2_000_000, nullable=True, description="miles"),
    Column("transmission", "category", categories=("automatic", "manual", "other")),
    Column(
        "type",
        "category",
        categories=(
            "SUV",
            "bus",
            "convertible",
            "coupe",
            "hatchback",
            "mini-van",
            "offroad",
            "other",
            "pickup",
            "sedan",
            "truck",
            "van",
            "wagon",
        ),
    ),
    Column(
        "paint_color",
        "category",
        nullable=True,
        categories=(
            "black",
            "blue",
            "brown",
            "custom",
            "green",
            "grey",
            "orange",
            "purple",
            "red",
            "silver",
            "white",
            "yellow",
        ),
    ),
    Column(
        "is_4wd", "float", 0, 1, nullable=True, description="1 for four-wheel drive; blank means 0"
    ),
    Column("date_posted", "date", description="ISO date the listing was posted"),
)
INPUT_COLUMNS = [c.name for c in COLUMNS]
CATEGORICAL = ["model", "brand", "condition", "fuel", "transmission", "type", "paint_color"]
IMPUTED_BY_MODEL = ("model_year", "cylinders", "odometer")
MISSING_FLAGS = [f"{col}_missing" for col in IMPUTED_BY_MODEL]
CONDITION_RANK = {c: float(i) for i, c in enumerate(CONDITIONS)}
NUMERIC = [
    "model_year",
    "vehicle_age",
    "cylinders",
    "odometer",
    "miles_per_year",
    "is_4wd",
    "condition_rank",
    "posted_month",
    *MISSING_FLAGS,
]
PLACEHOLDER_ODOMETER = 100
"""Readings under 100 miles on a used car are placeholders (mostly 0): treated as missing."""


class CarFeatures(ColumnFeatures):
    """Vehicle age at posting, brand, mileage per year, and blanks filled from the same model.

    Model-level medians are learnt in `fit`, so inside the training pipeline they come from the
    training folds only. A flag per imputed column keeps the fact that it was blank: a listing
    without year or mileage prices differently from one with the model's typical values.
    """

    input_columns = INPUT_COLUMNS

    def fit(self, X: pd.DataFrame, y: object = None) -> CarFeatures:
        frame = _without_placeholders(X[INPUT_COLUMNS])
        self.model_medians_ = {
            col: pd.to_numeric(frame[col], errors="coerce")
            .groupby(frame["model"])
            .median()
            .to_dict()
            for col in IMPUTED_BY_MODEL
        }
        self.global_medians_ = {
            col: float(pd.to_numeric(frame[col]).median()) for col in IMPUTED_BY_MODEL
        }
        self.n_features_in_ = len(INPUT_COLUMNS)
        return self

    def transform_columns(self, columns: Mapping[str, np.ndarray]) -> Columns:
        model = np.array([str(v).strip().lower() for v in columns["model"]], dtype=object)
        out: Columns = {}
        for col, flag in zip(IMPUTED_BY_MODEL, MISSING_FLAGS, strict=True):
            raw = numbers(columns[col])
            if col == "odometer":
                raw[raw < PLACEHOLDER_ODOMETER] = np.nan
            medians = self.model_medians_[col]
            by_model = np.array([medians.get(m, np.nan) for m in model], dtype=float)
            filled = np.where(np.isnan(raw), by_model, raw)
            out[col] = np.where(np.isnan(filled), self.global_medians_[col], filled)
            out[flag] = np.isnan(raw).astype(float)
        year, month = year_and_month(columns["date_posted"])
        out["posted_month"] = month
        out["vehicle_age"] = np.clip(year + (month - 1) / 12 - out["model_year"], 0, None)
        out["miles_per_year"] = out["odometer"] / np.clip(out["vehicle_age"], 0.5, None)
        is_4wd = numbers(columns["is_4wd"])
        out["is_4wd"] = np.where(np.isnan(is_4wd), 0.0, is_4wd)
        out["condition_rank"] = np.array(
            [CONDITION_RANK.get(v, np.nan) for v in columns["condition"]], dtype=float
        )
        out["model"] = model
        out["brand"] = np.array([_first_word(m) for m in model], dtype=object)
        for col in ("condition", "fuel", "transmission", "type", "paint_color"):
            values = np.asarray(columns[col], dtype=object)
            out[col] = np.where(pd.isna(values), "unknown", values.astype(str)).astype(object)
        return {name: out[name] for name in NUMERIC + CATEGORICAL}

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(NUMERIC + CATEGORICAL, dtype=object)


def year_and_month(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Year and month of each date, NaN where there is none, as pd.to_datetime reads them.

    Dates written YYYY-MM-DD (the schema's, and the data's) are read by numpy: pandas guesses
    the format on every call, a tenth of a millisecond for one row. Any other form goes to pandas.
    """
    days: np.ndarray | None = None
    if all(isinstance(v, str) and len(v) == 10 for v in values):
        try:
            days = np.asarray(values, dtype="datetime64[D]")
        except ValueError:
            days = None
    if days is None:
        posted = pd.DatetimeIndex(pd.to_datetime(values, errors="coerce"))
        return posted.year.to_numpy(dtype=float), posted.month.to_numpy(dtype=float)
    year = days.astype("datetime64[Y]").astype(np.int64) + 1970
    month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    return year.astype(float), month.astype(float)


def numbers(values: np.ndarray) -> np.ndarray:
    """A fresh float column (blanks as NaN), as pd.to_numeric reads it."""
    return np.array(pd.to_numeric(values), dtype=float)


def _first_word(model: str) -> object:
    words = model.split()
    return words[0] if words else np.nan


def _without_placeholders(frame: pd.DataFrame) -> pd.DataFrame:
    odometer = pd.to_numeric(frame["odometer"])
    return frame.assign(odometer=odometer.where(~(odometer < PLACEHOLDER_ODOMETER)))


def _keep_plausible_prices(frame: pd.DataFrame) -> pd.Series:
    price = frame["price"]
    return (price >= 500) & (price <= price.quantile(0.99))


JUNK_LISTINGS = CleaningRule(
    "drop listings priced under 500 USD or above the 99th percentile of the loaded prices "
    "(placeholder prices such as 1 USD, and typos)",
    _keep_plausible_prices,
)

MODELS = {
    "ford f-150": (28_000, 6, "pickup"),
    "chevrolet silverado 1500": (27_000, 8, "pickup"),
    "toyota camry": (15_000, 4, "sedan"),
    "honda accord": (14_000, 4, "sedan"),
    "jeep wrangler": (24_000, 6, "SUV"),
    "ram 1500": (27_000, 8, "pickup"),
    "nissan altima": (12_000, 4, "sedan"),
    "subaru outback": (16_000, 4, "wagon"),
    "bmw x5": (25_000, 6, "SUV"),
    "honda civic": (12_000, 4, "sedan"),
    "chrysler town & country": (11_000, 6, "mini-van"),
    "ford mustang": (18_000, 8, "coupe"),
}


def make_synthetic(rows: int, seed: int) -> pd.DataFrame:
    """SYNTHETIC listings: price falls with age, mileage and condition, and varies by model."""
    rng = np.random.default_rng(seed)
    names = list(MODELS)
    model = rng.choice(names, size=rows)
    base, cylinders, body = (np.array([MODELS[m][i] for m in model]) for i in range(3))
    posted = pd.Timestamp("2018-05-01") + pd.to_timedelta(rng.integers(0, 354, rows), unit="D")
    age = rng.gamma(2.5, 3.2, rows).clip(0, 40)
    model_year = np.floor(posted.year - age)
    odometer = (age * rng.normal(12_500, 3_000, rows)).clip(0).round()
    condition = rng.choice(CONDITIONS, size=rows, p=[0.01, 0.03, 0.39, 0.48, 0.08, 0.01])
    cond_factor = np.array(
        [
            {c: f for c, f in zip(CONDITIONS, (0.35, 0.6, 0.85, 1.0, 1.15, 1.35), strict=True)}[c]
            for c in condition
        ]
    )
    is_4wd = np.where(rng.random(rows) < 0.5, 1.0, np.nan)
    price = base.astype(float) * np.exp(-0.09 * age) * cond_factor * np.exp(-odometer / 400_000)
    price *= np.where(np.isnan(is_4wd), 1.0, 1.12) * rng.lognormal(0, 0.15, rows)
    price = price.round().clip(600)
    junk = rng.random(rows) < 0.015
    price[junk] = 1
    frame = pd.DataFrame(
        {
            "price": price.astype(int),
            "model_year": model_year,
            "model": model,
            "condition": condition,
            "cylinders": cylinders.astype(float),
            "fuel": rng.choice(
                ["gas", "diesel", "hybrid", "other", "electric"],
                size=rows,
                p=[0.92, 0.06, 0.01, 0.007, 0.003],
            ),
            "odometer": odometer,
            "transmission": rng.choice(
                ["automatic", "manual", "other"], size=rows, p=[0.91, 0.06, 0.03]
            ),
            "type": body,
            "paint_color": rng.choice(
                np.array(["white", "black", "silver", "red", "blue", "grey", None], dtype=object),
                size=rows,
            ),
            "is_4wd": is_4wd,
            "date_posted": posted.strftime("%Y-%m-%d"),
            "days_listed": rng.gamma(2.0, 20.0, rows).round().astype(int),
        }
    )
    for col, share in (("model_year", 0.07), ("cylinders", 0.1), ("odometer", 0.15)):
        frame.loc[rng.random(rows) < share, col] = np.nan
    return frame


CANDIDATES = (
    Candidate(
        "median_baseline", lambda seed: DummyRegressor(strategy="median"), preprocessing="tree"
    ),
    Candidate(
        "random_forest",
        lambda seed: RandomForestRegressor(
            n_estimators=60,
            max_samples=0.3,
            min_samples_leaf=3,
            max_features=0.5,
            n_jobs=2,
            random_state=seed,
        ),
        preprocessing="tree",
    ),
    # Native categorical splits on model and brand (about 100 and 20 values): ordinal codes
    # force arbitrary orderings on them, which cost about 0.005 of R2 in CV. A row's cost is the
    # nodes it walks: 300 trees of 160 leaves score as accurately as 1000 of 63 at 1.7 times the
    # rate (`make bench-tree-shapes`, docs/batch.md).
    Candidate(
        "gradient_boosting",
        lambda seed: HistGradientBoostingRegressor(
            categorical_features=CATEGORICAL,
            learning_rate=0.05,
            max_iter=300,
            max_leaf_nodes=160,
            early_stopping=False,
            random_state=seed,
        ),
        preprocessing="tree",
        search_space={
            "model__min_samples_leaf": [5, 10],
            "model__max_features": [0.7, 1.0],
            "model__l2_regularization": [0.0, 1.0],
        },
    ),
)

SPEC = ProjectSpec(
    name="carvision",
    title="Used-car price",
    task=Regression("price", unit="USD"),
    target="price",
    columns=COLUMNS,
    ignored_columns=("days_listed",),
    make_features=CarFeatures,
    candidates=CANDIDATES,
    primary_metric="r2",
    gates=(Gate("r2", 0.70), Gate("mape", 0.60)),
    make_synthetic=make_synthetic,
    synthetic_rows=6_000,
    data_file="vehicles_us.csv",
    cleaning_rules=(JUNK_LISTINGS,),
    group_columns=("condition", "type"),
    search_trials=2,
    reference_figures={"r2": 0.766, "rmse": 4794.0},
    targets={"r2": 0.89, "rmse": 2900.0},
    reading=(
        "On the {rows:,} test listings, half of the estimates are within "
        "${median_abs_error:,.0f} of the asking price and 90% within ${p90_abs_error:,.0f}; "
        "{within_20pct:.0%} are within 20% of it."
    ),
    # Permutation SHAP (no tree SHAP for native categorical splits): about 0.1 s per row here.
    explained_rows=60,
    market_analysis=True,
    card=CardFacts(
        owner="Marketplace pricing analytics (the model and its use); ML platform (pipelines, serving)",
        intended_use=(
            "Estimate the market price in USD of a used-car listing in the US from its "
            "attributes, as a guide for sellers, buyers and dealers."
        ),
        users="Marketplace users (price estimator), dealers, pricing analysts.",
        out_of_scope=(
            "Appraisals for lending, insurance, tax or legal purposes.",
            "New cars, and cars outside the price range the cleaning rule keeps.",
            "Markets other than the US listings the data comes from.",
        ),
        factors=(
            "Condition and body type: errors are reported per group, as a price guide that is "
            "worse for some kinds of car misleads their sellers most."
        ),
        ethical=(
            "No personal data: the listings describe cars, not people.",
            "Listing prices are asking prices, not sale prices: the model learns what sellers ask.",
        ),
        caveats=(
            "Listings from one period: prices move with the market; watch drift and retrain.",
            "Rare models and expensive cars have larger errors (see the residuals and the group "
            "table).",
        ),
    ),
)
