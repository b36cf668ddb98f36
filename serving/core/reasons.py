"""Reasons a CX agent can read: a feature and a customer's value of it, written as a short phrase
("2 unresolved complaints in the last 30 days", "last NPS 3 (detractor)", "no purchase for 94
days") instead of a column name.

`describe(feature, value)` knows the columns of every feature family (`features/families/`),
whatever the configured windows, and falls back to a readable generic form for any other column
("support tickets in the last 90 days: 5", "acquisition channel: social") so a new feature or a
static attribute of a customers table never produces a blank or a raw name.

Which features become reasons is decided by `serving.scoring.explain` from the churn model's
per-row contributions; this module only writes the words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from numbers import Number
from typing import Any

import pandas as pd

from features.contract import NEGATIVE_AT_OR_BELOW

# Event types and what one of them is called; the journey and value families' count columns.
NOUNS: dict[str, tuple[str, str]] = {
    "purchases": ("purchase", "purchases"),
    "refunds": ("refund", "refunds"),
    "events": ("interaction", "interactions"),
    "visit": ("visit", "visits"),
    "support_contact": ("support contact", "support contacts"),
    "complaint": ("complaint", "complaints"),
    "delivery_issue": ("delivery issue", "delivery issues"),
    "payment_failed": ("failed payment", "failed payments"),
    "other_events": ("other event", "other events"),
}
CHANNEL_WORDS: dict[str, str] = {
    "web": "web",
    "app": "app",
    "store": "in-store",
    "phone": "phone",
    "chat": "chat",
    "email": "email",
    "sms": "SMS",
    "social": "social media",
    "other": "other-channel",
}
SURVEY_WORDS: dict[str, str] = {"nps": "NPS", "csat": "CSAT", "ces": "CES"}
SURVEY_MAX: dict[str, int] = {"csat": 5, "ces": 7}
# VADER's customary cut-offs for a negative / positive compound score.
SENTIMENT_NEUTRAL = 0.05


# --------------------------------------------------------------------------- formatting


def missing(value: Any) -> bool:
    """None, NaN, NaT or pd.NA."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # not a scalar
        return False


def count(n: float, singular: str, plural: str | None = None, *, zero: str = "no") -> str:
    """`1 complaint`, `2 complaints`, `no complaints`."""
    plural = plural or singular + "s"
    k = int(round(float(n)))
    if k == 0:
        return f"{zero} {plural}"
    return f"{k:,} {singular if k == 1 else plural}"


def days(value: float) -> str:
    d = float(value)
    if d < 1:
        return "less than a day"
    k = int(math.floor(d))
    return f"{k:,} day" if k == 1 else f"{k:,} days"


def money(value: float) -> str:
    text = f"{float(value):,.2f}"
    return text[:-3] if text.endswith(".00") else text


def number(value: float) -> str:
    v = float(value)
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:,.2f}".rstrip("0").rstrip(".")


def percent(share: float) -> str:
    return f"{float(share) * 100:.0f}%"


def window(w: str | int) -> str:
    return "in the last day" if int(w) == 1 else f"in the last {int(w)} days"


def nps_class(score: float) -> str:
    if score <= NEGATIVE_AT_OR_BELOW["nps"]:
        return "detractor"
    return "passive" if score <= 8 else "promoter"


def tone(compound: float) -> str:
    if compound <= -SENTIMENT_NEUTRAL:
        return "negative"
    return "positive" if compound >= SENTIMENT_NEUTRAL else "neutral"


def _words(name: str) -> str:
    """A column name as words, a trailing `_{w}d` as "in the last w days"."""
    m = re.fullmatch(r"(.+)_(\d+)d", name)
    if m:
        return f"{m[1].replace('_', ' ')} {window(m[2])}"
    return name.replace("_", " ")


def generic(feature: str, value: Any) -> str:
    """The fallback for a column no rule knows: `words: value`."""
    if missing(value):
        return f"{_words(feature)}: not recorded"
    if isinstance(value, bool):
        return f"{_words(feature)}: {'yes' if value else 'no'}"
    if isinstance(value, Number):
        return f"{_words(feature)}: {number(value)}"
    return f"{_words(feature)}: {value}"


