"""The closed loop inside the synthetic world (`retain generate --loop`): negative moments as the
loop's default rules see them (a detractor NPS, CSAT 1-2, CES 1-3, an unresolved complaint, a
delivery issue, a failed payment), a randomized holdout, recovery cases opened and closed with
realistic delays, and a contact effect on churn that differs between customers and is known.

The effect: every customer has a recovery probability drawn from U(0.1, 0.7) (independent of
everything else about them). When a moment opens a case, the customer is recovered with that
probability: they do not churn in the horizon after the day of the moment (the window the
recovery effect labels), and are otherwise untouched. Held-out customers are untouched. So the
relative churn reduction of treated against held-out moments is, in expectation, the mean
recovery probability of the treated - `LoopSimulation.truth` - which
`monitoring.loop.recovery_effect` must recover within its interval.

A customer's moment starts a window of the horizon plus one day; further moments inside it join
that window's group (added to the case, or held out again) and draw nothing, as the real loop
keeps a held-out customer out for the horizon. This module owns the simulation's bookkeeping and
writing its moments and cases into a store; `features.synthetic` calls `step` every period.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import insert

from features.contract import NEGATIVE_AT_OR_BELOW
from store import Store

DAY = 86_400
NEGATIVE_EVENTS = ("complaint", "delivery_issue", "payment_failed")
OWNERS = ("ana", "ben", "cy", "dee")
RECOVERY_LOW, RECOVERY_HIGH = 0.1, 0.7
# Hours to first response and then to closing, by priority (exponential, these means).
RESPONSE_HOURS = {"p1": 2.0, "p2": 8.0, "p3": 24.0}
CLOSE_HOURS = {"p1": 10.0, "p2": 20.0, "p3": 40.0}
SLA_HOURS = {"p1": 4.0, "p2": 24.0, "p3": 72.0}


@dataclass
class LoopSimulation:
    horizon_days: int = 90
    holdout_share: float = 0.1
    rng: np.random.Generator | None = None
    moments: list[dict] = field(default_factory=list)
    cases: list[dict] = field(default_factory=list)

    def start(self, n: int, value_level: np.ndarray, rng: np.random.Generator) -> None:
        self.rng = rng
        self.recovery_p = rng.uniform(RECOVERY_LOW, RECOVERY_HIGH, n)
        self.window_until = np.full(n, -1, dtype=np.int64)  # day the current window ends
        self.window_case = np.full(n, -1, dtype=np.int64)  # its case (index), -1 when held out
        self.protected_until = np.full(n, -1, dtype=np.int64)  # no churn before this day
        cuts = np.quantile(value_level, [0.5, 0.85])
        self.priority = np.select(
            [value_level >= cuts[1], value_level >= cuts[0]], ["p1", "p2"], "p3"
        )

    def protect(self, cust: np.ndarray, churned: np.ndarray, churn_day: np.ndarray) -> np.ndarray:
        """Churn draws with the recovered customers' churn inside their window cancelled."""
        return churned & ~(churn_day < self.protected_until[cust])

    def step(
        self,
        cust: np.ndarray,
        negative: list[tuple[np.ndarray, np.ndarray, str]],
        churned: np.ndarray,
        churn_day: np.ndarray,
    ) -> np.ndarray:
        """Record the period's negative moments (local positions `loc` into `cust`, seconds
        `sec`, a reason each), decide each one, and return `churned` with the churn of customers
        recovered this period cancelled when it falls inside their new window."""
        if not negative:
            return churned
        loc = np.concatenate([n[0] for n in negative])
        sec = np.concatenate([n[1] for n in negative])
        reason = np.concatenate([np.full(len(n[0]), n[2], dtype=object) for n in negative])
        order = np.lexsort((sec, loc))
        loc, sec, reason = loc[order], sec[order], reason[order]
        g = self.rng
        churned = churned.copy()
        for i, s, why in zip(loc, sec, reason, strict=True):
            c = int(cust[i])
            day = int(s // DAY)
            if churned[i] and churn_day[i] * DAY <= s:
                continue  # rows after a churn do not exist; nor do their moments
            row_id = f"syn-{c}-{int(s)}-{why}"
            if self.window_until[c] > day:
                k = int(self.window_case[c])
                held = k < 0
                if not held:
                    self.cases[k]["moments"] += 1
                outcome = "held_out" if held else "added"
                self._moment(c, s, why, row_id, held, None if held else k, outcome, start=False)
                continue
            self.window_until[c] = day + 1 + self.horizon_days
            if g.random() < self.holdout_share:
                self.window_case[c] = -1
                self._moment(c, s, why, row_id, True, None, "held_out")
                continue
            k = self._case(c, s, why, row_id)
            self.window_case[c] = k
            self._moment(c, s, why, row_id, False, k, "opened")
            if g.random() < self.recovery_p[c]:
                self.cases[k]["recovered"] = True
                self.protected_until[c] = day + 1 + self.horizon_days
                if churned[i] and churn_day[i] >= day + 1:
                    churned[i] = False
        return churned

    def _moment(self, c, s, why, row_id, held, case, outcome, start=True) -> None:
        self.moments.append(
            {
                "cust": c,
                "sec": int(s),
                "reason": why,
                "row_id": row_id,
                "held_out": held,
                "case": case,
                "outcome": outcome,
                "start": start,  # the moment that opened its window (drawn, not joined)
            }
        )

    def _case(self, c, s, why, row_id) -> int:
        g = self.rng
        p = str(self.priority[c])
        opened = s + int(g.uniform(60, 1800))
        first = opened + int(g.exponential(RESPONSE_HOURS[p]) * 3600)
        closed = first + int(g.exponential(CLOSE_HOURS[p]) * 3600)
        status = g.choice(["resolved", "unreachable", "declined"], p=[0.8, 0.15, 0.05])
        self.cases.append(
            {
                "cust": c,
                "reason": why,
                "row_id": row_id,
                "priority": p,
                "owner": OWNERS[len(self.cases) % len(OWNERS)],
                "opened": opened,
                "first": first,
                "closed": closed,
                "status": str(status),
                "moments": 1,
                "recovered": False,
            }
        )
        return len(self.cases) - 1

    @property
    def truth(self) -> dict[str, float]:
        """The known effect: the mean recovery probability of the customers whose moment opened
        a case (the expected relative churn reduction against held-out moments)."""
        treated = [m["cust"] for m in self.moments if m["outcome"] == "opened"]
        return {
            "relative_effect": float(np.mean(self.recovery_p[treated]))
            if treated
            else float("nan"),
            "horizon_days": self.horizon_days,
            "holdout_share": self.holdout_share,
            "moments": len(self.moments),
            "cases": len(self.cases),
        }


def negative_rows(parts, feedback, names: tuple[str, ...], surveys: tuple[str, ...]):
    """The period's negative rows as (local customer positions, seconds, reason) triples."""
    out = []
    for loc, sec, etype, _amount, resolved in parts:
        name = names[etype]
        if name not in NEGATIVE_EVENTS:
            continue
        keep = np.ones(len(loc), dtype=bool) if resolved is None else ~resolved.astype(bool)
        out.append((loc[keep], sec[keep], name))
    f_loc, f_sec, f_survey, f_score = feedback
    reasons = {"nps": "detractor", "csat": "low_csat", "ces": "high_effort"}
    for code, survey in enumerate(surveys):
        hit = (f_survey == code) & (f_score <= NEGATIVE_AT_OR_BELOW[survey])
        out.append((f_loc[hit], f_sec[hit], reasons[survey]))
    return [o for o in out if len(o[0])]


def write_loop(sim: LoopSimulation, store: Store, ids: np.ndarray, t0: pd.Timestamp) -> None:
    """The simulated moments and cases as the loop's store tables (case ids from 1)."""

    def at(sec: int):
        return (
            (t0 + pd.Timedelta(seconds=int(sec)))
            .tz_convert("UTC")
            .tz_localize(None)
            .to_pydatetime()
        )

    case_rows = []
    history = []
    for k, c in enumerate(sim.cases, start=1):
        opened, first, closed = at(c["opened"]), at(c["first"]), at(c["closed"])
        due = opened + pd.Timedelta(hours=SLA_HOURS[c["priority"]])
        case_rows.append(
            {
                "id": k,
                "kind": "recovery",
                "customer_id": str(ids[c["cust"]]),
                "segment": None,
                "reason": c["reason"],
                "reason_text": f"simulated {c['reason'].replace('_', ' ')}",
                "trigger": json.dumps([{"row_id": c["row_id"]}]),
                "priority": c["priority"],
                "owner": c["owner"],
                "status": c["status"],
                "opened_at": opened,
                "due_at": due,
                "updated_at": closed,
                "first_response_at": first,
                "closed_at": closed,
                "resolution": "other" if c["status"] != "resolved" else "apologised",
                "note": None,
                "version": 3,
                "moments": c["moments"],
                "escalations": 0,
                "open_key": None,
            }
        )
        history += [
            {
                "case_id": k,
                "at": opened,
                "actor": "retain",
                "from_status": None,
                "to_status": "open",
            },
            {
                "case_id": k,
                "at": first,
                "actor": c["owner"],
                "from_status": "open",
                "to_status": "in_progress",
            },
            {
                "case_id": k,
                "at": closed,
                "actor": c["owner"],
                "from_status": "in_progress",
                "to_status": c["status"],
            },
        ]
    moment_rows = [
        {
            "row_id": m["row_id"],
            "table_name": "events" if m["reason"] in NEGATIVE_EVENTS else "feedback",
            "customer_id": str(ids[m["cust"]]),
            "ts": at(m["sec"]),
            "reason": m["reason"],
            "detail": f"simulated {m['reason'].replace('_', ' ')}",
            "comment": None,
            "recorded_at": at(m["sec"]),
            "outcome": m["outcome"],
            "held_out": m["held_out"],
            "draw": 0.0,
            "case_id": None if m["case"] is None else m["case"] + 1,
        }
        for m in sim.moments
    ]
    with store.engine.begin() as conn:
        if case_rows:
            conn.execute(insert(store.t.cases), case_rows)
            conn.execute(insert(store.t.case_history), history)
        if moment_rows:
            conn.execute(insert(store.t.moments), moment_rows)
