"""The serving models: the `champion` versions of `churn` and `clv` loaded from the registry,
with the versions every score records."""

from __future__ import annotations

from dataclasses import dataclass

from model.btyd import BtydParams
from model.churn import ChurnModel
from model.clv import ClvModel
from model.registry import CHAMPION, MODEL_NAMES, NoChampionError, Registry

__all__ = ["Champions", "NoChampionError", "load_champions"]


@dataclass(frozen=True)
class Champions:
    """The serving models and the registry versions they came from."""

    churn: ChurnModel
    clv: ClvModel
    churn_version: str
    clv_version: str
    # Models whose champion is a fallback: promoted because there was none, not because it beat
    # the baselines (see `training.run`); shown wherever the champions are announced.
    fallback: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.churn, ChurnModel):
            raise TypeError(f"churn must be a ChurnModel, got {type(self.churn).__name__}")
        if not isinstance(self.clv, ClvModel):
            raise TypeError(f"clv must be a ClvModel, got {type(self.clv).__name__}")

    @property
    def btyd(self) -> BtydParams | None:
        """The BG/NBD + Gamma-Gamma parameters the models' BTYD features are computed with (the
        churn model's when both have them: they come from one training run unless promoted
        apart)."""
        return self.churn.btyd if self.churn.btyd is not None else self.clv.btyd

    @property
    def shared_schema(self) -> bool:
        """Whether both models read the same feature matrix (then it is built once)."""
        return self.clv.schema == self.churn.schema


def load_champions(registry: Registry) -> Champions:
    """The `champion` versions of `churn` and `clv` from `registry`, or a NoChampionError that
    says how to get one."""
    versions = registry.champions()
    missing = [name for name, version in versions.items() if version is None]
    if missing:
        raise NoChampionError(
            f"no '{CHAMPION}' version of {'models' if len(missing) > 1 else 'model'} "
            f"{' and '.join(repr(m) for m in missing)} in the "
            f"MLflow registry at {registry.uri}. Train one with `retain train --data DIR` (the "
            "first model that beats the baselines becomes champion), or promote a registered "
            "version with `retain promote`; set MLFLOW_TRACKING_URI if the models live in "
            "another store."
        )
    models = {name: registry.load_model(name, version) for name, version in versions.items()}
    return Champions(
        churn=models["churn"],
        clv=models["clv"],
        churn_version=str(versions["churn"]),
        clv_version=str(versions[MODEL_NAMES[1]]),
        fallback=frozenset(n for n, v in versions.items() if registry.is_fallback(n, v)),
    )
