"""The CX workspace: an ASGI app (Starlette) mounted at `/ui` on the BentoML service, with
server-rendered pages (Jinja2, autoescaped) for the at-risk list, each customer's 360, the case
queue and the KPIs, and its own sign-in (sessions; the JSON API keeps its keys).

`app` is built at import; the service hands it its `Workspace` (the loaded champions, the
latest scored list, the loop and the store) when its worker starts. Every page but sign-in and
the static files needs a session; every POST carries the session's CSRF token; every answer
carries the security headers (a Content-Security-Policy without inline script). Nothing a
customer wrote, and no token, is logged.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from configs import Settings
from serving.core.champions import Champions
from serving.core.reasons import describe
from serving.http.payloads import Refused
from serving.loop.cases import (
    ACTIVE,
    NEEDS_RESOLUTION,
    RETENTION,
    STATUSES,
    TRANSITIONS,
    CaseBook,
    CaseError,
    Opening,
    case_kpis,
)
from serving.score_store import ScoreStore
from serving.web.accounts import AccountError, Accounts, Session, same
from serving.web.charts import bars, sparkline
from serving.web.index import FILTERS, SORTS, AtRiskIndex, ListQuery, Trend

logger = logging.getLogger("retain.workspace")

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "retain_session"
SIGNIN_COOKIE = "retain_signin"  # the sign-in form's CSRF token (double submit), before a session
MAX_FORM_BYTES = 64_000
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


@dataclass
class Workspace:
    """What the pages read: the service's loaded state and the store."""

    champions: Champions
    settings: Settings
    latest: Callable[[], Any]  # the LatestList's `get` (raises Refused without a list)
    score_store: ScoreStore | None
    book: CaseBook | None
    accounts: Accounts | None
    history: Any  # serving.loop.history.History, or None without a data folder
    realtime: Callable[[str], dict[str, Any] | None]  # a customer's newest real-time score
    clock: Callable[[], pd.Timestamp]
    reports: Any = None  # serving.web.reports.Reports: what `retain monitor` last logged
    outbox_store: Any = None  # the store.Store holding the outreach outbox (read once it has one)
    _outbox: Any = field(default=None, repr=False)
    _index: tuple[Any, AtRiskIndex, Trend] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def outreach(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's outreach selections (none before the first `retain outreach run`)."""
        from serving.outreach.outbox import Outbox
        from serving.outreach.policy import OutreachError

        if self.outbox_store is None:
            return []
        if self._outbox is None:
            try:
                self._outbox = Outbox(self.outbox_store, create=False)
            except OutreachError:
                return []
        return self._outbox.for_customer(customer_id)

    def index(self) -> tuple[Any, AtRiskIndex, Trend]:
        """(loaded list, its index, its trend), built once per scored list."""
        loaded = self.latest()
        current = self._index
        if current is not None and current[0] is loaded:
            return current
        with self._lock:
            if self._index is not None and self._index[0] is loaded:
                return self._index
            regions = pd.Series(dtype=object)
            if self.history is not None and "region" in self.history.tables.customers:
                c = self.history.tables.customers
                regions = pd.Series(
                    c["region"].astype(object).to_numpy(),
                    index=c["customer_id"].astype(str).to_numpy(),
                )
                regions = regions[~regions.index.duplicated()]
            index = AtRiskIndex(loaded.as_of, loaded.ranked, regions)
            trend = (
                Trend.start(self.score_store, index, self.settings.workspace.trend_lists)
                if self.score_store is not None
                else Trend()
            )
            self._index = (loaded, index, trend)
            logger.info("workspace: at-risk index of %d customers built", len(index.ids))
            return self._index


templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _money(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{float(v):,.0f}"


def _pct(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * float(v):.0f}%"


def _when(v: Any) -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return "-"
    t = pd.Timestamp(v)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.strftime("%d %b %Y %H:%M") if (t.hour or t.minute) else t.strftime("%d %b %Y")


def _words(v: Any) -> str:
    return str(v).replace("_", " ") if v is not None else ""


templates.filters.update(money=_money, pct=_pct, when=_when, words=_words)


class Denied(Exception):
    """The signed-in user may not do this (403), or there is no session (to sign-in)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _workspace(request: Request) -> Workspace:
    ws = getattr(request.app.state, "workspace", None)
    if ws is None:
        raise Denied(503, "the workspace is starting: try again in a moment")
    return ws


def _base(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def _secure(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"


def _render(
    request: Request, name: str, code: int = 200, session: Session | None = None, **context
) -> HTMLResponse:
    html = templates.get_template(name).render(
        base=_base(request), session=session, path=request.url.path, **context
    )
    return HTMLResponse(html, status_code=code)


def _session(request: Request) -> tuple[Workspace, Session]:
    ws = _workspace(request)
    if ws.accounts is None:
        raise Denied(
            503,
            "the workspace needs a data folder with the contract tables (its users live in "
            "the store): start the service with `retain serve --data DIR`",
        )
    session = ws.accounts.session(request.cookies.get(SESSION_COOKIE), now=ws.clock())
    if session is None:
        raise Denied(401, "sign in first")
    return ws, session


async def _form(request: Request, session: Session | None) -> dict[str, str]:
    """The posted form (URL-encoded), its CSRF token checked against the session's."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise Denied(413, "that form is too large")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Denied(413, "that form is too large")
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    form = {k: v[-1] for k, v in parsed.items()}
    expected = session.csrf if session is not None else request.cookies.get(SIGNIN_COOKIE, "")
    if not expected or not same(form.get("csrf", ""), expected):
        raise Denied(403, "the form expired or did not come from this page: reload it and retry")
    return form


def _redirect(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(_base(request) + path, status_code=303)


# -- sign-in -----------------------------------------------------------------------------------


def signin_page(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = _render(request, "signin.html", status, csrf=token, error=error)
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path=_base(request) or "/",
    )
    return response


async def signin(request: Request) -> Response:
    if request.method == "GET":
        return signin_page(request)
    ws = _workspace(request)
    form = await _form(request, None)
    if ws.accounts is None:
        raise Denied(503, "the workspace needs `retain serve --data DIR`")
    try:
        cookie, session = ws.accounts.sign_in(form.get("token", ""), now=ws.clock())
    except AccountError as exc:
        return signin_page(request, str(exc), 401)
    logger.info("workspace: %s signed in", session.user.name)
    response = _redirect(request, "/at-risk")
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(ws.settings.workspace.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path=_base(request) or "/",
    )
    response.delete_cookie(SIGNIN_COOKIE, path=_base(request) or "/")
    return response


async def signout(request: Request) -> Response:
    ws, session = _session(request)
    await _form(request, session)
    ws.accounts.sign_out(request.cookies.get(SESSION_COOKIE))
    response = _redirect(request, "/signin")
    response.delete_cookie(SESSION_COOKIE, path=_base(request) or "/")
    return response


def home(request: Request) -> Response:
    return _redirect(request, "/at-risk")


# -- the at-risk list --------------------------------------------------------------------------


def _query(params) -> ListQuery:
    def many(name: str) -> tuple[str, ...]:
        return tuple(v for v in params.getlist(name) if v)

    raw_min = params.get("min_value", "").strip()
    try:
        min_value = float(raw_min) if raw_min else None
    except ValueError:
        min_value = None
    if min_value is not None and not math.isfinite(min_value):
        min_value = None
    try:
        page = max(1, int(params.get("page", "1")))
    except ValueError:
        page = 1
    sort = params.get("sort", "value_at_risk")
    return ListQuery(
        segment=many("segment"),
        tier=many("tier"),
        region=many("region"),
        family=many("family"),
        min_value=min_value,
        search=params.get("q", "").strip()[:200],
        sort=sort if sort in SORTS else "value_at_risk",
        ascending=params.get("dir") == "asc",
        page=page,
    )


def _query_string(q: ListQuery, **change) -> str:
    q = replace(q, **change)
    pairs: list[tuple[str, str]] = []
    for name in FILTERS:
        pairs += [(name, v) for v in getattr(q, name)]
    if q.min_value is not None:
        pairs.append(("min_value", f"{q.min_value:g}"))
    if q.search:
        pairs.append(("q", q.search))
    if q.sort != "value_at_risk":
        pairs.append(("sort", q.sort))
    if q.ascending:
        pairs.append(("dir", "asc"))
    if q.page != 1:
        pairs.append(("page", str(q.page)))
    return urlencode(pairs)


def _no_list(request: Request, session: Session, exc: Refused, title: str) -> HTMLResponse:
    return _render(
        request,
        "empty.html",
        session=session,
        title=title,
        message="No scored list yet: run `retain score --data DIR --as-of DATE --out FILE`, "
        "then reload this page.",
        detail=exc.message,
    )


def at_risk(request: Request) -> Response:
    ws, session = _session(request)
    try:
        _, index, _ = ws.index()
    except Refused as exc:
        return _no_list(request, session, exc, "At risk")
    q = _query(request.query_params)
    size = ws.settings.workspace.page_size
    page = index.view(q, size=size)
    rows = index.rows(page.positions)
    ids = [r["customer_id"] for r in rows]
    cases = ws.book.active_for(ids) if ws.book is not None and ids else {}
    contacts = (
        {c["customer_id"]: c for c in ws.book.contacts(ids, latest_only=True)}
        if ws.book is not None and ids
        else {}
    )
    pages = max(1, -(-page.total // size))
    current = min(q.page, pages)
    return _render(
        request,
        "at_risk.html",
        session=session,
        as_of=index.as_of,
        q=q,
        rows=rows,
        cases=cases,
        contacts=contacts,
        total=page.total,
        everyone=len(index.ids),
        first=page.first,
        page=current,
        pages=pages,
        choices={name: index.choices(name) for name in FILTERS},
        link=lambda **change: "?" + _query_string(q, **change),
        here=_query_string(q, page=1),
        views=ws.accounts.views(session.user),
        sorts=SORTS,
    )


def at_risk_csv(request: Request) -> Response:
    ws, session = _session(request)
    try:
        _, index, _ = ws.index()
    except Refused as exc:
        raise Denied(404, exc.message) from None
    q = _query(request.query_params)
    limit = ws.settings.workspace.export_max_rows
    page = index.view(q, size=1, limit=limit)
    part = index.ranked.iloc[page.positions].copy()
    part.insert(0, "rank_in_view", np.arange(1, len(part) + 1))
    part["region"] = [
        index.columns["region"].values[c] or ""
        for c in index.columns["region"].codes[page.positions]
    ]
    buffer = io.StringIO()
    part.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL)
    name = f"at_risk_{index.as_of:%Y-%m-%d}.csv"
    logger.info("workspace: %s exported %d rows", session.user.name, len(part))
    headers = {"content-disposition": f'attachment; filename="{name}"'}
    if page.total > limit:
        headers["x-retain-truncated"] = f"{limit} of {page.total}"
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


async def save_view(request: Request) -> Response:
    ws, session = _session(request)
    form = await _form(request, session)
    query = form.get("query", "")
    try:
        ws.accounts.save_view(session.user, form.get("name", ""), query, now=ws.clock())
    except AccountError as exc:
        raise Denied(422, str(exc)) from None
    return _redirect(request, "/at-risk" + (f"?{query}" if query else ""))


async def delete_view(request: Request) -> Response:
    ws, session = _session(request)
    await _form(request, session)
    ws.accounts.delete_view(session.user, int(request.path_params["view_id"]))
    return _redirect(request, "/at-risk")


# -- the customer page -------------------------------------------------------------------------


def _timeline(ws: Workspace, customer_id: str) -> tuple[list[dict], dict[str, Any]]:
    """The customer's newest events and survey answers, and their attributes."""
    from features.families.sentiment import comment_tone

    tables = ws.history.tables_of([customer_id])
    attributes = {
        k: v
        for k, v in tables.customers.iloc[0].to_dict().items()
        if k != "customer_id" and v is not None and not (not isinstance(v, str) and pd.isna(v))
    }
    items: list[dict] = []
    if tables.events is not None and len(tables.events):
        for r in tables.events.to_dict(orient="records"):
            items.append(
                {
                    "ts": r["ts"],
                    "kind": "event",
                    "channel": r.get("channel"),
                    "what": r.get("event_type"),
                    "amount": r.get("amount"),
                    "resolved": r.get("resolved"),
                }
            )
    if tables.feedback is not None and len(tables.feedback):
        fb = tables.feedback
        records = fb.to_dict(orient="records")
        written = [
            i
            for i, r in enumerate(records)
            if isinstance(r.get("comment"), str) and r["comment"].strip()
        ]
        tones = comment_tone(np.asarray([records[i]["comment"] for i in written], dtype=object))
        tone = dict(zip(written, tones, strict=True))
        for i, r in enumerate(records):
            comment = r.get("comment")
            has = i in tone
            items.append(
                {
                    "ts": r["ts"],
                    "kind": "survey",
                    "channel": r.get("channel"),
                    "what": str(r.get("survey", "")).upper(),
                    "score": r.get("score"),
                    "comment": comment if has else None,
                    "sentiment": float(tone[i]) if has else None,
                }
            )
    items.sort(key=lambda r: pd.Timestamp(r["ts"]), reverse=True)
    return items[: ws.settings.workspace.timeline_rows], attributes


def _drivers(ws: Workspace, loaded, customer_id: str) -> list:
    """The churn model's largest contributions for this customer, in words, as bars."""
    pos = loaded.ids.get_indexer([customer_id])[0]
    if pos < 0:
        return []
    rows = loaded.rows(np.array([pos]))
    contributions = loaded.champions.churn.contributions_matrix(rows.churn)[0]
    values = rows.values().iloc[0]
    columns = list(loaded.champions.churn.schema.columns)
    order = np.argsort(-np.abs(contributions), kind="stable")[:8]
    items = [
        (describe(columns[j], values.iloc[j]), float(contributions[j]))
        for j in order
        if contributions[j] != 0
    ]
    return bars(items)


def customer(request: Request) -> Response:
    ws, session = _session(request)
    cid = request.path_params["customer_id"]
    if ws.history is None or cid not in ws.history.known:
        return _render(
            request,
            "empty.html",
            404,
            session=session,
            title="Customer not found",
            message=f"No customer {cid} in the data folder's customers table.",
            detail=None,
        )
    try:
        loaded, index, trend = ws.index()
        row = index.row(cid)
    except Refused:
        loaded = index = trend = row = None
    realtime = ws.realtime(cid)
    if row is not None and realtime is not None:
        shown = {**row, **{k: realtime[k] for k in realtime if k in row}}
    else:
        shown = row
    points = []
    if index is not None and row is not None:
        pos = int(index.position.get_indexer([cid])[0])
        points = trend.points(pos) + [(index.as_of, row["churn_probability"], row["value_at_risk"])]
    if realtime is not None:
        points.append(
            (
                pd.Timestamp(realtime["as_of"]),
                realtime["churn_probability"],
                realtime["value_at_risk"],
            )
        )
    spark = sparkline([p[1] for p in points])
    timeline, attributes = _timeline(ws, cid)
    total, cases = ws.book.list(customer_id=cid, limit=50)
    return _render(
        request,
        "customer.html",
        session=session,
        cid=cid,
        row=shown,
        as_of=index.as_of if index is not None else None,
        realtime=realtime,
        points=points,
        spark=spark,
        drivers=_drivers(ws, loaded, cid) if loaded is not None and row is not None else [],
        attributes=attributes,
        timeline=timeline,
        cases=cases,
        contacts=ws.book.contacts([cid]),
        outreach=ws.outreach(cid),
        outcomes=ws.settings.workspace.contact_outcomes,
        channels=("phone", "email", "chat", "sms", "app", "web", "store", "social", "other"),
    )


async def open_case(request: Request) -> Response:
    ws, session = _session(request)
    form = await _form(request, session)
    cid = request.path_params["customer_id"]
    if ws.history is None or cid not in ws.history.known:
        raise Denied(404, f"no customer {cid}")
    note = form.get("note", "").strip()[:2000]
    if not note:
        raise Denied(422, "say why the case is opened (the note)")
    try:
        _, index, _ = ws.index()
        row = index.row(cid) or {}
    except Refused:
        row = {}
    scores = {k: row.get(k) for k in ("churn_probability", "clv", "value_at_risk", "tier")}
    scores.update(
        churn_model_version=row.get("churn_model_version"),
        clv_model_version=row.get("clv_model_version"),
    )
    attributes = ws.history.segment_and_region(cid)
    opening = Opening(
        kind=RETENTION,
        customer_id=cid,
        segment=attributes.get("segment"),
        attributes=attributes,
        reason="manual",
        reason_text=f"opened by {session.user.name}: {note}",
        trigger={"by": session.user.name, "note": note, "at": ws.clock().isoformat()},
        scores=scores,
    )
    owner = None if session.user.is_lead else session.user.name
    try:
        case_id, _ = ws.book.open(opening, actor=session.user.name, now=ws.clock(), owner=owner)
    except CaseError as exc:
        raise Denied(exc.status, str(exc)) from None
    return _redirect(request, f"/cases/{case_id}")


async def log_contact(request: Request) -> Response:
    ws, session = _session(request)
    form = await _form(request, session)
    cid = request.path_params["customer_id"]
    if ws.history is None or cid not in ws.history.known:
        raise Denied(404, f"no customer {cid}")
    outcome = form.get("outcome", "")
    if outcome not in ws.settings.workspace.contact_outcomes:
        raise Denied(422, f"unknown outcome {outcome!r}")
    case_id = form.get("case_id", "").strip()
    try:
        ws.book.log_contact(
            cid,
            actor=session.user.name,
            channel=form.get("channel", ""),
            outcome=outcome,
            note=form.get("note", "").strip()[:2000] or None,
            case_id=int(case_id) if case_id.isdigit() else None,
            now=ws.clock(),
        )
    except CaseError as exc:
        raise Denied(exc.status, str(exc)) from None
    return _redirect(request, f"/customers/{cid}")


# -- cases -------------------------------------------------------------------------------------


def cases_page(request: Request) -> Response:
    ws, session = _session(request)
    params = request.query_params
    lead = session.user.is_lead
    owner = params.get("owner", "") if lead else session.user.name
    status = [s for s in params.getlist("status") if s in STATUSES] or list(ACTIVE)
    try:
        page = max(1, int(params.get("page", "1")))
    except ValueError:
        page = 1
    size = ws.settings.workspace.page_size
    total, cases = ws.book.list(
        status=status,
        owner=owner or None,
        now=ws.clock(),
        limit=size,
        offset=(page - 1) * size,
    )
    owners = ws.book.open_by_owner(now=ws.clock()) if lead else []
    return _render(
        request,
        "cases.html",
        session=session,
        cases=cases,
        total=total,
        page=page,
        pages=max(1, -(-total // size)),
        owner=owner,
        status=status,
        statuses=STATUSES,
        owners=owners,
        now=ws.clock(),
        mine=not lead or owner == session.user.name,
    )


def _case_for(ws: Workspace, session: Session, case_id: int) -> dict[str, Any]:
    try:
        case = ws.book.get(case_id)
    except CaseError as exc:
        raise Denied(exc.status, str(exc)) from None
    if not session.user.is_lead and case["owner"] != session.user.name:
        raise Denied(
            403, f"case {case_id} belongs to {case['owner']}: only its owner or a lead can open it"
        )
    return case


def case_page(request: Request) -> Response:
    ws, session = _session(request)
    case = _case_for(ws, session, int(request.path_params["case_id"]))
    return _render(
        request,
        "case.html",
        session=session,
        case=case,
        allowed=TRANSITIONS[case["status"]],
        needs_resolution=NEEDS_RESOLUTION,
        resolutions=ws.settings.loop.resolution_codes,
        team=ws.accounts.names() if session.user.is_lead else [],
        active=case["status"] in ACTIVE,
    )


async def transition(request: Request) -> Response:
    ws, session = _session(request)
    form = await _form(request, session)
    case_id = int(request.path_params["case_id"])
    case = _case_for(ws, session, case_id)
    owner = form.get("owner", "").strip() or None
    if owner is not None and owner != case["owner"] and not session.user.is_lead:
        raise Denied(403, "only a lead can reassign a case")
    if owner is not None and owner not in ws.accounts.names():
        raise Denied(422, f"no workspace user {owner!r} to give the case to")
    to = form.get("to", "") or case["status"]
    version = form.get("version", "")
    try:
        ws.book.transition(
            case_id,
            to,
            actor=session.user.name,
            now=ws.clock(),
            version=int(version) if version.isdigit() else None,
            resolution=form.get("resolution") or None,
            note=form.get("note", "").strip()[:2000] or None,
            owner=owner,
        )
    except CaseError as exc:
        raise Denied(exc.status, str(exc)) from None
    return _redirect(request, f"/cases/{case_id}")


# -- KPIs and models ---------------------------------------------------------------------------


SURVEY_KPIS = (
    ("nps", "NPS", "{:+.0f}"),
    ("csat_mean", "CSAT", "{:.2f}"),
    ("ces_mean", "CES", "{:.2f}"),
)


def _kpi_table(kpis: pd.DataFrame, window: float | None) -> list[dict[str, Any]]:
    """Per group (all, segments, high impact vs the rest): the survey KPIs and churn rate over
    one window, from a monitoring run's kpis.csv."""
    if kpis.empty or window is None:
        return []
    part = kpis[kpis["window_days"] == window]
    rows = []
    for (group_by, group), g in part.groupby(["group_by", "group"], sort=False):
        values = dict(zip(g["kpi"], g["value"], strict=True))
        counts = dict(zip(g["kpi"], g["n"], strict=True))
        rows.append(
            {
                "group_by": group_by,
                "group": group,
                **{k: values.get(k) for k, _, _ in SURVEY_KPIS},
                "churn_rate": values.get("churn_rate"),
                "responses": counts.get("nps"),
            }
        )
    order = {"all": 0, "impact": 1, "segment": 2}
    return sorted(rows, key=lambda r: (order.get(r["group_by"], 3), str(r["group"])))


def _over_time(runs: list, kpi: str, window: float | None) -> list[tuple[pd.Timestamp, float]]:
    points = []
    for run in reversed(runs):  # oldest first
        k = run.kpis
        if k.empty or window is None:
            continue
        hit = k[(k["window_days"] == window) & (k["group_by"] == "all") & (k["kpi"] == kpi)]
        if len(hit) and pd.notna(hit["value"].iloc[0]):
            points.append((run.as_of, float(hit["value"].iloc[0])))
    return points


def kpis(request: Request) -> Response:
    ws, session = _session(request)
    try:
        _, index, _ = ws.index()
    except Refused as exc:
        return _no_list(request, session, exc, "KPIs")
    ranked = index.ranked
    by_tier = (
        ranked.groupby("tier", observed=True)
        .agg(
            customers=("customer_id", "size"),
            value_at_risk=("value_at_risk", "sum"),
            churn=("churn_probability", "mean"),
            clv=("clv", "sum"),
        )
        .reset_index()
        .to_dict(orient="records")
    )
    by_segment = (
        ranked.groupby("segment", observed=True)
        .agg(
            customers=("customer_id", "size"),
            value_at_risk=("value_at_risk", "sum"),
            churn=("churn_probability", "mean"),
        )
        .reset_index()
        .sort_values("value_at_risk", ascending=False)
        .to_dict(orient="records")
    )
    top = max((r["value_at_risk"] for r in by_segment), default=0.0) or 1.0
    cases = ws.book.frame() if ws.book is not None else pd.DataFrame()
    runs = ws.reports.latest() if ws.reports is not None else []
    latest = runs[0] if runs else None
    windows = (
        sorted(latest.kpis["window_days"].dropna().unique())
        if latest is not None and not latest.kpis.empty
        else []
    )
    window = windows[0] if windows else None
    trends = []
    for kpi, label in (
        ("nps", "NPS"),
        ("csat_mean", "CSAT"),
        ("ces_mean", "CES"),
        ("churn_rate", "churn rate"),
    ):
        points = _over_time(runs, kpi, window)
        if points:
            values = [v for _, v in points]
            lo, hi = min(values), max(values)
            scaled = [(v - lo) / (hi - lo) if hi > lo else 0.5 for v in values]
            trends.append(
                {"label": label, "kpi": kpi, "points": points, "spark": sparkline(scaled)}
            )
    return _render(
        request,
        "kpis.html",
        session=session,
        as_of=index.as_of,
        customers=len(ranked),
        value_at_risk=float(ranked["value_at_risk"].sum()),
        churn=float(ranked["churn_probability"].mean()),
        by_tier=by_tier,
        by_segment=by_segment,
        top=top,
        sla=case_kpis(cases, ws.clock())["by_priority"] if len(cases) else [],
        versions=(ws.champions.churn_version, ws.champions.clv_version),
        trained={
            kind: ws.reports.training_metrics(kind, str(version)) if ws.reports is not None else {}
            for kind, version in (
                ("churn", ws.champions.churn_version),
                ("clv", ws.champions.clv_version),
            )
        },
        latest=latest,
        window=window,
        kpi_rows=_kpi_table(latest.kpis, window) if latest is not None else [],
        trends=trends,
        survey_kpis=SURVEY_KPIS,
    )


def report(request: Request) -> Response:
    ws, _ = _session(request)
    path = (
        ws.reports.report(request.path_params["run_id"], request.path_params["name"])
        if ws.reports is not None
        else None
    )
    if path is None:
        raise Denied(404, "No such report among the newest monitoring runs.")
    # Evidently's reports carry their own inline script: they run sandboxed (no cookies, no
    # access to the workspace), and reach nothing outside the file.
    policy = (
        "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
        "style-src 'unsafe-inline'; img-src data:; font-src data:"
    )
    return Response(
        path.read_bytes(),
        media_type="text/html; charset=utf-8",
        headers={"content-security-policy": policy},
    )


# -- errors and headers ------------------------------------------------------------------------


async def _denied(request: Request, exc: Denied) -> Response:
    if exc.status == 401:
        return _redirect(request, "/signin")
    session = None
    ws = getattr(request.app.state, "workspace", None)
    if ws is not None and ws.accounts is not None:
        session = ws.accounts.session(request.cookies.get(SESSION_COOKIE), now=ws.clock())
    return _render(
        request,
        "empty.html",
        exc.status,
        session=session,
        title={403: "Not allowed", 404: "Not found"}.get(exc.status, "Cannot do that"),
        message=exc.message,
        detail=None,
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    return await _denied(request, Denied(404, "There is no such page in the workspace."))


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.error(
        "workspace: %s %s failed: %s", request.method, request.url.path, type(exc).__name__
    )
    return _render(
        request,
        "empty.html",
        500,
        session=None,
        title="Something went wrong",
        message="The workspace could not show this page; the service log says why.",
        detail=None,
    )


class SecurityHeaders:
    """ASGI middleware adding the security headers to every answer of the workspace."""

    def __init__(self, app) -> None:
        self.app = app
        self.headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        *((k, v) for k, v in self.headers if k not in names),
                    ],
                }
            await send(message)

        await self.app(scope, receive, with_headers)


def build_app() -> Starlette:
    routes = [
        Route("/", home),
        Route("/signin", signin, methods=["GET", "POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/at-risk", at_risk),
        Route("/at-risk.csv", at_risk_csv),
        Route("/views", save_view, methods=["POST"]),
        Route("/views/{view_id:int}/delete", delete_view, methods=["POST"]),
        Route("/customers/{customer_id}", customer),
        Route("/customers/{customer_id}/cases", open_case, methods=["POST"]),
        Route("/customers/{customer_id}/contacts", log_contact, methods=["POST"]),
        Route("/cases", cases_page),
        Route("/cases/{case_id:int}", case_page),
        Route("/cases/{case_id:int}/transition", transition, methods=["POST"]),
        Route("/kpis", kpis),
        Route("/reports/{run_id}/{name}", report),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    web = Starlette(
        routes=routes, exception_handlers={Denied: _denied, 404: _not_found, 500: _server_error}
    )
    web.add_middleware(SecurityHeaders)
    return web


app = build_app()
