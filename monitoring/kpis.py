"""CX KPIs as one tidy DataFrame: per time window, per group, per KPI.

`cx_kpis(tables, scores, as_of, settings)` returns rows of `window_days`, `group_by`, `group`,
`kpi`, `value`, `n`:

- survey KPIs over each window `[as_of - w days, as_of)` of `kpi_windows_days`, per response
  (a customer answering twice counts twice, as NPS is usually reported): `nps` in points (% of
  promoters, 9-10, minus % of detractors, 0-6; 7-8 are passive), `nps_promoters_pct`,
  `nps_detractors_pct`, `csat_mean` (1-5), `ces_mean` (1-7); `n` is the number of responses;
- `churn_rate` over each window: the share of the population at `as_of - w` that churned in
  `[as_of - w, as_of)` (`features.labels.build_labels` with the window as horizon, so the
  contract's churn definition applies); `n` is that population;
- value KPIs of the current scores, `window_days` missing: `customers`, `mean_churn_probability`,
  `mean_clv`, `value_at_risk` (sum of churn probability x CLV); `n` is the customers scored.

Groups (`group_by` / `group`): `all` / `all`; `segment` / each value of the customers table's
`segment` column ("(missing)" for none); `impact` / `high_impact` (the top `high_impact_share`
of the current scores by CLV, ties broken by customer id) and `rest` (every other scored
customer). Responses of customers who are not in the current scores count in `all` and their
segment but in no impact group. A customer who churned during a window has no current score, so
the impact groups' `churn_rate` needs the scores made before the window: with `past_scores`
(`as_of`, `customer_id`, `clv`) the groups come from the latest scoring at or before the
window's start; without, impact groups get no `churn_rate`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from features.contract import Tables, to_utc
from features.labels import build_labels
from monitoring.outcomes import require_columns, utc_column
from monitoring.settings import MonitoringSettings

KPI_COLUMNS = ("window_days", "group_by", "group", "kpi", "value", "n")
SURVEY_KPIS = ("nps", "nps_promoters_pct", "nps_detractors_pct", "csat_mean", "ces_mean")
VALUE_KPIS = ("customers", "mean_churn_probability", "mean_clv", "value_at_risk")
HIGH_IMPACT, REST = "high_impact", "rest"
MISSING = "(missing)"
PROMOTER_AT_OR_ABOVE, DETRACTOR_AT_OR_BELOW = 9, 6


def high_impact(scores: pd.DataFrame, share: float) -> pd.Series:
    """`high_impact` or `rest` per scored customer (indexed by customer_id): the top `share` of
    customers by `clv` (at least one), ties broken by customer id."""
    frame = _by_customer(scores, "the scores")
    require_columns(frame, ("clv",), "the scores")
    n = len(frame)
    top = min(n, max(1, math.ceil(share * n))) if n else 0
    ids = frame.index.astype(str).to_numpy(dtype=object)
    clv = frame["clv"].to_numpy(dtype=float)
    group = np.full(n, REST, dtype=object)
    if top:
        # Only the ties at the cut need the id order: sorting a million string ids is seconds.
        key = np.where(np.isnan(clv), -np.inf, clv)
        cut = np.partition(key, n - top)[n - top]
        above = np.flatnonzero(key > cut)
        at_cut = np.flatnonzero(key == cut)
        tied = at_cut[np.argsort(ids[at_cut], kind="stable")][: top - len(above)]
        group[above] = HIGH_IMPACT
        group[tied] = HIGH_IMPACT
    return pd.Series(group, index=pd.Index(ids, name="customer_id"), name="impact")


def _by_customer(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    if "customer_id" in frame.columns:
        frame = frame.set_index("customer_id")
    frame = frame.set_axis(frame.index.astype(str), axis=0)
    if frame.index.has_duplicates:
        raise ValueError(f"{name} have repeated customer ids; expected one row per customer")
    return frame


def _segments(tables: Tables) -> pd.Series | None:
    customers = tables.customers
    if "segment" not in customers.columns:
        return None
    seg = customers["segment"].astype(object).where(customers["segment"].notna(), MISSING)
    return pd.Series(
        seg.astype(str).to_numpy(), index=customers["customer_id"].astype(str), name="segment"
    )


def _groupings(
    ids: pd.Series, segments: pd.Series | None, impact: pd.Series | None
) -> list[tuple[str, pd.Series]]:
    """(group_by, group label per row of `ids`; missing = in no group of this kind)."""
    out = [("all", pd.Series("all", index=ids.index, dtype=object))]
    if segments is not None:
        out.append(("segment", ids.map(segments).fillna(MISSING)))
    if impact is not None:
        out.append(("impact", ids.map(impact)))
    return out


def _survey_rows(
    feedback: pd.DataFrame, window: int, groupings: list[tuple[str, pd.Series]]
) -> list[tuple]:
    rows: list[tuple] = []
    survey = feedback["survey"].astype(str).to_numpy()
    score = feedback["score"].to_numpy(dtype=float)
    for group_by, labels in groupings:
        present = labels.notna().to_numpy()
        for group in sorted(labels[present].unique(), key=str):
            mask = present & (labels.to_numpy() == group)
            nps = score[mask & (survey == "nps")]
            n = len(nps)
            if n:
                promoters = 100.0 * float(np.mean(nps >= PROMOTER_AT_OR_ABOVE))
                detractors = 100.0 * float(np.mean(nps <= DETRACTOR_AT_OR_BELOW))
                values = (promoters - detractors, promoters, detractors)
            else:
                values = (np.nan, np.nan, np.nan)
            for kpi, value in zip(SURVEY_KPIS[:3], values, strict=True):
                rows.append((window, group_by, group, kpi, value, n))
            for kpi, name in (("csat_mean", "csat"), ("ces_mean", "ces")):
                part = score[mask & (survey == name)]
                value = float(part.mean()) if len(part) else np.nan
                rows.append((window, group_by, group, kpi, value, len(part)))
    return rows


def _churn_rows(
    churned: pd.Series, window: int, groupings: list[tuple[str, pd.Series]]
) -> list[tuple]:
    rows: list[tuple] = []
    values = churned.to_numpy(dtype=float)
    for group_by, labels in groupings:
        present = labels.notna().to_numpy()
        for group in sorted(labels[present].unique(), key=str):
            mask = present & (labels.to_numpy() == group)
            n = int(mask.sum())
            rows.append(
                (
                    window,
                    group_by,
                    group,
                    "churn_rate",
                    float(values[mask].mean()) if n else np.nan,
                    n,
                )
            )
    return rows


def _value_rows(scores: pd.DataFrame, groupings: list[tuple[str, pd.Series]]) -> list[tuple]:
    rows: list[tuple] = []
    p = scores["churn_probability"].to_numpy(dtype=float)
    clv = scores["clv"].to_numpy(dtype=float)
    if "value_at_risk" in scores.columns:
        var = scores["value_at_risk"].to_numpy(dtype=float)
    else:
        var = p * clv
    for group_by, labels in groupings:
        present = labels.notna().to_numpy()
        for group in sorted(labels[present].unique(), key=str):
            mask = present & (labels.to_numpy() == group)
            n = int(mask.sum())
            values = (float(n), p[mask].mean(), clv[mask].mean(), var[mask].sum())
            for kpi, value in zip(VALUE_KPIS, values, strict=True):
                rows.append((pd.NA, group_by, group, kpi, float(value), n))
    return rows


def _impact_before(
    past_scores: pd.DataFrame | None, start: pd.Timestamp, share: float
) -> pd.Series | None:
    """Impact groups from the latest past scoring at or before `start`, or None."""
    if past_scores is None or past_scores.empty:
        return None
    require_columns(past_scores, ("as_of", "customer_id", "clv"), "the past scores")
    made_at = utc_column(past_scores["as_of"], "as_of")
    before = made_at[made_at <= start]
    if before.empty:
        return None
    latest = before.max()
    return high_impact(past_scores[(made_at == latest).to_numpy()], share)


def cx_kpis(
    tables: Tables,
    scores: pd.DataFrame | None,
    as_of: str | pd.Timestamp,
    settings: MonitoringSettings,
    *,
    activity_event_types: Iterable[str] = ("purchase",),
    past_scores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The tidy KPI frame described in the module docstring. `scores`: the current scores
    (`customer_id`, `churn_probability`, `clv`, optional `value_at_risk`), or None for survey
    and churn KPIs only. Only rows before `as_of` are used."""
    as_of = to_utc(as_of)
    segments = _segments(tables)
    impact = None
    rows: list[tuple] = []
    if scores is not None:
        current = _by_customer(scores, "the scores")
        require_columns(current, ("churn_probability", "clv"), "the scores")
        impact = high_impact(current, settings.high_impact_share)
        ids = pd.Series(current.index, index=current.index)
        rows += _value_rows(current, _groupings(ids, segments, impact))

    feedback = tables.feedback
    for window in settings.kpi_windows_days:
        start = as_of - pd.Timedelta(days=window)
        if feedback is not None:
            in_window = ((feedback["ts"] >= start) & (feedback["ts"] < as_of)).to_numpy()
            part = feedback[in_window]
            ids = part["customer_id"].astype(str).reset_index(drop=True)
            rows += _survey_rows(
                part.reset_index(drop=True), window, _groupings(ids, segments, impact)
            )
        labels = build_labels(
            tables, start, window, activity_event_types=tuple(activity_event_types)
        )
        ids = pd.Series(labels.index.astype(str), index=labels.index)
        before = _impact_before(past_scores, start, settings.high_impact_share)
        rows += _churn_rows(labels["churned"], window, _groupings(ids, segments, before))

    out = pd.DataFrame(rows, columns=list(KPI_COLUMNS))
    return out.astype({"window_days": "Int64", "value": float, "n": int}).reset_index(drop=True)


