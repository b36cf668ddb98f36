"""A trained model as plain files: LightGBM boosters as text, calibrators,
schemas and settings as JSON. No pickles, so a model folder is safe to load and readable.

    <folder>/meta.json          kind, schema, calibrator or objective, iterations, interval,
                                blend with the classic models, BTYD parameters
    <folder>/<booster>.txt      one LightGBM model per booster (churn: "churn"; clv: its parts)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm as lgb

from model.blend import ChurnStack, ClvBlend
from model.btyd import BtydParams
from model.calibration import calibrator_from_dict
from model.churn import ChurnModel
from model.clv import ClvModel
from model.schema import FeatureSchema

FORMAT_VERSION = 1


def _save_booster(booster: lgb.Booster, path: Path) -> None:
    # Keep only the trees early stopping chose, so the saved model predicts what was evaluated.
    booster.save_model(path, num_iteration=booster.best_iteration or None)


def _load_booster(path: Path) -> lgb.Booster:
    return lgb.Booster(model_file=str(path))


def save_model(model: ChurnModel | ClvModel, folder: str | Path) -> Path:
    if not isinstance(model, ChurnModel | ClvModel):
        raise TypeError(f"cannot save {type(model).__name__}: expected ChurnModel or ClvModel")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "schema": model.schema.to_dict(),
        "btyd": None if model.btyd is None else model.btyd.to_dict(),
    }
    if isinstance(model, ChurnModel):
        meta.update(
            kind="churn",
            best_iteration=model.best_iteration,
            calibrator=model.calibrator.to_dict(),
            calibration=model.calibration,
            stack=None if model.stack is None else model.stack.to_dict(),
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
            blend=model.blend.to_dict(),
            interval_shift=model.interval_shift,
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
    # Models saved before blends existed have neither key: no BTYD features, no blend.
    btyd = None if meta.get("btyd") is None else BtydParams.from_dict(meta["btyd"])
    if meta["kind"] == "churn":
        return ChurnModel(
            schema=schema,
            booster=boosters["churn"],
            best_iteration=int(meta["best_iteration"]),
            calibrator=calibrator_from_dict(meta["calibrator"]),
            calibration=meta.get("calibration", {}),
            stack=None if meta.get("stack") is None else ChurnStack.from_dict(meta["stack"]),
            btyd=btyd,
        )
    return ClvModel(
        schema=schema,
        boosters=boosters,
        objective=meta["objective"],
        interval=tuple(meta["interval"]),
        best_iteration=int(meta["best_iteration"]),
        validation=meta.get("validation", {}),
        interval_validation=meta.get("interval_validation", {}),
        blend=ClvBlend.from_dict(meta["blend"]) if "blend" in meta else ClvBlend(),
        interval_shift=float(meta.get("interval_shift", 0.0)),
        btyd=btyd,
    )
