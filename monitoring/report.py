"""The retrain trigger (`build_summary`) and the readable monitoring report (`render_report`).

`build_summary` turns the results of one monitoring run into a plain dict: the weighted drift,
the drift share and drifted columns, prediction drift, matured metrics next to the promised ones,
the outreach effect, and `retrain_due` with its `reasons` in words. A retrain is due when the
drifted features hold at least `weighted_drift_threshold` of the champions' importance, when
the share of drifted feature columns exceeds `drift_share_threshold`, when the churn
probability or CLV drift by `prediction_drift_threshold` or more, or when a matured metric falls
below its floor (`min_roc_auc` for churn ROC AUC, `min_gini` for CLV normalised Gini). Features
that grow with the book's age (`ageing_features`: tenure, lifetime totals) are left out of both
drift figures and listed in `notes`, so a book that only got older does not trigger a retrain.
Everything that is worth knowing but triggers nothing (too little matured data) goes to `notes`.

`render_report` writes one self-contained HTML page (plots are matplotlib PNGs embedded as
base64; nothing is fetched): the verdict, CX KPIs, the outreach effect, matured performance and
a drift overview. Evidently's own drift and performance reports are separate files
(`DriftResult.save_html`, `PerformanceResult.save_html`).
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.contract import to_utc
from monitoring.drift import DriftResult
from monitoring.effect import CONTACT, CONTROL, OK, EffectResult, wilson_interval
from monitoring.kpis import kpi_table
from monitoring.performance import PerformanceResult
from monitoring.settings import MonitoringSettings

TOP_COLUMNS = 15  # drifted columns named in a reason and drawn in the report
# (metric, MonitoringSettings field holding its floor, how a reason names it)
FLOORS = (
    ("churn.roc_auc", "min_roc_auc", "churn ROC AUC"),
    ("clv.gini_normalized", "min_gini", "CLV normalised Gini"),
)


def finite_or_none(v: Any) -> float | None:
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def build_summary(
    as_of: str | pd.Timestamp,
    *,
    drift: DriftResult | None = None,
    performance: PerformanceResult | None = None,
    effect: EffectResult | None = None,
    settings: MonitoringSettings,
) -> dict[str, Any]:
    """The monitoring verdict as a JSON-friendly dict (see the module docstring). Any result may
    be None when that part was not run; what was not run cannot trigger a retrain."""
    reasons: list[str] = []
    notes: list[str] = []
    out: dict[str, Any] = {"as_of": to_utc(as_of).isoformat()}

    out["drift_share"] = None
    out["drift_share_threshold"] = settings.drift_share_threshold
    out["drifted_columns"] = []
    out["prediction_drift"] = {}
    if drift is not None:
        share = finite_or_none(drift.drift_share)
        out.update(
            drift_share=share,
            drift_share_threshold=drift.drift_share_threshold,
            drifted_columns=list(drift.drifted_columns),
            drift_columns_tested=len(drift.columns),
            drift_columns_skipped=len(drift.skipped),
            drift_n_reference=drift.n_reference,
            drift_n_current=drift.n_current,
            prediction_drift={
                name: {"method": d["method"], "score": d["score"], "drifted": d["drifted"]}
                for name, d in drift.prediction_drift.items()
            },
        )
        weighted = finite_or_none(drift.weighted_drift)
        counted = int((~drift.columns["ageing"]).sum()) if len(drift.columns) else 0
        out.update(
            weighted_drift=weighted,
            weighted_drift_threshold=drift.weighted_drift_threshold,
            drift_share_all=finite_or_none(drift.drift_share_all),
            ageing_drifted=list(drift.ageing_drifted),
            weighted_drift_top=[
                {"column": c, "weight": w, "score": sc} for c, w, sc in drift.weighted_reasons()
            ],
        )
        if share is None:
            notes.append("feature drift could not be measured: no column had enough values")
        else:
            if weighted is not None and weighted >= drift.weighted_drift_threshold:
                top = "; ".join(
                    f"{c} (weight {w:.0%}, distance {sc:.2f})"
                    for c, w, sc in drift.weighted_reasons()
                )
                reasons.append(
                    f"drift in what the models use: drifted features hold {weighted:.0%} of the "
                    f"champions' importance (threshold {drift.weighted_drift_threshold:.0%}); "
                    f"most: {top}"
                )
            if share > drift.drift_share_threshold:
                named = ", ".join(drift.drifted_columns[:5])
                more = len(drift.drifted_columns) - 5
                reasons.append(
                    f"feature drift: {share:.0%} of {counted} tested columns drifted "
                    f"(threshold {drift.drift_share_threshold:.0%}); most: {named}"
                    + (f" and {more} more" if more > 0 else "")
                )
        if drift.ageing_drifted:
            notes.append(
                f"{len(drift.ageing_drifted)} features that grow with the book's age drifted "
                f"({', '.join(drift.ageing_drifted[:5])}): reported, not counted in the trigger "
                "(monitoring.ageing_features)"
            )
        for name, d in drift.prediction_drift.items():
            if d["drifted"]:
                reasons.append(
                    f"prediction drift in {name}: {d['method']} {d['score']:.3f} "
                    f"(threshold {d['threshold']:.3f})"
                )

    out["performance_status"] = None
    out["matured_metrics"] = {}
    out["promised_metrics"] = {}
    if performance is not None:
        out.update(
            performance_status=performance.status,
            performance_score_as_of=None
            if performance.score_as_of is None
            else performance.score_as_of.isoformat(),
            performance_n=performance.n,
            matured_metrics={k: finite_or_none(v) for k, v in performance.metrics.items()},
            promised_metrics={k: finite_or_none(v) for k, v in performance.promised.items()},
        )
        if performance.status != OK:
            notes.append(f"matured performance: {performance.message}")
        else:
            for key, floor_name, label in FLOORS:
                value = finite_or_none(performance.metrics.get(key))
                floor = getattr(settings, floor_name)
                if value is None:
                    notes.append(f"matured {label} is undefined on {performance.n:,} scores")
                elif value < floor:
                    promised = finite_or_none(performance.promised.get(key))
                    was = f", promised {promised:.3f}" if promised is not None else ""
                    reasons.append(
                        f"matured {label} {value:.3f} on scores of "
                        f"{performance.score_as_of:%Y-%m-%d} is below the floor {floor:.3f}{was}"
                    )

    out["outreach_status"] = None
    if effect is not None:
        o = effect.overall
        out.update(
            outreach_status=o["status"],
            outreach_message=o["message"],
            outreach_difference=finite_or_none(o["difference"]),
            outreach_difference_low=finite_or_none(o["difference_low"]),
            outreach_difference_high=finite_or_none(o["difference_high"]),
        )

    out["retrain_due"] = bool(reasons)
    out["reasons"] = reasons
    out["notes"] = notes
    return out


# ---------------------------------------------------------------------------------------------
# HTML


def _figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_figure_png(fig)}">'


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    return Figure(figsize=(width, height))


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    if frame.empty:
        return "<p><em>nothing to show</em></p>"
    return frame.to_html(
        index=False,
        border=0,
        classes="t",
        na_rep="",
        float_format=lambda v: f"{v:,.{digits}f}",
        escape=True,
    )


def _kpi_figure(kpis: pd.DataFrame) -> str | None:
    windowed = kpis[kpis["window_days"].notna()]
    panels = [
        (k, t)
        for k, t in (
            ("nps", "NPS (points)"),
            ("csat_mean", "mean CSAT (1-5)"),
            ("ces_mean", "mean CES (1-7)"),
            ("churn_rate", "churn rate in window"),
        )
        if (windowed["kpi"] == k).any()
    ]
    if not panels:
        return None
    fig = _new_figure(11, 3.0 * len(panels))
    windows = sorted(int(w) for w in windowed["window_days"].unique())
    for i, (kpi, title) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        part = windowed[windowed["kpi"] == kpi]
        groups = list(dict.fromkeys(zip(part["group_by"], part["group"], strict=True)))
        x = np.arange(len(groups))
        width = 0.8 / max(1, len(windows))
        for j, w in enumerate(windows):
            pw = part[part["window_days"] == w].set_index(["group_by", "group"])["value"]
            values = [pw.get(g, np.nan) for g in groups]
            ax.bar(x + (j - (len(windows) - 1) / 2) * width, values, width, label=f"last {w} days")
        ax.set_xticks(x, [g if b != "all" else "all" for b, g in groups], rotation=0, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _img(fig, "CX KPIs by group and window")


def _effect_figure(effect: EffectResult) -> str | None:
    rows = [("all campaigns", effect.overall)] if effect.overall["status"] == OK else []
    if len(effect.by_campaign) > 1:
        rows += [
            (str(r["campaign"]), r.to_dict())
            for _, r in effect.by_campaign.iterrows()
            if r["status"] == OK
        ]
    if not rows:
        return None
    fig = _new_figure(8, 0.6 + 0.9 * len(rows) + 1.5)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))
    for k, (group, color, offset) in enumerate(
        ((CONTACT, "tab:green", -0.18), (CONTROL, "tab:gray", 0.18))
    ):
        rates, lows, highs = [], [], []
        for _, r in rows:
            n = int(r[f"n_{group}"])
            x = int(r[f"churned_{group}"])
            lo, hi = wilson_interval(x, n, effect.confidence)
            rates.append(100 * x / n)
            lows.append(100 * (x / n - lo))
            highs.append(100 * (hi - x / n))
        ax.barh(
            y + offset,
            rates,
            0.34,
            xerr=[lows, highs],
            color=color,
            label=f"{group}ed" if k == 0 else group,
            capsize=3,
        )
    ax.set_yticks(y, [name for name, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"churn rate within the horizon, % ({round(100 * effect.confidence)}% Wilson CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _img(fig, "churn rate of contacted and control customers")


def _calibration_figure(performance: PerformanceResult) -> str | None:
    cal = performance.calibration[performance.calibration["n"] > 0]
    if cal.empty:
        return None
    fig = _new_figure(4.5, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=0.8)
    ax.plot(cal["mean_predicted"], cal["observed_rate"], marker="o")
    ax.set_xlabel("mean predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.set_title("calibration of matured scores", fontsize=10)
    fig.tight_layout()
    return _img(fig, "calibration of matured scores")


def _drift_figure(drift: DriftResult) -> str | None:
    top = drift.columns.head(TOP_COLUMNS)
    if top.empty:
        return None
    fig = _new_figure(8, 0.8 + 0.3 * len(top))
    ax = fig.add_subplot(1, 1, 1)
    colors = ["tab:red" if d else "tab:blue" for d in top["drifted"]]
    ax.barh(np.arange(len(top)), top["score"] / top["threshold"], color=colors)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(np.arange(len(top)), list(top.index), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("drift score / threshold (red: drifted)")
    fig.tight_layout()
    return _img(fig, "most drifted columns")


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
.verdict{padding:.8em 1em;border-radius:6px}.due{background:#fde8e8}.fine{background:#e8f6ea}
.pending{background:#fff6dd;padding:.6em 1em;border-radius:6px}
table.t{border-collapse:collapse;font-size:.85em}table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
table.t th{background:#f6f6f6}table.t td:first-child,table.t th:first-child{text-align:left}
img{max-width:100%}
"""


