"""Training frames: feature snapshots with matured labels, stacked over several cutoffs.

Replaying at a date `known_until` (exclusive) means the data is treated as known only before
it. The evaluation snapshot is the latest cutoff whose horizon has fully matured by then; the
training snapshots are earlier still, far enough back that their labels had matured by the
evaluation cutoff, so nothing the model learns from overlaps what it is judged on:

    training cutoffs ...  c_e - H - s, c_e - H      evaluation c_e = known_until - H
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from configs import Settings
from features.contract import Tables, to_utc
from training.history import History, as_history


@dataclass(frozen=True)
class Cutoffs:
    known_until: pd.Timestamp
    evaluation: pd.Timestamp
    training: tuple[pd.Timestamp, ...]  # oldest first

    def as_dict(self) -> dict[str, object]:
        return {
            "known_until": str(self.known_until),
            "evaluation": str(self.evaluation),
            "training": [str(c) for c in self.training],
        }


@dataclass(frozen=True)
class LabelledFrame:
    """Features of the population at one cutoff with their labels from the horizon after it
    (the population itself is `features.snapshot.Snapshot`)."""

    cutoff: pd.Timestamp
    X: pd.DataFrame
    y: pd.DataFrame  # churned, future_value


@dataclass(frozen=True)
class TrainingData:
    cutoffs: Cutoffs
    train: tuple[
        LabelledFrame, ...
    ]  # oldest first; the last one is the time-ordered validation set
    evaluation: LabelledFrame

    def rows(self) -> dict[str, int]:
        out = {f"train_{s.cutoff:%Y-%m-%d}": len(s.X) for s in self.train}
        out[f"evaluation_{self.evaluation.cutoff:%Y-%m-%d}"] = len(self.evaluation.X)
        return out


def default_known_until(history: Tables | History) -> pd.Timestamp:
    """The day after the latest timestamp in the data: the data is taken as complete through
    its last day."""
    end = history.data_end()
    if end is None:
        raise ValueError("the data holds no events, feedback or churn rows: nothing to train on")
    return end.normalize() + pd.Timedelta(days=1)


def plan_cutoffs(
    known_until: pd.Timestamp, horizon_days: int, n_cutoffs: int, spacing_days: int
) -> Cutoffs:
    if n_cutoffs < 2:
        raise ValueError(f"need at least 2 cutoffs (training and evaluation), got {n_cutoffs}")
    known_until = to_utc(known_until)
    horizon = pd.Timedelta(days=horizon_days)
    evaluation = (known_until - horizon).normalize()
    latest_train = evaluation - horizon
    training = tuple(
        latest_train - pd.Timedelta(days=spacing_days * k) for k in range(n_cutoffs - 2, -1, -1)
    )
    return Cutoffs(known_until=known_until, evaluation=evaluation, training=training)


# The oldest training snapshot needs this much history after the first signup; when the
# configured cutoffs do not fit, the spacing shrinks down to MIN_SPACING_DAYS, then the count.
MIN_HISTORY_DAYS = 7
MIN_SPACING_DAYS = 7


def fit_to_history(
    cutoffs: Cutoffs, settings: Settings, first_signup: pd.Timestamp
) -> Cutoffs | None:
    """`cutoffs` when the oldest training cutoff has `MIN_HISTORY_DAYS` of history; else the
    most training cutoffs (closest to the configured spacing, at least `MIN_SPACING_DAYS` apart)
    that fit; None when not even the newest one fits."""
    earliest = to_utc(first_signup) + pd.Timedelta(days=MIN_HISTORY_DAYS)
    if cutoffs.training[0] >= earliest:
        return cutoffs
    room = (cutoffs.training[-1] - earliest).days
    if room < 0:
        return None
    h = settings.horizon_days
    for k in range(len(cutoffs.training), 0, -1):
        spacing = settings.training.cutoff_spacing_days if k == 1 else room // (k - 1)
        if k == 1 or spacing >= MIN_SPACING_DAYS:
            return plan_cutoffs(cutoffs.known_until, h, k + 1, max(spacing, 1))
    return None


def build_training_data(
    history: Tables | History,
    settings: Settings,
    known_until: str | pd.Timestamp | None = None,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> TrainingData:
    """Cut the data at `known_until`, plan the cutoffs and build every snapshot."""
    history = as_history(history)
    known_until = default_known_until(history) if known_until is None else to_utc(known_until)
    history = history.cut(known_until)
    cutoffs = plan_cutoffs(
        known_until,
        settings.horizon_days,
        settings.training.cutoffs,
        settings.training.cutoff_spacing_days,
    )
    first_signup = history.first_signup()
    planned = cutoffs if pd.isna(first_signup) else fit_to_history(cutoffs, settings, first_signup)
    if planned is None:
        raise ValueError(
            f"not enough history: the newest possible training cutoff {cutoffs.training[-1]:%Y-%m-%d} "
            f"is less than {MIN_HISTORY_DAYS} days after the first signup ({first_signup}); the data "
            f"must span two {settings.horizon_days}-day horizons plus {MIN_HISTORY_DAYS} days before "
            "--as-of. Lower horizon_days (--horizon) or wait for more history."
        )
    if planned != cutoffs:
        progress(
            f"history too short for {len(cutoffs.training)} training cutoffs "
            f"{settings.training.cutoff_spacing_days} days apart: using {len(planned.training)}"
            + (
                f", {(planned.training[1] - planned.training[0]).days} days apart"
                if len(planned.training) > 1
                else ""
            )
        )
    cutoffs = planned

    def labelled(cutoff: pd.Timestamp) -> LabelledFrame:
        progress(f"snapshot {cutoff:%Y-%m-%d}: features and labels")
        X, y = history.labelled(cutoff, settings)
        if len(X) == 0:
            raise ValueError(
                f"the population at {cutoff:%Y-%m-%d} is empty; check the data and the cutoffs"
            )
        return LabelledFrame(cutoff=cutoff, X=X, y=y)

    train = tuple(labelled(c) for c in cutoffs.training)
    return TrainingData(cutoffs=cutoffs, train=train, evaluation=labelled(cutoffs.evaluation))
