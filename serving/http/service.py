"""The Retain HTTP service: a thin BentoML class over `serving.http.core.ServiceCore`.

Start it with `retain serve [--port N] [--data DIR] [--config FILE]`, which checks the registry,
resolves the API keys and runs `bentoml serve serving.http.service:RetainService` with:

    MLFLOW_TRACKING_URI   the registry holding `churn@champion` and `clv@champion`
    RETAIN_DATA_DIR       folder with the score store (`<dir>/scores/LATEST`); optional
    RETAIN_CONFIG         YAML merged over configs/default.yaml (service limits, tiers); optional
    RETAIN_API_KEYS       accepted API keys, comma-separated; required

Routes: `POST /score`, `POST /at_risk`, `POST /events`, `POST /feedback`, `GET /cases/`,
`GET /cases/{id}`, `POST /cases/{id}/transition` (key required, JSON bodies, see
`serving.http.payloads`), the CX workspace under `/ui` (its own sign-in: `serving.web`), and BentoML's `/healthz`, `/livez`, `/readyz` (no key). The loop's
routes need `RETAIN_DATA_DIR` to hold the contract tables; the store is RETAIN_STORE_URL,
`store.url`, or `<data>/store/retain.db`. The models load when the worker starts, and
again when the registry's champions change (`serving.http.watch`, every
`service.champion_check_s`); without a champion, or without a key, the worker refuses to start
and says why.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from typing import Annotated, Any

import anyio
import bentoml
from fastapi import FastAPI, Query
from starlette.requests import Request
from starlette.responses import JSONResponse

from serving.http.core import ServiceCore
from serving.http.environment import ENV_WORKERS, environment, refuse_to_start
from serving.http.guard import Guard
from serving.http.loaded import LatestList
from serving.http.payloads import (
    AtRiskRequest,
    AtRiskResponse,
    Case,
    CaseList,
    IngestRequest,
    IngestResponse,
    Refused,
    ScoreRequest,
    ScoreResponse,
    TransitionRequest,
)
from serving.http.watch import ChampionWatch
from serving.web.app import app as web_app

logger = logging.getLogger("retain.service")


# Requests this small are scored on the event loop (about a millisecond each): handing them to a
# thread costs more than it saves. Larger ones, and any that must first load a new snapshot, run
# in a worker thread so the loop keeps answering probes and small requests meanwhile.
INLINE_ITEMS = 16
# The kill -9 test sets this to `after_commit`: the worker dies between committing a batch to the
# inbox and the loop's step, and its restart must open each case exactly once.
CRASH_ENV = "RETAIN_TEST_CRASH_AT"


async def _answer(inline: bool, call, **kwargs):
    """The core's answer, or its refusal as a JSON error with the status it chose."""
    from starlette.responses import JSONResponse

    try:
        if inline:
            return call(**kwargs)
        return await anyio.to_thread.run_sync(functools.partial(call, **kwargs))
    except Refused as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)


def utc_now():
    """The wall clock: when a row was received and a case opened or changed (read here only)."""
    import pandas as pd

    return pd.Timestamp.now(tz="UTC")


# The case routes (GET needs a plain ASGI app; BentoML's own routes are POST). Its handlers are
# methods of the service below, so they reach the same loaded state.
cases_api = FastAPI(title="Retain cases", docs_url=None, redoc_url=None)


async def _refused(_request: Request, exc: Refused) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status)


cases_api.add_exception_handler(Refused, _refused)