# --------------------------------------------------------------------------- rules


def _trend(what: str, none: str, period: int, t: float) -> str:
    """`(a - b) / (a + b)` of the last `period` days (a) against the `period` before (b)."""
    if missing(t):
        return f"{none} in the last {2 * period} days"
    t = float(t)
    if t <= -1:
        return f"{none} in the last {period} days, after some in the {period} before"
    if t >= 1:
        return f"{what} only in the last {period} days, none in the {period} before"
    change = 2 * t / (1 - t)  # (a - b) / b
    if round(change * 100) == 0:
        return f"{what} unchanged in the last {period} days vs the {period} before"
    direction = "down" if t < 0 else "up"
    return f"{what} {direction} {abs(change) * 100:.0f}% in the last {period} days vs the {period} before"


def _ago(what: str, never: str) -> Callable[[re.Match[str], Any], str]:
    return lambda _m, v: never if missing(v) else f"{what} {days(v)} ago"


def _window_count(m: re.Match[str], v: Any) -> str:
    singular, plural = NOUNS[m["kind"]]
    if missing(v):
        return f"{plural} {window(m['w'])}: not recorded"
    return f"{count(v, singular, plural)} {window(m['w'])}"


def _channel_count(m: re.Match[str], v: Any) -> str:
    adjective = CHANNEL_WORDS[m["channel"]]
    if missing(v):
        return f"{adjective} interactions {window(m['w'])}: not recorded"
    return f"{count(v, f'{adjective} interaction')} {window(m['w'])}"


def _amount(verb: str, nothing: str) -> Callable[[re.Match[str], Any], str]:
    def write(m: re.Match[str], v: Any) -> str:
        span = window(m["w"]) if m["w"] else "in total"
        if missing(v) or float(v) == 0:
            return f"{nothing} {span}"
        return f"{verb} {money(v)} {span}"

    return write


def _survey_last(m: re.Match[str], v: Any) -> str:
    survey = m["survey"]
    name = SURVEY_WORDS[survey]
    if missing(v):
        return f"no {name} response on record"
    if survey == "nps":
        return f"last {name} {number(v)} ({nps_class(float(v))})"
    text = f"last {name} {number(v)} of {SURVEY_MAX[survey]}"
    return text + (" (negative)" if float(v) <= NEGATIVE_AT_OR_BELOW[survey] else "")


def _survey_mean(m: re.Match[str], v: Any) -> str:
    survey = m["survey"]
    name = SURVEY_WORDS[survey]
    if missing(v):
        return f"no {name} responses on record"
    scale = "" if survey == "nps" else f" of {SURVEY_MAX[survey]}"
    return f"average {name} {float(v):.1f}{scale}"


def _survey_count(m: re.Match[str], v: Any) -> str:
    name = SURVEY_WORDS[m["survey"]]
    if missing(v):
        return f"{name} responses: not recorded"
    if float(v) == 0:
        return f"never answered an {name} survey"
    return count(v, f"{name} response")


def _survey_trend(m: re.Match[str], v: Any) -> str:
    name = SURVEY_WORDS[m["survey"]]
    if missing(v):
        return f"{name} trend unknown (no responses both before and in the last 90 days)"
    d = float(v)
    if d == 0:
        return f"{name} unchanged in the last 90 days"
    points = "point" if abs(d) == 1 else "points"
    return f"{name} {'down' if d < 0 else 'up'} {number(abs(round(d, 2)))} {points} in the last 90 days"


def _negative(noun: str) -> Callable[[re.Match[str], Any], str]:
    def write(m: re.Match[str], v: Any) -> str:
        span = window(m["w"]) if m["w"] else "in total"
        if missing(v):
            return f"negative {noun}s {span}: not recorded"
        return f"{count(v, f'negative {noun}')} {span}"

    return write