def _verdict(summary: dict[str, Any]) -> str:
    parts = []
    if summary.get("retrain_due"):
        items = "".join(f"<li>{html.escape(r)}</li>" for r in summary["reasons"])
        parts.append(f'<div class="verdict due"><strong>Retrain due</strong><ul>{items}</ul></div>')
    else:
        parts.append('<div class="verdict fine"><strong>No retrain due</strong></div>')
    if summary.get("notes"):
        items = "".join(f"<li>{html.escape(n)}</li>" for n in summary["notes"])
        parts.append(f"<p>Notes:</p><ul>{items}</ul>")
    return "".join(parts)


def _kpi_section(kpis: pd.DataFrame) -> str:
    windowed = kpi_table(kpis[kpis["window_days"].notna()])
    current = kpi_table(kpis[kpis["window_days"].isna()])
    if "churn_rate" in windowed.columns:
        windowed = windowed.assign(churn_rate=100 * windowed["churn_rate"]).rename(
            columns={"churn_rate": "churn_rate_pct"}
        )
    intro = (
        "<p>Survey KPIs per response over the last days before the run (NPS in points: % "
        "promoters 9-10 minus % detractors 0-6); churn rate: share of the customers at the "
        "window's start who churned within it. <em>high_impact</em>: the top CLV share of the "
        "current scores; <em>rest</em>: every other scored customer.</p>"
    )
    parts = [intro, _kpi_figure(kpis) or "", "<h3>By window</h3>", _table(windowed, 2)]
    if not current.empty:
        parts += ["<h3>Current scores</h3>", _table(current, 2)]
    return "".join(parts)


