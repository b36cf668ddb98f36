"""The synthetic CX world: a subscription business over about two years, as raw contract tables.

This module owns `generate_world` (customers, events, feedback and churn as plain DataFrames)
and `write_world` (those tables as deterministic Parquet files). Nothing else in the project
simulates data; demos, tests and benchmarks all draw their worlds from here.

The world is a latent-state simulation run in ~30-day periods for all customers at once:

- each customer has a latent satisfaction that follows an AR(1) process around a personal mean
  and takes shocks from what happened to them last period (unresolved complaints, delivery
  issues, failed payments hurt; resolved support helps);
- satisfaction drives engagement (event rates), survey scores and comment tone;
- a hazard built only from earlier periods (last period's satisfaction and decaying tallies of
  bad and good experiences, detractor and promoter NPS, negative comments, gaps without activity
  and falling engagement, less a tenure effect) decides who starts to drift away. A drifting
  customer engages and buys less, rates lower and complains more, and leaves within a few
  periods; a few customers leave abruptly with no warning. So the signals a model can see always
  precede the churn they explain, as they do in a real book.

`drift=True` changes behaviour in the last ~4 months only (more app, less web, three times the
delivery issues, larger baskets, lower satisfaction and NPS); every period draws from its own
random stream, so everything before the drift is identical with and without it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import CHANNELS, KNOWN_EVENT_TYPES, NEGATIVE_AT_OR_BELOW, SURVEYS, to_utc

SEGMENTS: tuple[str, ...] = ("consumer", "small_business", "enterprise")
PLANS: tuple[str, ...] = ("basic", "standard", "premium")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")
ACQUISITION_CHANNELS: tuple[str, ...] = (
    "organic",
    "paid_search",
    "referral",
    "partner",
    "social_ads",
)
GENERIC_EVENT_TYPES: tuple[str, ...] = ("email_open", "sms_click", "social_mention")
EVENT_TYPES: tuple[str, ...] = KNOWN_EVENT_TYPES + GENERIC_EVENT_TYPES
SURVEY_NAMES: tuple[str, ...] = tuple(SURVEYS)

PERIOD_DAYS = 30
# Drift covers roughly the last DRIFT_DAYS of the world, rounded out to whole periods.
DRIFT_DAYS = 120
EXISTING_SHARE = 0.30
# New signups stop this many days before the end so every customer has some history.
SIGNUP_STOP_DAYS = 60
# Drifting away: per-period chance a drifting customer leaves, how much of their usual activity
# they keep, and how much lower their mood shows. Abrupt leavers face the hazard less this shift.
DRIFTING_LEAVE_P = 0.35
DRIFTING_ACTIVITY = 0.25
DRIFTING_MOOD = 1.5
ABRUPT_SHIFT = 2.5

_DAY = 86_400
_EV = {name: i for i, name in enumerate(EVENT_TYPES)}
_CH = {name: i for i, name in enumerate(CHANNELS)}
_SV = {name: i for i, name in enumerate(SURVEY_NAMES)}
# A response at or above this score reads as positive (NPS promoter, CSAT 4-5, CES 6-7).
_POSITIVE_AT_OR_ABOVE = {"nps": 9, "csat": 4, "ces": 6}
_ACTIVITY_TYPES = np.array(
    [_EV["visit"], _EV["purchase"], _EV["email_open"], _EV["sms_click"]], dtype=np.int8
)

# Conditional categorical tables: row = segment (consumer, small_business, enterprise).
_SEGMENT_P = (0.70, 0.22, 0.08)
_PLAN_P = ((0.50, 0.35, 0.15), (0.30, 0.45, 0.25), (0.10, 0.40, 0.50))
_ACQ_P = (
    (0.40, 0.25, 0.15, 0.05, 0.15),
    (0.35, 0.25, 0.15, 0.20, 0.05),
    (0.25, 0.10, 0.15, 0.48, 0.02),
)
_REGION_P = (0.22, 0.18, 0.20, 0.25, 0.15)

# Where each event type can happen, with base weights over contract.CHANNELS; a customer's own
# channel affinities reweight these.
_CHANNEL_WEIGHTS: dict[str, dict[str, float]] = {
    "visit": {"web": 0.55, "app": 0.45},
    "purchase": {"web": 0.45, "app": 0.30, "store": 0.18, "phone": 0.07},
    "refund": {"web": 0.40, "app": 0.25, "store": 0.20, "phone": 0.15},
    "support_contact": {"phone": 0.40, "chat": 0.35, "email": 0.25},
    "complaint": {"phone": 0.35, "chat": 0.25, "email": 0.25, "social": 0.15},
    "delivery_issue": {"web": 0.30, "app": 0.30, "phone": 0.30, "other": 0.10},
    "payment_failed": {"other": 0.60, "web": 0.25, "app": 0.15},
    "email_open": {"email": 1.0},
    "sms_click": {"sms": 1.0},
    "social_mention": {"social": 1.0},
}

# Comment templates: opener + topic phrase + sentiment phrase + closer. Every negative text
# scores below -0.05 and every positive one above +0.05 with VADER (checked in the tests).
_TOPICS: dict[str, tuple[str, ...]] = {
    "delivery": ("the delivery", "my last delivery", "the courier", "shipping", "the parcel"),
    "support": (
        "the support team",
        "customer service",
        "the agent I spoke to",
        "the help desk",
        "the call centre",
    ),
    "price": ("the price", "the pricing", "the monthly fee", "the cost", "the latest price change"),
    "app": ("the app", "the mobile app", "the new app update", "the app login", "the app search"),
    "billing": (
        "billing",
        "my invoice",
        "the payment page",
        "the direct debit",
        "the billing process",
    ),
    "product": (
        "the product",
        "the build quality",
        "my order",
        "the item I got",
        "the product range",
    ),
    "website": (
        "the website",
        "checkout",
        "the online account",
        "the site search",
        "the order tracking",
    ),
    "subscription": (
        "my subscription",
        "the plan",
        "the renewal",
        "the plan change",
        "the membership",
    ),
}
_TONES: tuple[str, ...] = ("negative", "neutral", "positive")
_PHRASES: dict[str, tuple[str, ...]] = {
    "negative": (
        "was terrible",
        "was a horrible mess",
        "has been awful lately",
        "was really disappointing",
        "keeps failing me",
        "is frustrating and slow",
        "was the worst I have seen",
        "made me angry",
        "is a total disaster",
        "has been bad for weeks",
    ),
    "neutral": (
        "was okay",
        "was fine",
        "was average",
        "did the job",
        "was as expected",
        "could be better",
        "was alright",
        "is acceptable",
        "was standard",
        "was so-so",
    ),
    "positive": (
        "was excellent",
        "was great",
        "has been fantastic",
        "is really helpful",
        "made things easy",
        "was quick and friendly",
        "is amazing",
        "was perfect",
        "is wonderful",
        "was a pleasure",
    ),
}
_CLOSERS: dict[str, tuple[str, ...]] = {
    "negative": (
        ".",
        ". Very unhappy.",
        ". I am thinking of cancelling.",
        ", not acceptable.",
        ". Fix it.",
        ". So annoyed.",
    ),
    "neutral": (
        ".",
        ". Nothing special.",
        ", I suppose.",
        ". Not much to add.",
        ". No strong view.",
        ", as usual.",
    ),
    "positive": (
        ".",
        ". Thank you!",
        ". Love it.",
        ", keep it up.",
        ". Very happy.",
        ". Highly recommend.",
    ),
}
_OPENERS: tuple[str, ...] = ("", "Overall, ", "This time ", "Lately ")
_TOPIC_NAMES: tuple[str, ...] = tuple(_TOPICS)
_TOPIC = {name: i for i, name in enumerate(_TOPIC_NAMES)}
# Texts per (tone, topic) cell of the bank; the same for every cell by construction.
_CELL = len(_OPENERS) * 5 * 10 * 6
# Comment probability by tone: unhappy customers write more.
_COMMENT_P = np.array([0.55, 0.30, 0.38])


def comment_bank() -> np.ndarray:
    """Every comment text, as an object array laid out in (tone, topic) cells of `_CELL` texts."""
    texts = []
    for tone in _TONES:
        for topic in _TOPIC_NAMES:
            for opener, subject, phrase, closer in itertools.product(
                _OPENERS, _TOPICS[topic], _PHRASES[tone], _CLOSERS[tone]
            ):
                text = f"{opener}{subject} {phrase}{closer}"
                texts.append(text[0].upper() + text[1:])
    return np.array(texts, dtype=object)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pick_rows(u: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """Categorical draw per row: `cum` holds each row's cumulative (unnormalised) weights."""
    pick = (u[:, None] * cum[:, -1:] >= cum).sum(axis=1)
    return np.minimum(pick, cum.shape[1] - 1)