# Prometheus metrics and access logs cost about 0.3 ms each on a request of about 2 ms (two
# shared cores), so they are off; turn them on without a code change with
# BENTOML_CONFIG_OPTIONS="services.retain.metrics.enabled=true
# services.retain.logging.access.enabled=true".
@bentoml.asgi_app(cases_api, path="/cases")
@bentoml.asgi_app(web_app, path="/ui")
@bentoml.service(
    name="retain",
    workers=int(os.environ.get(ENV_WORKERS, "1")),
    traffic={"timeout": 60},
    metrics={"enabled": False},
    logging={"access": {"enabled": False}},
)
class RetainService:
    """Churn risk, customer value and reasons for customers, and the ranked at-risk list."""

    def __init__(self) -> None:
        from model.registry import Registry, quiet_mlflow
        from serving.core.champions import NoChampionError, load_champions
        from serving.score_store import ScoreStore

        logger.setLevel(logging.INFO)  # BentoML shows its own INFO lines only
        env = environment()
        quiet_mlflow(os.environ)
        registry = Registry(env.tracking_uri)
        try:
            # The error says how to train one.
            champions = load_champions(registry)
        except NoChampionError as exc:
            refuse_to_start(exc)
            raise
        store = ScoreStore(env.data_dir) if env.data_dir is not None else None
        scored = LatestList(store, champions)
        self.loop = self._start_loop(env, champions)
        self.core = ServiceCore(
            champions,
            env.settings,
            scored,
            realtime=self.loop.realtime_score if self.loop is not None else None,
        )
        workspace = self._workspace(env, champions, scored, store)
        web_app.state.workspace = workspace
        self.scored, self.workspace = scored, workspace
        self.watch = ChampionWatch(
            registry, champions, self._use, every_s=env.settings.service.champion_check_s
        )
        try:
            snap = scored.get()
            logger.info("scored list of %s: %d customers", snap.as_of, len(snap.ids))
            # The workspace's index of the list (seconds on a million customers) is built
            # now, beside the probes, rather than by the first person to open the list.
            threading.Thread(target=workspace.index, name="retain-index", daemon=True).start()
        except Refused as exc:
            logger.warning("customer ids and /at_risk are unavailable: %s", exc.message)
        logger.info("serving churn v%s and clv v%s", champions.churn_version, champions.clv_version)

    def _use(self, champions) -> None:
        """Serve newly promoted champions: the scored list rebuilt for them first (scores by
        id come from the models it was built for), then the record scoring, the loop's
        rescoring and the workspace."""
        self.scored.use(champions)
        self.core.use(champions)
        if self.loop is not None:
            self.loop.champions = champions
        self.workspace.champions = champions

    @staticmethod
    def _start_loop(env, champions):
        """The loop (ingestion, cases) when the data folder holds the contract tables: the
        history read as the batch commands read it, then the rows a crash left unhandled."""
        from features.contract import ContractError
        from serving.http.loop import LoopCore
        from serving.loop.handoff import drop_dir
        from serving.loop.history import read_history
        from store import Store, StoreError, redact

        if env.data_dir is None:
            logger.warning("no data folder: POST /events, /feedback and /cases are unavailable")
            return None
        try:
            store = Store(env.store_url)
            history = read_history(env.data_dir, store)
        except (ContractError, StoreError) as exc:
            logger.warning("ingestion and cases are unavailable: %s", exc)
            return None
        loop = LoopCore(
            champions,
            env.settings,
            store,
            history,
            clock=utc_now,
            webhook_url=env.cases_webhook_url,
            drop_dir=drop_dir(env.settings, env.data_dir),
            crash_after_commit=os.environ.get(CRASH_ENV) == "after_commit",
        )
        handled = loop.step(everything=True)
        logger.info(
            "loop: store %s; %d customers in the history; %d rows left unhandled before "
            "were handled now",
            redact(env.store_url),
            len(history.known),
            handled.rows,
        )
        loop.sender.wake()  # hand-offs a crash left pending
        return loop

    def _workspace(self, env, champions, scored, score_store):
        """What the CX workspace at /ui reads: this worker's loaded state and the store."""
        from serving.web.accounts import Accounts
        from serving.web.app import Workspace
        from serving.web.reports import Reports

        loop = self.loop
        w = env.settings.workspace
        return Workspace(
            champions=champions,
            settings=env.settings,
            latest=scored.get,
            score_store=score_store,
            book=loop.book if loop is not None else None,
            accounts=Accounts(loop.store, session_hours=w.session_hours, token_days=w.token_days)
            if loop is not None
            else None,
            history=loop.history if loop is not None else None,
            realtime=lambda cid: loop.realtime.get(cid) if loop is not None else None,
            clock=utc_now,
            reports=Reports(
                env.tracking_uri, env.settings.monitoring.experiment, seconds=time.monotonic
            ),
            outbox_store=loop.store if loop is not None else None,
        )

    def _loop(self):
        if self.loop is None:
            raise Refused(
                503,
                "ingestion and cases need a data folder with the contract tables: start the "
                "service with `retain serve --data DIR` on the folder `retain score` reads",
            )
        return self.loop

    async def _ingest(self, table: str, rows: list[dict[str, Any]]):
        try:
            loop = self._loop()
        except Refused as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        return await _answer(False, loop.ingest, table=table, rows=rows)

    @bentoml.api(route="/events", input_spec=IngestRequest)
    async def events(self, rows: list[dict[str, Any]]) -> IngestResponse:
        """Ingest journey events: each row checked by the data contract, the accepted ones
        committed to the inbox before the answer, their customers rescored at once, and a
        recovery case opened for each qualifying negative moment."""
        return await self._ingest("events", rows)

    @bentoml.api(route="/feedback", input_spec=IngestRequest)
    async def feedback(self, rows: list[dict[str, Any]]) -> IngestResponse:
        """Ingest survey answers (NPS, CSAT, CES) like /events: a detractor answer opens a
        recovery case for a qualifying customer at once."""
        return await self._ingest("feedback", rows)

    @cases_api.get("/", response_model=CaseList)
    def list_cases(
        self,
        status: Annotated[list[str] | None, Query()] = None,
        owner: str | None = None,
        priority: Annotated[list[str] | None, Query()] = None,
        customer_id: str | None = None,
        kind: str | None = None,
        overdue: bool = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> CaseList:
        """Cases as a work queue (overdue first, then priority, then due time), one page."""
        return self._loop().cases(
            status=status,
            owner=owner,
            priority=priority,
            customer_id=customer_id,
            kind=kind,
            overdue=overdue,
            limit=limit,
            offset=offset,
        )

    @cases_api.get("/{case_id}", response_model=Case)
    def get_case(self, case_id: int) -> Case:
        """A case with its trigger and its history."""
        return self._loop().case(case_id)

    @cases_api.post("/{case_id}/transition", response_model=Case)
    def transition_case(self, case_id: int, change: TransitionRequest) -> Case:
        """Move a case (409 for a transition its status does not allow, or a stale version)."""
        return self._loop().transition(case_id, **change.model_dump())

    @bentoml.api(route="/score", input_spec=ScoreRequest)
    async def score(
        self,
        customer_ids: list[str] | None = None,
        records: list[dict[str, Any]] | None = None,
        reasons: bool = True,
    ) -> ScoreResponse:
        """Score customers given by id (latest scored snapshot) or by feature records."""
        items = len(records) if records is not None else len(customer_ids or ())
        inline = items <= INLINE_ITEMS and (records is not None or self.core.scored.fresh())
        return await _answer(
            inline, self.core.score, customer_ids=customer_ids, records=records, reasons=reasons
        )

    @bentoml.api(route="/at_risk", input_spec=AtRiskRequest)
    async def at_risk(
        self,
        n: int | None = None,
        segment: list[str] | None = None,
        tier: list[str] | None = None,
    ) -> AtRiskResponse:
        """The top `n` of the latest ranked list, optionally only some segments and tiers."""
        shown = self.core.settings.service.at_risk_default_n if n is None else n
        inline = shown <= INLINE_ITEMS and self.core.scored.fresh()
        return await _answer(inline, self.core.at_risk, n=n, segment=segment, tier=tier)


class EnvGuard(Guard):
    """`serving.http.guard.Guard` with the keys and body limit this process was started with."""

    def __init__(self, app) -> None:
        env = environment()
        super().__init__(app, keys=env.keys, max_bytes=env.settings.service.max_request_bytes)


RetainService.add_asgi_middleware(EnvGuard)
