"""Basket and breadth: what a customer's orders look like, from optional events columns.

The contract allows extra events columns; this family uses three generic ones when a mapping
provides them (see `configs/mappings/online_retail.yaml`), and leaves the columns that need an
absent one NaN (never an error):

- `invoice_no`: the order (basket) an event line belongs to. Without it, orders are not known.
- `stock_code`: the product of the line. Without it, product breadth is not known.
- `quantity`: units on the line (negative on returns is fine: refunds use its absolute value).

Only `purchase` lines count as bought; `refund` lines as returned.

Columns:

- `orders_total`, `orders_90d`: distinct `invoice_no` with a purchase line (in the last 90 days:
  the order's latest line is that recent).
- `lines_per_order`: purchase lines per order. `order_value_mean`: purchase amount per order.
- `order_value_max`: the largest order's amount.
- `distinct_products`: distinct `stock_code` bought. `products_per_order`: distinct products
  over orders (breadth per basket).
- `repeat_product_share`: share of the distinct products bought that were bought on more than
  one order (on more than one day when `invoice_no` is absent).
- `units_total`, `units_per_order`, `value_per_unit`: from `quantity`.
- `refund_line_share`: refund lines over purchase lines. `refund_unit_share`: units returned
  over units bought (needs `quantity`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract import NS_PER_DAY
from features.snapshot import Snapshot

RECENT_DAYS = 90
ORDER_COLUMN, PRODUCT_COLUMN, QUANTITY_COLUMN = "invoice_no", "stock_code", "quantity"


def _codes(values: np.ndarray | None, mask: np.ndarray) -> np.ndarray | None:
    """Integer codes of the masked values (-1 for missing), or None when the column is absent."""
    if values is None:
        return None
    codes, _ = pd.factorize(pd.Series(values[mask], dtype=object), use_na_sentinel=True)
    return codes.astype(np.int64)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / b, np.nan)


def _per_pair(pos: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique (pos, code) pairs of rows with a known code: (pair pos, pair code, row -> pair)."""
    known = code >= 0
    width = int(code.max()) + 1 if known.any() else 1
    key = np.where(known, pos * width + code, -1)
    uniq, inverse = np.unique(key, return_inverse=True)
    valid = uniq >= 0
    return uniq // width * valid - (~valid), uniq % width, inverse


def basket_features(snap: Snapshot) -> pd.DataFrame:
    n = snap.n
    ev = snap.events
    nan = np.full(n, np.nan)
    is_purchase = ev.event_type == ev.type_code("purchase")
    is_refund = ev.event_type == ev.type_code("refund")
    pos = ev.pos[is_purchase].astype(np.int64)
    age = ev.age_days[is_purchase]
    amount = np.nan_to_num(ev.amount[is_purchase], nan=0.0)
    lines = np.bincount(pos, minlength=n).astype(np.float64)
    refund_lines = np.bincount(ev.pos[is_refund], minlength=n).astype(np.float64)
    cols: dict[str, np.ndarray] = {}

    order = _codes(snap.event_values(ORDER_COLUMN), is_purchase)
    if order is not None and len(pos):
        pair_pos, _, row_pair = _per_pair(pos, order)
        ok = pair_pos >= 0
        orders = np.bincount(pair_pos[ok], minlength=n).astype(np.float64)
        latest = np.full(len(pair_pos), np.inf)
        np.minimum.at(latest, row_pair, age)
        orders_recent = np.bincount(pair_pos[ok & (latest <= RECENT_DAYS)], minlength=n).astype(
            np.float64
        )
        value = np.bincount(row_pair, weights=amount, minlength=len(pair_pos))
        value_max = nan.copy()
        np.fmax.at(value_max, pair_pos[ok], value[ok])
        order_lines = np.bincount(pos[order >= 0], minlength=n).astype(np.float64)
        order_spend = np.bincount(pos[order >= 0], weights=amount[order >= 0], minlength=n)
        cols["orders_total"] = orders
        cols["orders_90d"] = orders_recent
        cols["lines_per_order"] = _ratio(order_lines, orders)
        cols["order_value_mean"] = _ratio(order_spend, orders)
        cols["order_value_max"] = value_max
    else:
        orders = None
        for c in ("orders_total", "orders_90d", "lines_per_order", "order_value_mean"):
            cols[c] = nan.copy() if order is None else np.zeros(n) if c[:6] == "orders" else nan
        cols["order_value_max"] = nan.copy()

    product = _codes(snap.event_values(PRODUCT_COLUMN), is_purchase)
    if product is not None:
        if order is not None:
            occasion = order
        else:  # purchase days stand in for orders
            into_day = (snap.as_of.value % NS_PER_DAY) / NS_PER_DAY
            day = np.floor(into_day - age).astype(np.int64)
            occasion = day - (day.min() if len(day) else 0)
        pp_pos, pp_code, _ = _per_pair(pos, product)
        ok = pp_pos >= 0
        distinct = np.bincount(pp_pos[ok], minlength=n).astype(np.float64)
        # Distinct (customer, product, occasion) triples, then occasions per (customer, product).
        known = (product >= 0) & (occasion >= 0)
        width = int(product.max()) + 1 if len(product) and known.any() else 1
        triples = np.unique(np.stack([pos[known], product[known], occasion[known]], axis=1), axis=0)
        if len(triples):
            pp_key = triples[:, 0] * width + triples[:, 1]
            uniq, times = np.unique(pp_key, return_counts=True)
            repeat = np.bincount(uniq[times > 1] // width, minlength=n).astype(np.float64)
            seen = np.bincount(uniq // width, minlength=n).astype(np.float64)
        else:
            repeat = seen = np.zeros(n)
        cols["distinct_products"] = distinct
        cols["products_per_order"] = _ratio(distinct, orders) if orders is not None else nan.copy()
        cols["repeat_product_share"] = _ratio(repeat, seen)
    else:
        for c in ("distinct_products", "products_per_order", "repeat_product_share"):
            cols[c] = nan.copy()

    quantity = snap.event_values(QUANTITY_COLUMN)
    if quantity is not None:
        q = pd.to_numeric(pd.Series(quantity), errors="coerce").to_numpy(dtype=np.float64)
        q_buy = np.abs(np.nan_to_num(q[is_purchase], nan=0.0))
        q_ret = np.abs(np.nan_to_num(q[is_refund], nan=0.0))
        units = np.bincount(pos, weights=q_buy, minlength=n)
        returned = np.bincount(ev.pos[is_refund], weights=q_ret, minlength=n)
        spend = np.bincount(pos, weights=amount, minlength=n)
        cols["units_total"] = units
        cols["units_per_order"] = _ratio(units, orders) if orders is not None else nan.copy()
        cols["value_per_unit"] = _ratio(spend, units)
        cols["refund_unit_share"] = _ratio(returned, units)
    else:
        for c in ("units_total", "units_per_order", "value_per_unit", "refund_unit_share"):
            cols[c] = nan.copy()
    cols["refund_line_share"] = _ratio(refund_lines, lines)
    return snap.frame(cols)