class _World:
    """Customer attributes, latent state and the rows produced so far, as flat NumPy arrays."""

    def __init__(self, n: int, days: int, rng: np.random.Generator) -> None:
        self.n, self.days = n, days
        segment = rng.choice(3, size=n, p=_SEGMENT_P).astype(np.int8)
        plan = _pick_rows(rng.random(n), np.cumsum(np.array(_PLAN_P), axis=1)[segment])
        acquisition = _pick_rows(rng.random(n), np.cumsum(np.array(_ACQ_P), axis=1)[segment])
        region = rng.choice(5, size=n, p=_REGION_P)
        age = np.clip(np.rint(rng.normal(42.0, 13.0, n)), 18, 85).astype(np.int64)
        existing = rng.random(n) < EXISTING_SHARE
        signup = np.where(
            existing,
            rng.integers(-365, 0, n),
            rng.integers(0, days - SIGNUP_STOP_DAYS, n),
        )
        # Ids follow signup order, as a real system would hand them out.
        order = np.argsort(signup, kind="stable")
        self.segment = segment[order]
        self.plan = plan[order].astype(np.int8)
        self.acquisition = acquisition[order].astype(np.int8)
        self.region = region[order].astype(np.int8)
        self.age = age[order]
        self.signup_day = signup[order].astype(np.int32)

        seg, pl, acq = self.segment, self.plan, self.acquisition
        self.mu = (
            rng.normal(0.0, 0.7, n)
            + np.array([-0.10, 0.0, 0.15])[pl]
            + np.array([0.0, -0.15, 0.25, 0.05, -0.10])[acq]
            + np.array([0.0, 0.0, 0.10])[seg]
        ).astype(np.float32)
        # Engagement heterogeneity: a few heavy users, many light ones.
        self.activity = (rng.gamma(2.0, 0.5, n) * np.array([1.0, 1.2, 1.5])[seg]).astype(np.float32)
        self.value_level = (
            np.array([3.2, 3.7, 4.2])[pl] + np.array([0.0, 0.6, 1.3])[seg] + rng.normal(0, 0.35, n)
        ).astype(np.float32)
        # Younger customers lean to app, chat and social; older ones to store and phone; business
        # accounts to phone and email. Per-customer noise makes the preference personal.
        tilt = (self.age - 40.0)[:, None] * np.array(
            [0.0, -0.035, 0.02, 0.025, -0.015, 0.0, 0.0, -0.02, 0.0]
        )
        enterprise = (seg == 2)[:, None] * np.array([0, 0, 0, 0.3, 0, 0.3, 0, 0, 0])
        self.affinity = np.exp(rng.normal(0.0, 0.6, (n, len(CHANNELS))) + tilt + enterprise).astype(
            np.float32
        )

        self.loop = None  # a features.synthetic_loop.LoopSimulation when the loop is simulated
        self.alive = np.ones(n, dtype=bool)
        self.seen = np.zeros(n, dtype=bool)
        self.drifting = np.zeros(n, dtype=bool)
        self.churn_day = np.full(n, -1, dtype=np.int32)
        self.sat = self.mu.copy()
        # Carried from one period to the next: the shock to satisfaction, decaying tallies of
        # experiences (each halves per period), months without activity and engagement trend.
        self.shock = np.zeros(n, np.float32)
        self.acc_unresolved = np.zeros(n, np.float32)
        self.acc_delivery = np.zeros(n, np.float32)
        self.acc_payment = np.zeros(n, np.float32)
        self.acc_resolved = np.zeros(n, np.float32)
        self.acc_detractor = np.zeros(n, np.float32)
        self.acc_promoter = np.zeros(n, np.float32)
        self.acc_negative_comment = np.zeros(n, np.float32)
        self.gap = np.zeros(n, np.float32)
        self.eng_ratio = np.zeros(n, np.float32)
        self.eng_ewma = np.zeros(n, np.float32)

        self.ev: dict[str, list[np.ndarray]] = {
            k: [] for k in ("cust", "sec", "type", "channel", "amount", "resolved")
        }
        self.fb: dict[str, list[np.ndarray]] = {
            k: [] for k in ("cust", "sec", "survey", "score", "comment")
        }