def _effect_section(effect: EffectResult) -> str:
    o = effect.overall
    head = (
        f"<p>Selections made at least {effect.horizon_days} days before "
        f"{effect.as_of:%Y-%m-%d}: {o['n_contact']:,} contacted, {o['n_control']:,} control "
        f"(held out). {effect.n_pending:,} selections are still inside their horizon; "
        f"{effect.n_unlabelled:,} matured ones had no outcome.</p>"
    )
    if o["status"] != OK:
        return head + f'<p class="pending"><strong>{html.escape(o["message"])}</strong></p>'
    pct = round(100 * effect.confidence)
    rel = o["relative_effect"]
    rel_text = ""
    if finite_or_none(rel) is not None:
        lo, hi = finite_or_none(o["relative_effect_low"]), finite_or_none(o["relative_effect_high"])
        ci = f" ({pct}% CI {100 * lo:.0f}% to {100 * hi:.0f}%)" if lo is not None else ""
        rel_text = f"; outreach prevented {100 * rel:.0f}% of the control group's churn rate{ci}"
    body = (
        f"<p><strong>Churn {100 * o['churn_rate_contact']:.1f}% among contacted vs "
        f"{100 * o['churn_rate_control']:.1f}% in control: {100 * o['difference']:+.1f} points "
        f"prevented ({pct}% CI {100 * o['difference_low']:+.1f} to "
        f"{100 * o['difference_high']:+.1f}){rel_text}.</strong></p>"
        f"<p><small>Interval: {html.escape(effect.method)}.</small></p>"
    )
    fig = _effect_figure(effect) or ""
    table = ""
    if len(effect.by_campaign) > 1:
        cols = [
            "campaign",
            "status",
            "n_contact",
            "n_control",
            "churn_rate_contact",
            "churn_rate_control",
            "difference",
            "difference_low",
            "difference_high",
        ]
        table = _table(effect.by_campaign[cols])
    return head + body + fig + table