# Counts shown next to a KPI in the wide table: what its `n` means.
COUNT_COLUMNS = {
    "churn_rate": "customers_at_start",
    "nps": "nps_responses",
    "csat_mean": "csat_responses",
    "ces_mean": "ces_responses",
}


def kpi_table(kpis: pd.DataFrame) -> pd.DataFrame:
    """The tidy frame as a wide table: one row per (window, group_by, group), one column per KPI
    plus the counts behind the survey KPIs and the churn rate (`COUNT_COLUMNS`). `window` is
    "30d", "90d", ... or "current" for the value KPIs; columns with no value anywhere are dropped."""
    if kpis.empty:
        return pd.DataFrame(columns=["window", "group_by", "group"])
    window = ["current" if pd.isna(w) else f"{int(w)}d" for w in kpis["window_days"].astype(object)]
    frame = kpis.assign(window=window)
    keys = ["window", "group_by", "group"]
    values = frame.set_index([*keys, "kpi"])["value"].unstack("kpi")
    counted = frame[frame["kpi"].isin(list(COUNT_COLUMNS))]
    counts = counted.set_index([*keys, "kpi"])["n"].unstack("kpi").astype("Int64")
    counts = counts.rename(columns=COUNT_COLUMNS)
    wide = values.join(counts, how="left")
    order = []
    for kpi in (*VALUE_KPIS, "churn_rate", *SURVEY_KPIS):
        if kpi in wide.columns:
            order.append(kpi)
        if COUNT_COLUMNS.get(kpi) in wide.columns:
            order.append(COUNT_COLUMNS[kpi])
    wide = wide[order].dropna(axis=1, how="all")
    if "customers" in wide.columns:
        wide["customers"] = wide["customers"].astype("Int64")
    wide = wide.reset_index()
    rank = {"all": 0, "segment": 1, "impact": 2}
    wide["_w"] = [(1, 0) if w == "current" else (0, int(w[:-1])) for w in wide["window"]]
    wide["_g"] = wide["group_by"].map(rank)
    wide = wide.sort_values(["_w", "_g", "group"]).drop(columns=["_w", "_g"])
    wide.columns.name = None
    return wide.reset_index(drop=True)
