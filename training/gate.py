"""The promotion gate: whether a challenger may replace the champion. A challenger is promoted
only if it beats every baseline and the current champion, measured on the same evaluation
snapshot, by at least the configured margin of the gate metric. Every failed comparison is named,
so `retain models` shows all that a version lacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from configs import GateSettings


def gate_metric(metrics: dict[str, float], metric: str) -> float:
    """The gate's "higher is better" view of a metric."""
    if metric == "neg_brier":
        return -metrics["brier"]
    return metrics[metric]


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def gate_decision(
    model_name: str,
    gate: GateSettings,
    challenger: float,
    baselines: dict[str, float],
    champion: float | None,
) -> GateDecision:
    """Promote only if the challenger beats every baseline and the current champion (measured on
    the same evaluation snapshot) by at least `gate.min_improvement` of `gate.metric`."""
    metric, margin = gate.metric, gate.min_improvement
    if challenger is None or math.isnan(challenger):
        return GateDecision(
            False, f"{model_name}: {metric} could not be computed on the evaluation snapshot"
        )
    valid = {n: v for n, v in sorted(baselines.items()) if v is not None and not math.isnan(v)}
    lost_to = [f"baseline {n} ({v:.4f})" for n, v in valid.items() if not challenger > v]
    beaten = ", ".join(f"{n} {v:.4f}" for n, v in valid.items())
    if champion is not None and not (challenger > champion and challenger >= champion + margin):
        lost_to.append(f"champion {champion:.4f} by {margin} or more")
    # Every failed comparison is named, so `retain models` shows all that a version lacks.
    if lost_to:
        return GateDecision(
            False, f"{model_name}: {metric} {challenger:.4f} does not beat " + "; ".join(lost_to)
        )
    if champion is None:
        return GateDecision(
            True, f"{model_name}: first model; {metric} {challenger:.4f} beats baselines ({beaten})"
        )
    return GateDecision(
        True,
        f"{model_name}: {metric} {challenger:.4f} beats champion {champion:.4f} by at least {margin} "
        f"and baselines ({beaten})",
    )
