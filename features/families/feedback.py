"""Feedback: what customers said in NPS, CSAT and CES surveys (scores only; comments are the
sentiment family's).

"Last" is the response with the latest `ts` before `as_of`; ties go to the later row.

Columns (`W` the largest of `settings.features.windows_days`):

- `nps_last`, `nps_mean`, `nps_count`, `nps_class_last` (Categorical: detractor 0-6, passive 7-8,
  promoter 9-10).
- `csat_last`, `csat_mean`, `csat_count`, `csat_trend`, and the same four for `ces`. A trend is
  the mean over the last 90 days minus the mean before them; NaN when either side is empty.
- `negative_responses_total`, `negative_responses_{W}d`: responses at or below
  `contract.NEGATIVE_AT_OR_BELOW` for their survey.
- `days_since_last_detractor`, `days_since_last_response`: NaN when there was none.

Without a feedback table every column is missing (NaN, counts included): no table says nothing
about a customer, unlike a table in which the customer has no responses (counts 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract import NEGATIVE_AT_OR_BELOW, SURVEYS
from features.snapshot import FeedbackView, Snapshot

NPS_CLASSES: tuple[str, ...] = ("detractor", "passive", "promoter")
TREND_DAYS = 90
_PER_SURVEY = ("last", "mean", "count", "trend")


def _mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _empty() -> FeedbackView:
    nothing = np.empty(0)
    return FeedbackView(
        pos=np.empty(0, dtype=np.int64),
        age_days=nothing,
        survey=np.empty(0, dtype=np.int8),
        score=nothing,
        comment=np.empty(0, dtype=object),
    )


def _pick(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`values[index]`, NaN where index is -1."""
    out = np.full(len(index), np.nan)
    has = index >= 0
    out[has] = values[index[has]]
    return out


def feedback_features(snap: Snapshot) -> pd.DataFrame:
    fb = snap.feedback if snap.feedback is not None else _empty()
    widest = snap.settings.features.windows_days[-1]
    stats: dict[str, np.ndarray] = {}
    for name in SURVEYS:
        mine = fb.survey == FeedbackView.survey_code(name)
        pos, age, score = fb.pos[mine], fb.age_days[mine], fb.score[mine]
        count = snap.count(pos)
        recent = age <= TREND_DAYS
        stats[f"{name}_last"] = _pick(score, snap.latest_per_customer(pos, age))
        stats[f"{name}_mean"] = _mean(snap.count(pos, score), count)
        stats[f"{name}_count"] = count
        stats[f"{name}_trend"] = _mean(
            snap.count(pos[recent], score[recent]), snap.count(pos[recent])
        ) - _mean(snap.count(pos[~recent], score[~recent]), snap.count(pos[~recent]))

    threshold = np.array([NEGATIVE_AT_OR_BELOW[s] for s in SURVEYS], dtype=np.float64)
    negative = fb.score <= threshold[fb.survey.astype(np.int64)]
    detractor = (fb.survey == FeedbackView.survey_code("nps")) & (
        fb.score <= NEGATIVE_AT_OR_BELOW["nps"]
    )
    cols: dict[str, np.ndarray] = {
        "nps_last": stats["nps_last"],
        "nps_mean": stats["nps_mean"],
        "nps_count": stats["nps_count"],
        **{f"{s}_{stat}": stats[f"{s}_{stat}"] for s in ("csat", "ces") for stat in _PER_SURVEY},
        "negative_responses_total": snap.count(fb.pos[negative]),
        f"negative_responses_{widest}d": snap.count(fb.pos[negative & (fb.age_days <= widest)]),
        "days_since_last_detractor": snap.min_per_customer(
            fb.pos[detractor], fb.age_days[detractor]
        ),
        "days_since_last_response": snap.min_per_customer(fb.pos, fb.age_days),
    }
    if snap.feedback is None:
        cols = {name: np.full(snap.n, np.nan) for name in cols}
    nps_last = cols["nps_last"]
    classes = np.select([nps_last <= 6, nps_last <= 8, nps_last <= 10], [0, 1, 2], default=-1)
    frame = snap.frame(cols)
    frame.insert(3, "nps_class_last", pd.Categorical.from_codes(classes, categories=NPS_CLASSES))
    return frame