def _sentiment(kind: str) -> Callable[[re.Match[str], Any], str]:
    def write(m: re.Match[str], v: Any) -> str:
        span = f" {window(m['w'])}" if m.groupdict().get("w") else ""
        if missing(v):
            return f"no comments{span}"
        score = f"(sentiment {float(v):+.2f})"
        if kind == "mean":
            return f"comments{span} {tone(float(v))} on average {score}"
        if kind == "min":
            return f"most negative comment {score}"
        return f"last comment {tone(float(v))} {score}"

    return write


def _share_unresolved(m: re.Match[str], v: Any) -> str:
    if missing(v):
        return f"no support contacts or complaints with a known outcome {window(m['w'])}"
    return f"{percent(v)} of support contacts and complaints unresolved {window(m['w'])}"


def _entropy(m: re.Match[str], v: Any) -> str:
    if missing(v):
        return f"no interactions {window(m['w'])}"
    if float(v) < 0.5:
        return f"uses almost only one channel ({window(m['w'])[3:]})"
    return f"interactions spread across channels ({window(m['w'])[3:]})"


_KINDS = "|".join(k for k in NOUNS if k != "events")
_CHANNELS = "|".join(CHANNEL_WORDS)
_SURVEYS = "|".join(SURVEY_WORDS)

GAP_WORDS = {"mean": "usually", "last": "last", "max": "at most"}
PER_ORDER_WORDS = {"lines": "lines", "products": "products", "units": "units"}

