"""Static family: the customers table's attributes, typed; categories from the population only."""

import numpy as np
import pandas as pd

from configs import settings_from_dict
from features.families.static import static_features

AS_OF = pd.Timestamp("2024-06-01", tz="UTC")
SETTINGS = settings_from_dict({"features": {"windows_days": [7, 30]}})


def customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            # d signs up after as_of; e before it but never purchases (not in the population)
            "signup_date": ["2024-01-01", "2024-02-01", "2024-03-01", "2024-07-01", "2024-01-01"],
            "segment": ["vip", "consumer", "vip", "zeta", "alpha"],
            "plan": ["gold", None, " basic ", "gold", "gold"],
            "age": [30, 41, 52, 18, 60],
            "credit": pd.array([1.5, None, 2.0, 3.0, 4.0], dtype="Float64"),
            "newsletter": [True, False, True, False, True],
            "renewed_at": pd.to_datetime(
                [
                    "2024-05-31 00:00",
                    "2024-05-01 12:00",
                    None,
                    "2024-01-01 00:00",
                    "2024-01-01 00:00",
                ]
            ),
        }
    )


def events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "ts": ["2024-05-01", "2024-05-01", "2024-05-01", "2024-07-02", "2024-05-01"],
            "channel": ["web"] * 5,
            "event_type": ["purchase", "purchase", "purchase", "purchase", "visit"],
        }
    )


def test_typed_attributes_of_the_population(make_snapshot):
    out = static_features(make_snapshot(customers(), events(), AS_OF, settings=SETTINGS))
    expected = pd.DataFrame(
        {
            # categories only from a, b, c: not "zeta" (future) nor "alpha" (not in population)
            "segment": pd.Categorical(
                ["vip", "consumer", "vip"], categories=pd.Index(["consumer", "vip"], dtype=object)
            ),
            # validation strips " basic "
            "plan": pd.Categorical(
                ["gold", None, "basic"], categories=pd.Index(["basic", "gold"], dtype=object)
            ),
            "age": [30.0, 41.0, 52.0],
            "credit": [1.5, np.nan, 2.0],
            "newsletter": [1.0, 0.0, 1.0],
            # datetimes become days before as_of
            "renewed_at": [1.0, 30.5, np.nan],
        },
        index=pd.Index(["a", "b", "c"], name="customer_id", dtype=object),
    )
    pd.testing.assert_frame_equal(out, expected)


def test_categories_follow_the_population_at_each_cutoff(make_snapshot):
    late = static_features(
        make_snapshot(customers(), events(), "2024-08-01", settings=SETTINGS, everyone=True)
    )
    assert list(late.index) == ["a", "b", "c", "d", "e"]
    assert list(late["segment"].cat.categories) == ["alpha", "consumer", "vip", "zeta"]


def test_only_required_columns_gives_an_empty_frame(make_snapshot):
    out = static_features(
        make_snapshot(
            customers()[["customer_id", "signup_date"]], events(), AS_OF, settings=SETTINGS
        )
    )
    assert out.shape == (3, 0) and out.index.name == "customer_id"
