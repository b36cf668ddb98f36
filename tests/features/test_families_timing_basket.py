"""Timing and basket families on small hand-computed tables."""

import numpy as np
import pandas as pd
import pytest

from configs import settings_from_dict
from features.build import build_features
from features.families.basket import basket_features
from features.families.timing import timing_features
from features.snapshot import Snapshot
from features.validate import validate

SETTINGS = settings_from_dict({"horizon_days": 90, "features": {"windows_days": [30, 90]}})
AS_OF = "2024-12-31"


def _tables(extra: bool = True):
    customers = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C"],
            "signup_date": ["2023-11-01", "2024-06-01", "2024-12-01"],
        }
    )
    rows = [
        # A: purchase days Jan 10 (in the window a year before: [Jan 1, Mar 31)), Oct 1, Oct 1 (same day), Oct 11,
        # Oct 31 2024; gaps 265, 10, 20 days.
        ("A", "2024-01-10 10:00", "purchase", 5.0, "a0", "p1", 1.0),
        ("A", "2024-10-01 10:00", "purchase", 10.0, "a1", "p1", 2.0),
        ("A", "2024-10-01 10:00", "purchase", 6.0, "a1", "p2", 3.0),
        ("A", "2024-10-01 16:00", "purchase", 4.0, "a2", "p3", 1.0),
        ("A", "2024-10-11 09:00", "purchase", 20.0, "a3", "p1", 4.0),
        ("A", "2024-10-31 09:00", "purchase", 30.0, "a4", "p2", 5.0),
        ("A", "2024-11-02 09:00", "refund", -6.0, "Ca4", "p2", -1.0),
        # B: one purchase day only.
        ("B", "2024-12-01 12:00", "purchase", 50.0, "b1", "p9", 10.0),
        # C: nothing bought before the cutoff; a purchase after it is ignored.
        ("C", "2024-12-31 00:00", "purchase", 99.0, "c1", "p1", 1.0),
        ("C", "2024-12-05 00:00", "visit", np.nan, None, None, np.nan),
    ]
    events = pd.DataFrame(
        rows,
        columns=[
            "customer_id",
            "ts",
            "event_type",
            "amount",
            "invoice_no",
            "stock_code",
            "quantity",
        ],
    )
    events["channel"] = "web"
    if not extra:
        events = events.drop(columns=["invoice_no", "stock_code", "quantity"])
    return validate({"customers": customers, "events": events}).tables


def _snap(tables):
    # The activity types decide the population without a churn table: visits count too here.
    s = SETTINGS.model_copy(update={"activity_event_types": ["purchase", "visit"]})
    return Snapshot(tables, AS_OF, s)


def test_timing_features_by_hand():
    f = timing_features(_snap(_tables())).loc[["A", "B", "C"]]
    a, b, c = f.loc["A"], f.loc["B"], f.loc["C"]
    gaps = np.array([265.0, 10.0, 20.0])
    assert a.purchase_days_total == 4
    assert a.days_since_first_purchase == pytest.approx(
        (pd.Timestamp("2024-12-31") - pd.Timestamp("2024-01-10")).days
    )
    assert a.gap_mean_days == pytest.approx(gaps.mean())
    assert a.gap_std_days == pytest.approx(gaps.std())
    assert a.gap_cv == pytest.approx(gaps.std() / gaps.mean())
    assert a.gap_last_days == 20 and a.gap_max_days == 265
    # Last purchase day Oct 31; as_of Dec 31 midnight: 61 days.
    assert a.overdue_ratio == pytest.approx(61 / gaps.mean())
    assert a.overdue_z == pytest.approx((61 - gaps.mean()) / gaps.std())
    assert a.purchase_days_last_year_window == 1  # Jan 10 is in [Dec 31 - 365d, +90d)
    assert b.purchase_days_total == 1 and np.isnan(b.gap_mean_days) and np.isnan(b.overdue_ratio)
    assert np.isnan(b.purchase_days_last_year_window)  # B signed up less than a year ago
    assert c.purchase_days_total == 0 and np.isnan(c.days_since_first_purchase)


def test_basket_features_by_hand():
    f = basket_features(_snap(_tables())).loc[["A", "B", "C"]]
    a, b, c = f.loc["A"], f.loc["B"], f.loc["C"]
    assert a.orders_total == 5 and a.orders_90d == 2  # Oct 11 and Oct 31 (from Oct 2)
    assert a.lines_per_order == pytest.approx(6 / 5)
    assert a.order_value_mean == pytest.approx(75 / 5)
    assert a.order_value_max == 30
    assert a.distinct_products == 3
    assert a.products_per_order == pytest.approx(3 / 5)
    # p1 on orders a0, a1, a3 and p2 on a1, a4 repeat; p3 does not.
    assert a.repeat_product_share == pytest.approx(2 / 3)
    assert a.units_total == 16 and a.units_per_order == pytest.approx(16 / 5)
    assert a.value_per_unit == pytest.approx(75 / 16)
    assert a.refund_unit_share == pytest.approx(1 / 16)
    assert a.refund_line_share == pytest.approx(1 / 6)
    assert b.orders_total == 1 and b.repeat_product_share == 0
    assert c.orders_total == 0 and np.isnan(c.order_value_mean) and c.distinct_products == 0


def test_basket_features_without_the_optional_columns_are_missing_not_errors():
    f = basket_features(_snap(_tables(extra=False)))
    assert f.drop(columns="refund_line_share").isna().all().all()
    assert f.loc["A", "refund_line_share"] == pytest.approx(1 / 6)
    assert "orders_total" in build_features(_tables(extra=False), AS_OF, SETTINGS).columns


def test_repeat_products_fall_back_to_purchase_days_without_invoices():
    tables = _tables()
    tables = type(tables)(
        customers=tables.customers, events=tables.events.drop(columns="invoice_no")
    )
    f = basket_features(_snap(tables))
    # Days: p1 on Jan 10, Oct 1, Oct 11; p2 on Oct 1, Oct 31; p3 on Oct 1 only.
    assert f.loc["A", "repeat_product_share"] == pytest.approx(2 / 3)
    assert np.isnan(f.loc["A", "orders_total"])