Rule = tuple[re.Pattern[str], Callable[[re.Match[str], Any], str]]
RULES: list[Rule] = [
    (re.compile(p), f)
    for p, f in [
        # value
        (r"tenure_days", lambda _m, v: f"customer for {days(v)}"),
        (
            r"days_since_last_purchase",
            lambda _m, v: (
                "has never purchased"
                if missing(v)
                else (
                    f"no purchase for {days(v)}"
                    if float(v) >= 1
                    else "last purchase less than a day ago"
                )
            ),
        ),
        (r"days_since_last_refund", _ago("last refund", "no refunds on record")),
        (
            r"purchases_total",
            lambda _m, v: (
                "no purchases yet"
                if missing(v) or float(v) == 0
                else f"{count(v, 'purchase')} in total"
            ),
        ),
        (r"spend_(?:total|(?P<w>\d+)d)", _amount("spent", "no spend")),
        (
            r"avg_purchase_value",
            lambda _m, v: (
                "no purchases with a known value" if missing(v) else f"average purchase {money(v)}"
            ),
        ),
        (r"refunds_total", lambda _m, v: f"{count(0 if missing(v) else v, 'refund')} in total"),
        (r"refund_amount_(?:total|(?P<w>\d+)d)", _amount("refunded", "no refunds")),
        (
            r"refund_share",
            lambda _m, v: (
                "no spend to set refunds against"
                if missing(v)
                else f"refunds are {percent(v)} of spend"
            ),
        ),
        (
            r"purchase_trend_(?P<w>\d+)d",
            lambda m, v: _trend("purchases", "no purchases", int(m["w"]), v),
        ),
        (r"spend_trend_(?P<w>\d+)d", lambda m, v: _trend("spend", "no spend", int(m["w"]), v)),
        # journey
        (r"(?P<kind>purchases|refunds|events)_(?P<w>\d+)d", _window_count),
        (rf"events_(?P<channel>{_CHANNELS})_(?P<w>\d+)d", _channel_count),
        (rf"(?P<kind>{_KINDS})_(?P<w>\d+)d", _window_count),
        (r"days_since_last_visit", _ago("last visit", "no visits on record")),
        (
            r"days_since_last_support_contact",
            _ago("last support contact", "no support contacts on record"),
        ),
        (r"days_since_last_complaint", _ago("last complaint", "no complaints on record")),
        (
            r"days_since_last_delivery_issue",
            _ago("last delivery issue", "no delivery issues on record"),
        ),
        (
            r"days_since_last_payment_failed",
            _ago("last failed payment", "no failed payments on record"),
        ),
        (
            r"days_since_last_event",
            lambda _m, v: (
                "no activity on record"
                if missing(v)
                else (f"no activity for {days(v)}" if float(v) >= 1 else "active in the last day")
            ),
        ),
        (
            r"channels_used_(?P<w>\d+)d",
            lambda m, v: (
                f"no interactions {window(m['w'])}"
                if missing(v) or float(v) == 0
                else f"used {count(v, 'channel')} {window(m['w'])}"
            ),
        ),
        (r"channel_entropy_(?P<w>\d+)d", _entropy),
        (
            r"unresolved_complaints_(?P<w>\d+)d",
            lambda m, v: (
                f"{count(0 if missing(v) else v, 'unresolved complaint')} {window(m['w'])}"
            ),
        ),
        (r"unresolved_share_(?P<w>\d+)d", _share_unresolved),
        (
            r"active_days_(?P<w>\d+)d",
            lambda m, v: (
                f"not active {window(m['w'])}"
                if missing(v) or float(v) == 0
                else f"active on {number(v)} of the last {int(m['w'])} days"
            ),
        ),
        (
            r"engagement_trend_(?P<w>\d+)d",
            lambda m, v: _trend("activity", "no activity", int(m["w"]), v),
        ),
        # feedback
        (rf"(?P<survey>{_SURVEYS})_last", _survey_last),
        (
            r"nps_class_last",
            lambda _m, v: "no NPS response on record" if missing(v) else f"last NPS: {v}",
        ),
        (rf"(?P<survey>{_SURVEYS})_mean", _survey_mean),
        (rf"(?P<survey>{_SURVEYS})_count", _survey_count),
        (rf"(?P<survey>{_SURVEYS})_trend", _survey_trend),
        (r"negative_responses_(?:total|(?P<w>\d+)d)", _negative("survey response")),
        (
            r"days_since_last_detractor",
            _ago("detractor NPS response", "no detractor NPS responses on record"),
        ),
        (r"days_since_last_response", _ago("last survey response", "never answered a survey")),
        # sentiment
        (
            r"comments_total",
            lambda _m, v: (
                "no survey comments" if missing(v) or float(v) == 0 else count(v, "survey comment")
            ),
        ),
        (r"negative_comments_(?:total|(?P<w>\d+)d)", _negative("comment")),
        (r"sentiment_mean(?:_(?P<w>\d+)d)?", _sentiment("mean")),
        (r"sentiment_min", _sentiment("min")),
        (r"sentiment_last", _sentiment("last")),
        # timing
        (
            r"purchase_days_total",
            lambda _m, v: f"bought on {count(0 if missing(v) else v, 'day', zero='no')}",
        ),
        (r"days_since_first_purchase", _ago("first purchase", "has never purchased")),
        (
            r"gap_(?P<kind>mean|last|max)_days",
            lambda m, v: (
                "fewer than two purchase days"
                if missing(v)
                else f"{GAP_WORDS[m['kind']]} {days(v)} between purchases"
            ),
        ),
        (
            r"gap_std_days",
            lambda _m, v: (
                "fewer than two purchase days"
                if missing(v)
                else f"gaps between purchases vary by {days(v)}"
            ),
        ),
        (
            r"gap_cv",
            lambda _m, v: (
                "fewer than two purchase days"
                if missing(v)
                else "buys at irregular intervals"
                if float(v) > 1.0
                else "buys at fairly regular intervals"
            ),
        ),
        (
            r"overdue_ratio",
            lambda _m, v: (
                "no usual buying rhythm yet"
                if missing(v)
                else f"next purchase overdue ({number(round(float(v), 1))}x the usual gap)"
                if float(v) > 1
                else "buying on its usual rhythm"
            ),
        ),
        (
            r"overdue_z",
            lambda _m, v: (
                "no usual buying rhythm yet"
                if missing(v)
                else "next purchase later than usual"
                if float(v) > 0
                else "buying on its usual rhythm"
            ),
        ),
        (
            r"purchase_day_rate",
            lambda _m, v: (
                "has never purchased"
                if missing(v)
                else f"buys on {number(round(float(v), 1))} days a month"
            ),
        ),
        (
            r"purchase_days_last_year_window",
            lambda _m, v: (
                "no history for the same season last year"
                if missing(v)
                else f"bought on {count(v, 'day', zero='no')} in the same season last year"
            ),
        ),
        # basket
        (
            r"orders_(?:total|(?P<w>\d+)d)",
            lambda m, v: (
                "orders not known"
                if missing(v)
                else f"{count(v, 'order')}{' ' + window(m['w']) if m['w'] else ' in total'}"
            ),
        ),
        (
            r"(?P<kind>lines|products|units)_per_order",
            lambda m, v: (
                "no orders yet"
                if missing(v)
                else f"{number(round(float(v), 1))} {PER_ORDER_WORDS[m['kind']]} per order"
            ),
        ),
        (
            r"order_value_(?P<kind>mean|max)",
            lambda m, v: (
                "no orders yet"
                if missing(v)
                else f"{'average' if m['kind'] == 'mean' else 'largest'} order {money(v)}"
            ),
        ),
        (
            r"distinct_products",
            lambda _m, v: (
                "products not known" if missing(v) else f"bought {count(v, 'different product')}"
            ),
        ),
        (
            r"repeat_product_share",
            lambda _m, v: (
                "no repeat products yet" if missing(v) else f"{percent(v)} of products bought again"
            ),
        ),
        (
            r"units_total",
            lambda _m, v: "units not known" if missing(v) else f"{count(v, 'unit')} bought",
        ),
        (
            r"value_per_unit",
            lambda _m, v: "units not known" if missing(v) else f"{money(v)} per unit on average",
        ),
        (
            r"refund_(?P<kind>line|unit)_share",
            lambda m, v: (
                "no purchases to return"
                if missing(v)
                else f"{percent(v)} of {'lines' if m['kind'] == 'line' else 'units'} returned"
            ),
        ),
        # the classic model's view (BG/NBD + Gamma-Gamma)
        (
            r"btyd_p_alive",
            lambda _m, v: (
                "too little history" if missing(v) else f"{percent(v)} likely still active"
            ),
        ),
        (
            r"btyd_p_no_purchase",
            lambda _m, v: (
                "too little history"
                if missing(v)
                else f"{percent(v)} likely to make no purchase in the horizon"
            ),
        ),
        (
            r"btyd_expected_purchases",
            lambda _m, v: (
                "too little history"
                if missing(v)
                else f"about {number(round(float(v), 1))} purchase days expected"
            ),
        ),
        (
            r"btyd_expected_spend",
            lambda _m, v: (
                "too little history" if missing(v) else f"expected {money(v)} per purchase"
            ),
        ),
        (
            r"btyd_clv",
            lambda _m, v: "too little history" if missing(v) else f"expected value {money(v)}",
        ),
    ]
]