class _Period:
    """One period's event rows, with customers indexed locally 0..k-1 into `idx`."""

    def __init__(self, idx: np.ndarray) -> None:
        self.idx = idx
        self.parts: list[
            tuple[np.ndarray, np.ndarray, int, np.ndarray | None, np.ndarray | None]
        ] = []

    def add(
        self,
        loc: np.ndarray,
        sec: np.ndarray,
        etype: int,
        amount: np.ndarray | None = None,
        resolved: np.ndarray | None = None,
    ) -> None:
        self.parts.append((loc, sec, etype, amount, resolved))


def _spread(g: np.random.Generator, rate: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Poisson counts per customer at `rate`, placed uniformly in each customer's window."""
    loc = np.repeat(np.arange(len(rate)), g.poisson(rate))
    sec = lo[loc] + (g.random(len(loc)) * (hi[loc] - lo[loc])).astype(np.int64)
    return loc, sec


def _follow(g, loc, sec, p, min_days, max_days, hi):
    """Events triggered by earlier ones with probability `p`, after a delay; those that would land
    after the customer's window (churn, period end) never happen."""
    hit = g.random(len(loc)) < p
    delay = (g.uniform(min_days, max_days, int(hit.sum())) * _DAY).astype(np.int64)
    child_loc, child_sec = loc[hit], sec[hit] + delay
    keep = child_sec < hi[child_loc]
    return child_loc[keep], child_sec[keep], np.flatnonzero(hit)[keep]


def _channels(g, world: _World, etype: str, cust: np.ndarray, drifted: bool) -> np.ndarray:
    weights = _CHANNEL_WEIGHTS[etype]
    allowed = np.array([_CH[c] for c in weights])
    if len(allowed) == 1:
        return np.full(len(cust), allowed[0], dtype=np.int8)
    base = np.array(list(weights.values()), dtype=np.float32)
    if drifted:
        base = base * np.where(
            allowed == _CH["app"], 3.0, np.where(allowed == _CH["web"], 0.5, 1.0)
        )
    w = world.affinity[cust[:, None], allowed[None, :]] * base.astype(np.float32)
    pick = _pick_rows(g.random(len(cust), dtype=np.float32), np.cumsum(w, axis=1))
    return allowed[pick].astype(np.int8)


def _score(g, latent, noise, survey: str) -> np.ndarray:
    lo, hi = SURVEYS[survey]
    return np.clip(np.rint(latent + g.normal(0.0, noise, len(latent))), lo, hi).astype(np.int8)


def _simulate_period(w: _World, m: int, g: np.random.Generator, drifted: bool) -> tuple[int, int]:
    """Advance the world by period `m`; returns (customers in the book, of whom churned)."""
    ps, pe = m * PERIOD_DAYS, min((m + 1) * PERIOD_DAYS, w.days)
    idx = np.flatnonzero(w.alive & (w.signup_day < pe))
    k = len(idx)
    signup = w.signup_day[idx]
    newcomer = ~w.seen[idx]

    # Churn this period depends only on state left by earlier periods. Tallies are capped so one
    # unlucky streak raises the risk a lot without making churn certain.
    tenure = np.maximum(ps - signup, 0) / PERIOD_DAYS
    sat_prev = np.where(newcomer, w.mu[idx], w.sat[idx])
    z = (
        -4.0
        + np.array([0.25, 0.0, -0.20])[w.plan[idx]]
        + np.array([0.10, 0.0, -0.50])[w.segment[idx]]
        + 0.9 * np.exp(-tenure / 4.0)
        - 0.7 * sat_prev
        + 0.9 * np.minimum(w.acc_unresolved[idx], 2.0)
        + 0.45 * np.minimum(w.acc_delivery[idx], 2.0)
        + 0.9 * np.minimum(w.acc_payment[idx], 2.0)
        - 0.35 * np.minimum(w.acc_resolved[idx], 2.0)
        + 0.8 * np.minimum(w.acc_detractor[idx], 2.0)
        - 0.5 * np.minimum(w.acc_promoter[idx], 2.0)
        + 0.5 * np.minimum(w.acc_negative_comment[idx], 2.0)
        + 0.12 * np.minimum(w.gap[idx], 6.0)
        - 0.25 * w.eng_ratio[idx]
    )
    first = np.maximum(ps, signup + 1)
    span = pe - first
    frac = np.maximum(span, 0) / PERIOD_DAYS
    drifting_prev = w.drifting[idx]
    monthly = np.where(drifting_prev, DRIFTING_LEAVE_P, _sigmoid(z - ABRUPT_SHIFT))
    p_churn = np.where(span > 0, 1.0 - (1.0 - monthly) ** frac, 0.0)
    churned = g.random(k) < p_churn
    onset = ~drifting_prev & ~churned & (g.random(k) < 1.0 - (1.0 - _sigmoid(z)) ** frac)
    drifting = drifting_prev | onset
    churn_day = first + (g.random(k) * np.maximum(span, 1)).astype(np.int32)
    if w.loop is not None:
        churned = w.loop.protect(idx, churned, churn_day)
    lo = np.maximum(ps, signup).astype(np.int64) * _DAY
    hi = np.where(churned, churn_day, pe).astype(np.int64) * _DAY
    expo = (hi - lo) / (PERIOD_DAYS * _DAY)

    # Satisfaction moves before this period's experiences are drawn.
    mu = w.mu[idx] - (0.45 if drifted else 0.0)
    sat = np.where(
        newcomer,
        mu + g.normal(0.0, 0.5, k),
        mu + 0.75 * (sat_prev - mu) + w.shock[idx] + g.normal(0.0, 0.35, k),
    ).astype(np.float32)
    w.value_level[idx] += g.normal(0.0, 0.03, k).astype(np.float32)
    # What a drifting customer shows this period (not carried into their satisfaction state).
    sat = np.where(drifting, sat - DRIFTING_MOOD, sat).astype(np.float32)

    act = w.activity[idx] * np.where(drifting, DRIFTING_ACTIVITY, 1.0).astype(np.float32)
    cust = idx
    # Happier customers engage more; social mentions come from both ends of the mood scale.
    per = _Period(idx)
    for etype, rate in (
        ("visit", 0.40 * act * np.exp(0.35 * sat)),
        ("email_open", 0.07 * np.exp(0.2 * sat)),
        ("sms_click", np.full(k, 0.02)),
        ("social_mention", 0.01 * np.exp(0.3 * np.abs(sat))),
    ):
        loc, sec = _spread(g, rate * expo, lo, hi)
        per.add(loc, sec, _EV[etype])

    # Purchases and what follows them: delivery issues, refunds, complaints, support contacts.
    buy_rate = 0.14 * act * np.exp(0.3 * sat) * np.array([1.0, 1.3, 1.6])[w.segment[idx]]
    p_loc, p_sec = _spread(g, buy_rate * expo, lo, hi)
    level = w.value_level[cust[p_loc]]
    p_amt = np.round(
        np.maximum(np.exp(level + g.normal(0.0, 0.45, len(p_loc))), 0.5)
        * (1.3 if drifted else 1.0),
        2,
    )
    per.add(p_loc, p_sec, _EV["purchase"], amount=p_amt)
    d_loc, d_sec, d_parent = _follow(g, p_loc, p_sec, 0.21 if drifted else 0.07, 1, 6, hi)
    per.add(d_loc, d_sec, _EV["delivery_issue"])
    issue = np.zeros(len(p_loc), dtype=bool)
    issue[d_parent] = True
    r_loc, r_sec, r_parent = _follow(g, p_loc, p_sec, np.where(issue, 0.35, 0.04), 6, 16, hi)
    full = g.random(len(r_loc)) < 0.6
    r_amt = -np.round(p_amt[r_parent] * np.where(full, 1.0, g.uniform(0.2, 0.9, len(r_loc))), 2)
    per.add(r_loc, r_sec, _EV["refund"], amount=np.minimum(r_amt, -0.01))

    pf_loc, pf_sec = _spread(g, 0.012 * np.array([1.3, 1.0, 0.8])[w.plan[idx]] * expo, lo, hi)
    per.add(pf_loc, pf_sec, _EV["payment_failed"])

    s_loc0, s_sec0 = _spread(g, 0.04 * np.exp(-0.25 * sat) * expo, lo, hi)
    s_loc1, s_sec1, _ = _follow(g, pf_loc, pf_sec, 0.4, 0.05, 2, hi)
    s_loc2, s_sec2, _ = _follow(g, d_loc, d_sec, 0.3, 0.05, 2, hi)
    s_loc = np.concatenate([s_loc0, s_loc1, s_loc2])
    s_sec = np.concatenate([s_sec0, s_sec1, s_sec2])
    s_res = g.random(len(s_loc)) < _sigmoid(1.3 + 0.5 * sat[s_loc])
    per.add(s_loc, s_sec, _EV["support_contact"], resolved=s_res)

    c_loc0, c_sec0 = _spread(g, 0.008 * np.exp(-0.8 * sat) * expo, lo, hi)
    c_loc1, c_sec1, _ = _follow(g, d_loc, d_sec, 0.3, 0.0, 2, hi)
    c_loc = np.concatenate([c_loc0, c_loc1])
    c_sec = np.concatenate([c_sec0, c_sec1])
    c_res = g.random(len(c_loc)) < _sigmoid(0.1 + 0.5 * sat[c_loc])
    per.add(c_loc, c_sec, _EV["complaint"], resolved=c_res)

    # Surveys: transactional CSAT/CES after support and some purchases, relational NPS.
    fb: list[tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]] = []
    res_shift = np.where(s_res, 0.7, -1.3)
    loc, sec, parent = _follow(g, s_loc, s_sec, 0.35, 0.05, 2, hi)
    lat = 3.4 + 0.6 * sat[loc] + res_shift[parent]
    fb.append(
        (loc, sec, _SV["csat"], _score(g, lat, 0.7, "csat"), np.full(len(loc), _TOPIC["support"]))
    )
    loc, sec, parent = _follow(g, s_loc, s_sec, 0.15, 0.05, 2, hi)
    lat = 4.6 + 0.7 * sat[loc] + np.where(s_res, 1.0, -1.8)[parent]
    fb.append(
        (loc, sec, _SV["ces"], _score(g, lat, 0.9, "ces"), np.full(len(loc), _TOPIC["support"]))
    )
    loc, sec, parent = _follow(g, p_loc, p_sec, 0.08, 3, 10, hi)
    lat = 4.1 + 0.5 * sat[loc] - 1.8 * issue[parent]
    topic = np.where(issue[parent], _TOPIC["delivery"], _TOPIC["product"])
    fb.append((loc, sec, _SV["csat"], _score(g, lat, 0.7, "csat"), topic))
    loc, sec = _spread(g, np.full(k, 0.042) * expo, lo, hi)
    lat = (
        7.3 + 1.7 * sat[loc] - 1.5 * (w.acc_unresolved[cust[loc]] > 0.4) - (0.6 if drifted else 0.0)
    )
    recent = np.select(
        [w.acc_delivery[cust[loc]] > 0.4, w.acc_payment[cust[loc]] > 0.4],
        [_TOPIC["delivery"], _TOPIC["billing"]],
        g.integers(0, len(_TOPIC_NAMES), len(loc)),
    )
    fb.append((loc, sec, _SV["nps"], _score(g, lat, 1.2, "nps"), recent))

    f_loc = np.concatenate([f[0] for f in fb])
    f_sec = np.concatenate([f[1] for f in fb])
    f_survey = np.concatenate([np.full(len(f[0]), f[2], dtype=np.int8) for f in fb])
    f_score = np.concatenate([f[3] for f in fb])
    f_topic = np.concatenate([f[4] for f in fb])
    neg_cut = np.array([NEGATIVE_AT_OR_BELOW[s] for s in SURVEY_NAMES])[f_survey]
    pos_cut = np.array([_POSITIVE_AT_OR_ABOVE[s] for s in SURVEY_NAMES])[f_survey]
    tone = np.where(f_score <= neg_cut, 0, np.where(f_score >= pos_cut, 2, 1))
    has_comment = g.random(len(f_loc)) < _COMMENT_P[tone]
    topic = np.where(
        g.random(len(f_loc)) < 0.6, f_topic, g.integers(0, len(_TOPIC_NAMES), len(f_loc))
    )
    text = (tone * len(_TOPIC_NAMES) + topic) * _CELL + g.integers(0, _CELL, len(f_loc))
    comment = np.where(has_comment, text, -1).astype(np.int32)

    _record(w, g, per, drifted, (f_loc, f_sec, f_survey, f_score, comment))

    # State for the next period, from this period's experiences.
    def tally(loc: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(loc if mask is None else loc[mask], minlength=k).astype(np.float32)

    unresolved = tally(c_loc, ~c_res)
    delivery = tally(d_loc)
    payment = tally(pf_loc)
    resolved = tally(s_loc, s_res)
    refunds = tally(r_loc)
    is_nps = f_survey == _SV["nps"]
    detractor = tally(f_loc, is_nps & (f_score <= NEGATIVE_AT_OR_BELOW["nps"]))
    promoter = tally(f_loc, is_nps & (f_score >= _POSITIVE_AT_OR_ABOVE["nps"]))
    negative_comment = tally(f_loc, has_comment & (tone == 0))
    activity = sum(tally(loc) for loc, _, et, _, _ in per.parts if et in _ACTIVITY_TYPES)

    w.shock[idx] = np.clip(
        -0.5 * unresolved
        - 0.3 * delivery
        - 0.25 * payment
        + 0.15 * np.minimum(resolved, 1.0)
        - 0.1 * refunds,
        -1.5,
        0.5,
    )
    for acc, new in (
        (w.acc_unresolved, unresolved),
        (w.acc_delivery, delivery),
        (w.acc_payment, payment),
        (w.acc_resolved, resolved),
        (w.acc_detractor, detractor),
        (w.acc_promoter, promoter),
        (w.acc_negative_comment, negative_comment),
    ):
        acc[idx] = 0.5 * acc[idx] + new
    w.gap[idx] = np.where(activity > 0, 0.0, w.gap[idx] + expo)
    rate = activity / np.maximum(expo, 0.2)
    ewma = np.where(newcomer, rate, w.eng_ewma[idx])
    w.eng_ratio[idx] = np.where(newcomer, 0.0, np.log((rate + 0.5) / (ewma + 0.5)))
    w.eng_ewma[idx] = 0.6 * ewma + 0.4 * rate
    w.sat[idx] = np.where(drifting, sat + DRIFTING_MOOD, sat)
    w.seen[idx] = True
    w.drifting[idx] = drifting
    if w.loop is not None:
        from features.synthetic_loop import negative_rows

        negative = negative_rows(
            per.parts, (f_loc, f_sec, f_survey, f_score), EVENT_TYPES, SURVEY_NAMES
        )
        churned = w.loop.step(idx, negative, churned, churn_day)
    w.churn_day[idx[churned]] = churn_day[churned]
    w.alive[idx[churned]] = False
    return k, int(churned.sum())


def _record(w: _World, g, per: _Period, drifted: bool, feedback: tuple[np.ndarray, ...]) -> None:
    for loc, sec, etype, amount, resolved in per.parts:
        n = len(loc)
        cust = per.idx[loc].astype(np.int32)
        w.ev["cust"].append(cust)
        w.ev["sec"].append(sec)
        w.ev["type"].append(np.full(n, etype, dtype=np.int8))
        w.ev["channel"].append(_channels(g, w, EVENT_TYPES[etype], cust, drifted))
        w.ev["amount"].append(np.full(n, np.nan) if amount is None else amount.astype(np.float64))
        w.ev["resolved"].append(
            np.full(n, -1, dtype=np.int8) if resolved is None else resolved.astype(np.int8)
        )
    f_loc, f_sec, f_survey, f_score, comment = feedback
    w.fb["cust"].append(per.idx[f_loc].astype(np.int32))
    w.fb["sec"].append(f_sec)
    w.fb["survey"].append(f_survey)
    w.fb["score"].append(f_score)
    w.fb["comment"].append(comment)


def drift_start_day(days: int = 730) -> int:
    """Day offset from `start` where `drift=True` begins: the last period start at or before
    `days - DRIFT_DAYS`, so drift always covers whole periods."""
    return max(0, (days - DRIFT_DAYS) // PERIOD_DAYS * PERIOD_DAYS)


def generate_world(
    n_customers: int,
    seed: int | Sequence[int],
    *,
    start: str = "2024-01-01",
    days: int = 730,
    drift: bool = False,
    loop=None,
    progress: Callable[[str], None] | None = None,
    first_id: int = 1,
    id_width: int | None = None,
) -> dict[str, pd.DataFrame]:
    """Simulate `n_customers` of a subscription business over `[start, start + days)`.

    Returns raw contract tables `customers`, `events`, `feedback` and `churn` (plain DataFrames,
    `customer_id` str, timestamps `datetime64[ns, UTC]`). The same arguments always give the same
    tables; `drift=True` changes only the periods from `drift_start_day(days)` on. With a
    `features.synthetic_loop.LoopSimulation` as `loop`, the closed loop runs inside the world
    (moments, holdout, cases and their effect on churn; see that module) and `loop` holds them.
    Customer ids run from `first_id`, zero-padded to `id_width` digits (default: at least 7), so
    a world generated in pieces (`generate_partitioned`) never gives two customers one id.
    """
    if n_customers < 1:
        raise ValueError(f"n_customers must be at least 1, got {n_customers}")
    if days < SIGNUP_STOP_DAYS + PERIOD_DAYS:
        raise ValueError(f"days must be at least {SIGNUP_STOP_DAYS + PERIOD_DAYS}, got {days}")
    say = progress or (lambda _msg: None)
    t0 = to_utc(start)
    n_periods = -(-days // PERIOD_DAYS)
    drift_from = drift_start_day(days)
    # One stream per stage, so drift in late periods cannot shift anything drawn earlier.
    streams = np.random.default_rng(seed).spawn(n_periods + 2)

    say(f"customers: {n_customers:,}")
    w = _World(n_customers, days, streams[0])
    if loop is not None:
        loop.start(n_customers, w.value_level, streams[-1])
        w.loop = loop
    for m in range(n_periods):
        drifted = drift and m * PERIOD_DAYS >= drift_from
        active, churned = _simulate_period(w, m, streams[m + 1], drifted)
        say(f"period {m + 1}/{n_periods}: {active:,} subscribed, {churned:,} churned")

    say("assembling tables")
    width = id_width or max(7, len(str(first_id + n_customers - 1)))
    numbers = np.arange(first_id, first_id + n_customers).astype(str)
    ids = np.char.add("C", np.char.zfill(numbers, width)).astype(object)
    base_ns = t0.value

    def stamps(sec: np.ndarray) -> pd.Series:
        return pd.Series((base_ns + sec.astype(np.int64) * 10**9).view("M8[ns]")).dt.tz_localize(
            "UTC"
        )

    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": stamps(w.signup_day.astype(np.int64) * _DAY),
            "segment": np.array(SEGMENTS, dtype=object)[w.segment],
            "plan": np.array(PLANS, dtype=object)[w.plan],
            "region": np.array(REGIONS, dtype=object)[w.region],
            "acquisition_channel": np.array(ACQUISITION_CHANNELS, dtype=object)[w.acquisition],
            "age": w.age,
        }
    )

    events = _events_frame(w, ids, stamps)
    say(f"events: {len(events):,}")

    fb = {key: np.concatenate(parts) for key, parts in w.fb.items()}
    key = fb["sec"] * n_customers + fb["cust"]
    order = _without_repeats(np.argsort(key, kind="stable"), key, fb)
    bank = comment_bank()
    comment_code = fb["comment"][order]
    comment = np.full(len(order), None, dtype=object)
    has = comment_code >= 0
    comment[has] = bank[comment_code[has]]
    feedback = pd.DataFrame(
        {
            "customer_id": ids[fb["cust"][order]],
            "ts": stamps(fb["sec"][order]),
            "survey": np.array(SURVEY_NAMES, dtype=object)[fb["survey"][order]],
            "score": fb["score"][order].astype(np.int64),
            "comment": comment,
        }
    )
    say(f"feedback: {len(feedback):,}")

    gone = np.flatnonzero(w.churn_day >= 0)
    churn = pd.DataFrame(
        {
            "customer_id": ids[gone],
            "churn_date": stamps(w.churn_day[gone].astype(np.int64) * _DAY),
        }
    )
    say(f"churn: {len(churn):,}")
    return {"customers": customers, "events": events, "feedback": feedback, "churn": churn}


def generate_partitioned(
    n_customers: int,
    seed: int,
    out: str | Path,
    partitions: int,
    *,
    chunk: int = 250_000,
    start: str = "2024-01-01",
    days: int = 730,
    drift: bool = False,
    progress: Callable[[str], None] | None = None,
):
    """Write a world of `n_customers` straight to a partitioned folder (`features.partitioned`),
    `chunk` customers at a time, so no process ever holds more than one chunk: a world of any
    size fits in the memory one chunk needs (under 1 GB per 250,000 customers).

    Customers do not interact in the simulation, so each chunk is a world of its own with its
    own random stream (`seed`, chunk number) and the next block of ids. The same arguments,
    `chunk` included, always give the same folder; a chunked world is statistically the same
    business as `generate_world` gives, not the same rows. Returns the folder's `Manifest`.
    """
    from features.partitioned import PartitionWriter

    if n_customers < 1:
        raise ValueError(f"n_customers must be at least 1, got {n_customers}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    say = progress or (lambda _msg: None)
    writer = PartitionWriter(out, partitions)
    width = max(7, len(str(n_customers)))
    n_chunks = -(-n_customers // chunk)
    rows = dict.fromkeys(("customers", "events", "feedback", "churn"), 0)
    for k in range(n_chunks):
        first = k * chunk
        size = min(chunk, n_customers - first)
        tables = generate_world(
            size, (seed, k), start=start, days=days, drift=drift, first_id=first + 1, id_width=width
        )
        writer.add(tables)
        for name, frame in tables.items():
            rows[name] += len(frame)
        del tables
        say(
            f"chunk {k + 1}/{n_chunks}: {first + size:,} of {n_customers:,} customers, {rows['events']:,} events, "
            f"{rows['feedback']:,} feedback rows"
        )
    return writer.close()


def _without_repeats(order: np.ndarray, key: np.ndarray, cols: dict[str, np.ndarray]) -> np.ndarray:
    """`order` less rows that repeat an earlier row exactly. The contract quarantines exact
    duplicates as data errors, so the world must not contain the rare same-second collisions
    of a large simulation. Only rows sharing a (second, customer) key can repeat each other,
    and `key[order]` is sorted, so just those few candidates are compared."""
    k = key[order]
    same = np.zeros(len(k), dtype=bool)
    eq = k[1:] == k[:-1]
    same[1:] |= eq
    same[:-1] |= eq
    cand = np.flatnonzero(same)
    if not len(cand):
        return order
    rows = order[cand]
    repeated = pd.DataFrame({name: col[rows] for name, col in cols.items()}).duplicated().to_numpy()
    return np.delete(order, cand[repeated])


def _events_frame(w: _World, ids: np.ndarray, stamps: Callable) -> pd.DataFrame:
    cols = {key: np.concatenate(w.ev.pop(key)) for key in list(w.ev)}
    key = cols["sec"] * w.n + cols["cust"]
    order = _without_repeats(np.argsort(key, kind="stable"), key, cols)
    resolved_code = cols["resolved"][order]
    resolved = pd.array(resolved_code == 1, dtype="boolean")
    resolved[resolved_code < 0] = pd.NA
    return pd.DataFrame(
        {
            "customer_id": ids[cols["cust"][order]],
            "ts": stamps(cols["sec"][order]),
            "channel": np.array(CHANNELS, dtype=object)[cols["channel"][order]],
            "event_type": np.array(EVENT_TYPES, dtype=object)[cols["type"][order]],
            "amount": cols["amount"][order],
            "resolved": resolved,
        }
    )


def write_world(tables: dict[str, pd.DataFrame], out_dir: Path) -> dict[str, Path]:
    """Write each table to `out_dir/<name>.parquet` (zstd, no index); same tables, same bytes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, frame in tables.items():
        path = out_dir / f"{name}.parquet"
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, path, compression="zstd")
        paths[name] = path
    return paths
