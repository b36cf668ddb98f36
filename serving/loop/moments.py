"""Negative moments ("moments of truth"): which ingested rows call for recovery, by the rules in
`settings.loop.negative` - a detractor NPS answer, a low CSAT, a high-effort CES, a complaint,
delivery issue or failed payment (unless resolved), or a comment whose tone is negative - and a
one-line description of each in words.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from configs import Settings
from features.families.sentiment import comment_tone

SURVEY_REASON = {"nps": "detractor", "csat": "low_csat", "ces": "high_effort"}
NEGATIVE_COMMENT = "negative_comment"


def negative_moments(name: str, rows: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """For checked rows of `events` or `feedback`: `reason` (a code, "" when the row is not a
    negative moment) and `detail` (the row in words), indexed like `rows`."""
    rules = settings.loop.negative
    n = len(rows)
    reason = np.full(n, "", dtype=object)
    if name == "feedback":
        survey = rows["survey"].astype(str).to_numpy()
        score = rows["score"].to_numpy(dtype=np.float64)
        limits = {
            "nps": rules.nps_at_or_below,
            "csat": rules.csat_at_or_below,
            "ces": rules.ces_at_or_below,
        }
        for s, code in SURVEY_REASON.items():
            reason[(survey == s) & (score <= limits[s])] = code
        comments = rows["comment"].astype(object).to_numpy() if "comment" in rows else None
        if rules.negative_comment and comments is not None:
            has = np.array([isinstance(c, str) and c.strip() != "" for c in comments])
            tone = np.full(n, np.nan)
            if has.any():
                tone[has] = comment_tone(comments[has])
            hit = has & (tone <= settings.features.negative_sentiment_threshold)
            reason[(reason == "") & hit] = NEGATIVE_COMMENT
        detail = [
            _survey_text(s, v, t, c)
            for s, v, t, c in zip(
                survey,
                score,
                rows["ts"],
                comments if comments is not None else [None] * n,
                strict=True,
            )
        ]
    else:
        kind = rows["event_type"].astype(str).to_numpy()
        hit = np.isin(kind, list(rules.event_types))
        if rules.skip_resolved and "resolved" in rows:
            resolved = rows["resolved"].astype("boolean").fillna(False).to_numpy(dtype=bool)
            hit &= ~resolved
        reason[hit] = kind[hit]
        amounts = rows["amount"] if "amount" in rows else pd.Series(np.nan, index=rows.index)
        detail = [
            _event_text(k, ch, t, a)
            for k, ch, t, a in zip(
                kind, rows["channel"].astype(str), rows["ts"], amounts, strict=True
            )
        ]
    return pd.DataFrame({"reason": reason, "detail": detail}, index=rows.index)


def _survey_text(survey: str, score: float, ts: pd.Timestamp, comment: object) -> str:
    text = f"{survey.upper()} {score:.0f} on {ts:%Y-%m-%d %H:%M} UTC"
    if isinstance(comment, str) and comment.strip():
        text += f': "{comment.strip()[:300]}"'
    return text


def _event_text(kind: str, channel: str, ts: pd.Timestamp, amount: float) -> str:
    text = f"{kind.replace('_', ' ')} via {channel} on {ts:%Y-%m-%d %H:%M} UTC"
    if amount is not None and not pd.isna(amount):
        text += f" (amount {amount:,.2f})"
    return text
