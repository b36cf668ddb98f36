"""Sentiment: the tone of survey comments, scored with VADER's compound score (-1 to 1).

VADER's lexicon ships inside the `vaderSentiment` wheel, so nothing is downloaded. The analyzer
is created on first use (not at import) and kept for the process. Each distinct comment text is
scored once per call: comments repeat a lot, and scoring is the only per-value Python loop here.

Columns (`W` the largest of `settings.features.windows_days`, `m` the window closest to 90 days,
the smaller on a tie):

- `comments_total`, `negative_comments_total` (compound at or below
  `settings.features.negative_sentiment_threshold`), `negative_comments_{W}d`.
- `sentiment_mean`, `sentiment_min`, `sentiment_last` (the latest comment; ties go to the later
  row), `sentiment_mean_{m}d`.

Counts are 0 and scores NaN for a customer without comments; without a feedback table every
column is NaN, counts included (as in the feedback family).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.snapshot import Snapshot

_analyzer = None


def comment_tone(texts: np.ndarray) -> np.ndarray:
    """VADER compound score of each text (an object array of distinct strings)."""
    global _analyzer
    if _analyzer is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _analyzer = SentimentIntensityAnalyzer()
    score = _analyzer.polarity_scores
    return np.fromiter((score(t)["compound"] for t in texts), dtype=np.float64, count=len(texts))


def _mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / count, np.nan)


def sentiment_features(snap: Snapshot) -> pd.DataFrame:
    windows = snap.settings.features.windows_days
    widest = windows[-1]
    middle = min(windows, key=lambda w: (abs(w - 90), w))
    threshold = snap.settings.features.negative_sentiment_threshold
    fb = snap.feedback

    if fb is None:
        pos, age, compound = np.empty(0, dtype=np.int64), np.empty(0), np.empty(0)
    else:
        has_text = pd.notna(fb.comment)
        texts = fb.comment[has_text]
        codes, distinct = pd.factorize(texts)
        compound = comment_tone(np.asarray(distinct, dtype=object))[codes]
        pos, age = fb.pos[has_text], fb.age_days[has_text]

    count = snap.count(pos)
    negative = compound <= threshold
    recent = age <= middle
    latest = snap.latest_per_customer(pos, age)
    last = np.full(snap.n, np.nan)
    last[latest >= 0] = compound[latest[latest >= 0]]
    cols: dict[str, np.ndarray] = {
        "comments_total": count,
        "negative_comments_total": snap.count(pos[negative]),
        f"negative_comments_{widest}d": snap.count(pos[negative & (age <= widest)]),
        "sentiment_mean": _mean(snap.count(pos, compound), count),
        "sentiment_min": snap.min_per_customer(pos, compound),
        "sentiment_last": last,
        f"sentiment_mean_{middle}d": _mean(
            snap.count(pos[recent], compound[recent]), snap.count(pos[recent])
        ),
    }
    if fb is None:
        cols = {name: np.full(snap.n, np.nan) for name in cols}
    return snap.frame(cols)
