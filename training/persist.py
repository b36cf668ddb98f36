"""Saving and loading trained models as plain files: LightGBM boosters as text, calibrators,
schemas and settings as JSON. No pickles, so a model folder is safe to load and readable.

    <folder>/meta.json          kind, schema, calibrator or objective, iterations, interval
    <folder>/<booster>.txt      one LightGBM model per booster (churn: "churn"; clv: its parts)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from training.models import CALIBRATORS, ChurnModel, ClvModel, FeatureSchema

FORMAT_VERSION = 1


def _save_booster(booster: lgb.Booster, path: Path) -> None:
    # Keep only the trees early stopping chose, so the saved model predicts what was evaluated.
    booster.save_model(path, num_iteration=booster.best_iteration or None)


def _load_booster(path: Path) -> lgb.Booster:
    return lgb.Booster(model_file=str(path))


def _calibrator_dict(cal: Any) -> dict[str, Any]:
    if cal.kind == "platt":
        return {"kind": "platt", "slope": cal.slope, "intercept": cal.intercept}
    return {
        "kind": cal.kind,
        "thresholds": np.asarray(cal.thresholds).tolist(),
        "values": np.asarray(cal.values).tolist(),
    }


def _calibrator_from(data: dict[str, Any]) -> Any:
    kind = data.pop("kind")
    if kind not in CALIBRATORS:
        raise ValueError(f"unknown calibrator kind {kind!r}; expected one of {sorted(CALIBRATORS)}")
    cls = CALIBRATORS[kind]
    if kind == "platt":
        return cls(**data)
    return cls(
        thresholds=np.asarray(data["thresholds"], dtype=float),
        values=np.asarray(data["values"], dtype=float),
    )


def save_model(model: ChurnModel | ClvModel, folder: str | Path) -> Path:
    if not isinstance(model, ChurnModel | ClvModel):
        raise TypeError(f"cannot save {type(model).__name__}: expected ChurnModel or ClvModel")
    if not hasattr(model, "schema"):
        raise ValueError(f"cannot save an unfitted {type(model).__name__}: call fit first")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"format": FORMAT_VERSION, "schema": model.schema.to_dict()}
    if isinstance(model, ChurnModel):
        meta.update(
            kind="churn",
            best_iteration=model.best_iteration,
            calibrator=_calibrator_dict(model.calibrator),
            calibration=model.calibration,
            boosters=["churn"],
        )
        _save_booster(model.booster, folder / "churn.txt")
    else:
        meta.update(
            kind="clv",
            objective=model.objective,
            interval=list(model.interval),
            best_iteration=model.best_iteration,
            validation=model.validation,
            interval_validation=model.interval_validation,
            boosters=sorted(model.boosters),
        )
        for name, booster in model.boosters.items():
            _save_booster(booster, folder / f"{name}.txt")
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=float))
    return folder


def load_model(folder: str | Path) -> ChurnModel | ClvModel:
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{folder} is not a saved Retain model (meta.json unreadable: {exc})"
        ) from exc
    if not isinstance(meta, dict):
        raise ValueError(
            f"{folder}/meta.json is corrupted: expected a JSON object, got {type(meta).__name__}"
        )
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{folder}: model format {meta.get('format')} is not supported (expected {FORMAT_VERSION})"
        )
    if meta.get("kind") not in ("churn", "clv"):
        raise ValueError(
            f"{folder}/meta.json is corrupted: kind {meta.get('kind')!r} is neither 'churn' nor 'clv'"
        )
    try:
        return _model_from(folder, meta)
    except (KeyError, TypeError, AttributeError, ValueError, lgb.basic.LightGBMError) as exc:
        what = f"meta.json has no entry {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(
            f"{folder} is not a loadable Retain {meta['kind']} model (meta.json or a booster file "
            f"is missing or corrupted): {what}"
        ) from exc


def _model_from(folder: Path, meta: dict[str, Any]) -> ChurnModel | ClvModel:
    schema = FeatureSchema.from_dict(meta["schema"])
    missing = [f"{n}.txt" for n in meta["boosters"] if not (folder / f"{n}.txt").is_file()]
    if missing:
        raise ValueError(f"booster files {missing} listed in meta.json do not exist")
    boosters = {name: _load_booster(folder / f"{name}.txt") for name in meta["boosters"]}
    if meta["kind"] == "churn":
        model = ChurnModel()
        model.booster = boosters["churn"]
        model.calibrator = _calibrator_from(dict(meta["calibrator"]))
        model.calibration = meta.get("calibration", {})
    else:
        model = ClvModel(interval=tuple(meta["interval"]))
        model.boosters = boosters
        model.objective = meta["objective"]
        model.validation = meta.get("validation", {})
        model.interval_validation = meta.get("interval_validation", {})
    model.schema = schema
    model.best_iteration = int(meta["best_iteration"])
    return model