def _performance_section(performance: PerformanceResult) -> str:
    if performance.status != OK:
        return f'<p class="pending"><strong>{html.escape(performance.message)}</strong></p>'
    head = (
        f"<p>{html.escape(performance.message)} (horizon {performance.horizon_days} days); "
        f"{performance.n_pending:,} later scores have not matured yet.</p>"
    )
    return (
        head
        + _table(performance.comparison)
        + (_calibration_figure(performance) or "")
        + "<h3>By scoring date</h3>"
        + _table(performance.by_score_date.assign(score_as_of=lambda f: f["score_as_of"].dt.date))
    )


def _estimate_section(e: dict[str, Any], summary: dict[str, Any]) -> str:
    matured = finite_or_none(summary.get("matured_metrics", {}).get("churn.roc_auc"))
    beside = (
        f" Matured ROC AUC: {matured:.3f}." if matured is not None else " No matured labels yet."
    )
    return (
        f"<p>Churn ROC AUC of the champion on today's {e['n_current']:,} scored customers, "
        f"estimated by {html.escape(e['method'])}: <strong>{e['roc_auc']:.3f}</strong> "
        f"({e['confidence']:.0%} interval {e['low']:.3f}-{e['high']:.3f}). It assumes the "
        f"probabilities stay calibrated; on the reference, where labels exist, the same estimate "
        f"gives {e['reference_estimate']:.3f} against a measured {e['reference_roc_auc']:.3f}. "
        f"The matured figure is the measurement.{beside}</p>"
    )


