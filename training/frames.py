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
from features.build import build_features
from features.contract import Tables, to_utc
from features.labels import build_labels


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
class Snapshot:
    cutoff: pd.Timestamp
    X: pd.DataFrame
    y: pd.DataFrame  # churned, future_value


@dataclass(frozen=True)
class TrainingData:
    cutoffs: Cutoffs
    train: tuple[Snapshot, ...]  # oldest first; the last one is the time-ordered validation set
    evaluation: Snapshot

    def rows(self) -> dict[str, int]:
        out = {f"train_{s.cutoff:%Y-%m-%d}": len(s.X) for s in self.train}
        out[f"evaluation_{self.evaluation.cutoff:%Y-%m-%d}"] = len(self.evaluation.X)
        return out


def default_known_until(tables: Tables) -> pd.Timestamp:
    """The day after the latest timestamp in the data: the data is taken as complete through
    its last day."""
    end = tables.data_end()
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


def build_training_data(
    tables: Tables,
    settings: Settings,
    known_until: str | pd.Timestamp | None = None,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> TrainingData:
    """Cut the data at `known_until`, plan the cutoffs and build every snapshot."""
    known_until = default_known_until(tables) if known_until is None else to_utc(known_until)
    tables = tables.cut(known_until)
    cutoffs = plan_cutoffs(
        known_until,
        settings.horizon_days,
        settings.training.cutoffs,
        settings.training.cutoff_spacing_days,
    )
    first_signup = tables.customers["signup_date"].min()
    if pd.isna(first_signup) or cutoffs.training[0] <= first_signup:
        raise ValueError(
            f"not enough history: the oldest training cutoff {cutoffs.training[0]:%Y-%m-%d} is not after the "
            f"first signup ({first_signup}); the data must span {settings.training.cutoffs} cutoffs "
            f"{settings.training.cutoff_spacing_days} days apart plus two {settings.horizon_days}-day horizons "
            "before --as-of. Lower training.cutoffs, training.cutoff_spacing_days or horizon_days."
        )

    def snapshot(cutoff: pd.Timestamp) -> Snapshot:
        progress(f"snapshot {cutoff:%Y-%m-%d}: features and labels")
        X = build_features(tables, cutoff, settings)
        y = build_labels(
            tables,
            cutoff,
            settings.horizon_days,
            activity_event_types=settings.activity_event_types,
        )
        if len(X) == 0:
            raise ValueError(
                f"the population at {cutoff:%Y-%m-%d} is empty; check the data and the cutoffs"
            )
        return Snapshot(cutoff=cutoff, X=X, y=y)

    train = tuple(snapshot(c) for c in cutoffs.training)
    return TrainingData(cutoffs=cutoffs, train=train, evaluation=snapshot(cutoffs.evaluation))