def describe(feature: str, value: Any) -> str:
    """A plain-language phrase for one feature of one customer."""
    for pattern, write in RULES:
        m = pattern.fullmatch(feature)
        if m is not None:
            return write(m, value)
    return generic(feature, value)


# The reason families the workspace filters by, for the phrases this module writes: the first
# pattern that matches names the family; anything else (static attributes, tenure) is "profile".
REASON_FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("surveys", re.compile(r"\b(NPS|CSAT|CES|survey|detractor|promoter|passive)\b")),
    ("comments", re.compile(r"comment|sentiment")),
    ("complaints and support", re.compile(r"complaint|support contact|unresolved")),
    ("delivery", re.compile(r"delivery")),
    ("payments and refunds", re.compile(r"failed payment|refund")),
    ("purchase rhythm", re.compile(r"purchase|buying|between purchases|gap")),
    ("activity", re.compile(r"visit|activity|interaction|active on|channels")),
    ("spend and value", re.compile(r"spend|spent|value")),
)
PROFILE = "profile"
FAMILIES: tuple[str, ...] = (*(name for name, _ in REASON_FAMILIES), PROFILE)


def family(reason: str | None) -> str:
    """The family of a reason phrase written by `describe` ("" for no reason)."""
    if not reason:
        return ""
    for name, pattern in REASON_FAMILIES:
        if pattern.search(reason):
            return name
    return PROFILE