def _drift_section(drift: DriftResult) -> str:
    share = finite_or_none(drift.drift_share)
    share_text = "not measured" if share is None else f"{share:.0%}"
    weighted = finite_or_none(drift.weighted_drift)
    weighted_text = "not measured" if weighted is None else f"{weighted:.0%}"
    ageing = int(drift.columns["ageing"].sum()) if len(drift.columns) else 0
    head = (
        f"<p>Importance-weighted drift (the champions' importance held by drifted features): "
        f"<strong>{weighted_text}</strong> (threshold {drift.weighted_drift_threshold:.0%}). "
        f"Share of drifted feature columns: <strong>{share_text}</strong> of "
        f"{len(drift.columns) - ageing} tested (threshold {drift.drift_share_threshold:.0%}); "
        f"{ageing} features that grow with the book's age are tested and shown but not counted "
        f"({len(drift.ageing_drifted)} of them drifted); {len(drift.skipped)} skipped. "
        + (
            f"Ageing is not drift: the reference was redrawn to the current's mix of "
            f"{html.escape(drift.age_matched_on)}, over the ages both hold. "
            if drift.age_matched_on
            else "The samples were compared as they are (no age matching). "
        )
        + "Samples: "
        f"{drift.n_reference:,} reference rows of {drift.n_reference_rows:,}, "
        f"{drift.n_current:,} current rows of {drift.n_current_rows:,}.</p>"
    )
    preds = drift.predictions.reset_index()
    return (
        head
        + (_drift_figure(drift) or "")
        + "<h3>Predictions</h3>"
        + _table(preds)
        + "<h3>Drifted columns, by importance</h3>"
        + _table(
            drift.columns[drift.columns["drifted"]]
            .sort_values("importance", ascending=False)
            .reset_index()
        )
    )


def _loop_section(loop: dict[str, Any]) -> str:
    c, r = loop["cases"], loop["recovery"]
    nps = r["next_nps"]
    head = (
        f"<p>{c['cases']:,} cases ({c['open']:,} open, {c['overdue']:,} overdue) from "
        f"{loop['moments']:,} negative moments.</p>"
    )
    priorities = _table(pd.DataFrame(c["by_priority"]), digits=2)
    owners = _table(pd.DataFrame(c["by_owner"])) if c["by_owner"] else ""
    effect = f"<p><b>Recovery effect</b>: {html.escape(str(r['message']))}.</p>"
    if nps["difference"] is not None:
        effect += (
            f"<p>Next NPS answer: {nps['mean_contact']:.2f} after a case ({nps['n_contact']:,}) vs "
            f"{nps['mean_control']:.2f} held out ({nps['n_control']:,}): "
            f"{nps['difference']:+.2f} ({nps['low']:+.2f} to {nps['high']:+.2f}).</p>"
        )
    return head + "<h3>By priority</h3>" + priorities + "<h3>By owner</h3>" + owners + effect


def render_report(
    summary: dict[str, Any],
    *,
    kpis: pd.DataFrame | None = None,
    effect: EffectResult | None = None,
    performance: PerformanceResult | None = None,
    drift: DriftResult | None = None,
    loop: dict[str, Any] | None = None,
    title: str = "Retain monitoring",
) -> str:
    """One self-contained HTML page for the results given (any may be None)."""
    as_of = pd.Timestamp(summary["as_of"])
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)} {as_of:%Y-%m-%d}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}: {as_of:%Y-%m-%d}</h1>",
        _verdict(summary),
    ]
    if kpis is not None:
        parts += ["<h2>CX KPIs</h2>", _kpi_section(kpis)]
    if effect is not None:
        parts += ["<h2>Outreach effect</h2>", _effect_section(effect)]
    if loop is not None:
        parts += ["<h2>Closed loop: recovery cases</h2>", _loop_section(loop)]
    estimate = summary.get("estimated_performance")
    if estimate:
        parts += [
            "<h2>Estimated performance before the labels mature</h2>",
            _estimate_section(estimate, summary),
        ]
    if performance is not None:
        parts += ["<h2>Matured performance</h2>", _performance_section(performance)]
    if drift is not None:
        parts += ["<h2>Drift</h2>", _drift_section(drift)]
    parts.append("</body></html>")
    return "\n".join(parts)


def save_report(path: str | Path, page: str) -> Path:
    """Write a page from `render_report` (UTF-8) and return its path."""
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
