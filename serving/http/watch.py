"""Each service worker's champions kept current (`ChampionWatch`): every
`service.champion_check_s` seconds a background thread asks the registry which versions carry
the `champion` alias of `churn` and `clv`; when either changed (`retain promote`, or a `retain
train` / `retain retrain` that promoted), it loads the new models and hands them to the worker
(`on_change`), which swaps them into its parts whole. So every worker of every replica follows
a promotion within that interval, without a restart, and a request is answered wholly by the
old models or wholly by the new. An alias removed leaves the models being served in place (with
a warning): a worker never stops serving for want of a champion it had.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from model.registry import Registry
from serving.core.champions import Champions, load_champions
from serving.http.background import Background

logger = logging.getLogger("retain.service")


class ChampionWatch:
    def __init__(
        self,
        registry: Registry,
        current: Champions,
        on_change: Callable[[Champions], None],
        *,
        every_s: float,
        background: bool = True,
    ) -> None:
        self.registry = registry
        self.current = current
        self._on_change = on_change
        self._warned: dict[str, str | None] | None = None
        self.thread = (
            Background(self.check, every_s=every_s, name="retain-champions")
            if background and every_s > 0
            else None
        )

    def check(self) -> bool:
        """Load and hand over the champions when the registry's differ; True when it did."""
        versions = self.registry.champions()
        serving = {"churn": self.current.churn_version, "clv": self.current.clv_version}
        if versions == serving:
            self._warned = None
            return False
        if any(v is None for v in versions.values()):
            if versions != self._warned:
                missing = sorted(name for name, v in versions.items() if v is None)
                logger.warning(
                    "the registry has no champion of %s now; still serving churn v%s and clv v%s",
                    " and ".join(missing),
                    serving["churn"],
                    serving["clv"],
                )
                self._warned = versions
            return False
        new = load_champions(self.registry)
        self._on_change(new)
        self.current = new
        logger.info(
            "new champions: churn v%s -> v%s, clv v%s -> v%s",
            serving["churn"],
            new.churn_version,
            serving["clv"],
            new.clv_version,
        )
        return True

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()
