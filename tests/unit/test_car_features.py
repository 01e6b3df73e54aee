import numpy as np
import pandas as pd

from components.core.projects import carvision


def listings(**changes: list[object]) -> pd.DataFrame:
    base = carvision.make_synthetic(4, 3).drop(columns=["price", "days_listed"])
    base["model"] = ["ford f-150"] * 4
    return base.assign(**changes)


def test_blanks_are_filled_from_the_same_model_and_flagged() -> None:
    train = listings(odometer=[10_000.0, 30_000.0, 50_000.0, 90_000.0])
    features = carvision.CarFeatures().fit(train)
    out = features.transform(listings(odometer=[np.nan, 0.0, 65.0, 120_000.0]))
    # 0 and 65 miles on a used car are placeholders: blank, like the missing reading.
    assert out["odometer"].tolist() == [40_000.0, 40_000.0, 40_000.0, 120_000.0]
    assert out["odometer_missing"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert list(out.columns) == carvision.NUMERIC + carvision.CATEGORICAL


def test_placeholder_readings_do_not_pull_the_model_median_down() -> None:
    train = listings(odometer=[0.0, 0.0, 0.0, 90_000.0])
    features = carvision.CarFeatures().fit(train)
    out = features.transform(listings(odometer=[np.nan] * 4))
    assert out["odometer"].tolist() == [90_000.0] * 4


def test_dates_are_read_as_pandas_reads_them_on_the_fast_path_and_off_it() -> None:
    import numpy as np
    import pandas as pd

    from components.core.projects.carvision import year_and_month

    for values in (
        ["2019-01-31", "1969-12-01", "2019-02-30"],  # the fast path; an impossible date
        ["2019-1-3", "2019-01-31", "20190131"],  # other forms: pandas
        ["2019-01-31", None],
    ):
        column = np.array(values, dtype=object)
        # what the feature step called before its fast path: pandas guessing the format
        posted = pd.DatetimeIndex(pd.to_datetime(column, errors="coerce"))
        year, month = year_and_month(column)
        np.testing.assert_array_equal(year, posted.year.to_numpy(dtype=float))
        np.testing.assert_array_equal(month, posted.month.to_numpy(dtype=float))
