"""People of the CX workspace: users and their roles, one-time sign-in tokens, sessions with their
CSRF tokens, and each user's saved views of the at-risk list, all in the store.

A token is shown once (`retain users add`) and only its SHA-256 is kept; signing in exchanges it
for a session, whose cookie value is likewise kept only as a hash, so a copy of the database
signs nobody in. Tokens and cookies are 32 random bytes: a plain hash is enough, nothing to
slow down against guessing.

Roles: an `agent` works their own cases and may open any customer; a `lead` also sees every
case and reassigns them; an `admin` may do what a lead does (users are managed from the shell).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from store import Store, as_utc, naive_utc

ROLES = ("agent", "lead", "admin")
LEADS = ("lead", "admin")
NAME_MAX = 200
VIEW_NAME_MAX = 100


class AccountError(ValueError):
    """A request about users or sessions that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str

    @property
    def is_lead(self) -> bool:
        return self.role in LEADS


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    expires_at: datetime


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time equality of two secrets (CSRF tokens)."""
    return hmac.compare_digest(a.encode(), b.encode())


class Accounts:
    """Users, tokens, sessions and saved views in a store."""

    def __init__(self, store: Store, *, session_hours: float, token_days: float) -> None:
        self.store = store
        self.session_hours = session_hours
        self.token_days = token_days

    # -- users ------------------------------------------------------------------------------

    def add(self, name: str, role: str, *, now: datetime) -> str:
        """A new user; returns their one-time sign-in token (not stored, shown once)."""
        name = _check_name(name)
        if role not in ROLES:
            raise AccountError(f"unknown role {role!r}; expected one of {list(ROLES)}")
        token = secrets.token_urlsafe(32)
        u = self.store.t.users
        try:
            with self.store.engine.begin() as conn:
                conn.execute(
                    insert(u).values(
                        name=name,
                        role=role,
                        token_hash=digest(token),
                        token_expires_at=naive_utc(now) + timedelta(days=self.token_days),
                        created_at=naive_utc(now),
                        disabled=False,
                    )
                )
        except IntegrityError:
            raise AccountError(
                f"there is a user {name!r} already: `retain users token {name}` gives them a "
                "new sign-in token"
            ) from None
        return token

    def new_token(self, name: str, *, now: datetime) -> str:
        """A fresh one-time token for an existing user (a lost token, an expired one); their
        open sessions end."""
        user = self._user_row(name)
        token = secrets.token_urlsafe(32)
        u, s = self.store.t.users, self.store.t.web_sessions
        with self.store.engine.begin() as conn:
            conn.execute(
                update(u)
                .where(u.c.id == user["id"])
                .values(
                    token_hash=digest(token),
                    token_expires_at=naive_utc(now) + timedelta(days=self.token_days),
                    disabled=False,
                )
            )
            conn.execute(delete(s).where(s.c.user_id == user["id"]))
        return token

    def disable(self, name: str) -> None:
        """The user can no longer sign in; their sessions end."""
        user = self._user_row(name)
        u, s = self.store.t.users, self.store.t.web_sessions
        with self.store.engine.begin() as conn:
            conn.execute(
                update(u).where(u.c.id == user["id"]).values(disabled=True, token_hash=None)
            )
            conn.execute(delete(s).where(s.c.user_id == user["id"]))

    def users(self) -> list[dict]:
        u = self.store.t.users
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(u).order_by(u.c.name)).mappings().all()
        return [
            {
                "name": r["name"],
                "role": r["role"],
                "created_at": as_utc(r["created_at"]),
                "token_pending": r["token_hash"] is not None,
                "disabled": r["disabled"],
            }
            for r in rows
        ]

    def names(self, roles: tuple[str, ...] = ROLES) -> list[str]:
        """Names of the active users with one of `roles` (whom a case may be given to)."""
        u = self.store.t.users
        query = select(u.c.name).where(u.c.role.in_(list(roles)), u.c.disabled.is_(False))
        with self.store.engine.connect() as conn:
            return sorted(conn.execute(query).scalars())

    def _user_row(self, name: str) -> dict:
        u = self.store.t.users
        with self.store.engine.connect() as conn:
            row = conn.execute(select(u).where(u.c.name == name)).mappings().first()
        if row is None:
            raise AccountError(f"no user {name!r}: add one with `retain users add {name}`")
        return dict(row)

    # -- sessions ---------------------------------------------------------------------------

    def sign_in(self, token: str, *, now: datetime) -> tuple[str, Session]:
        """Exchange a one-time token for a session: (cookie value, session). The token is
        spent, so a second use fails."""
        u, s = self.store.t.users, self.store.t.web_sessions
        refused = AccountError(
            "that sign-in token is not valid (used already, expired or mistyped): ask an "
            "admin for a new one (`retain users token NAME`)"
        )
        token = token.strip()
        if not token or len(token) > 200:
            raise refused
        now = naive_utc(now)
        with self.store.engine.begin() as conn:
            row = conn.execute(select(u).where(u.c.token_hash == digest(token))).mappings().first()
            if row is None or row["disabled"]:
                raise refused
            if row["token_expires_at"] is not None and row["token_expires_at"] < now:
                raise refused
            spent = conn.execute(
                update(u)
                .where(u.c.id == row["id"], u.c.token_hash == digest(token))
                .values(token_hash=None, token_expires_at=None)
            ).rowcount
            if spent != 1:  # a concurrent sign-in with the same token won
                raise refused
            cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            expires = now + timedelta(hours=self.session_hours)
            conn.execute(
                insert(s).values(
                    id_hash=digest(cookie),
                    user_id=row["id"],
                    csrf=csrf,
                    created_at=now,
                    expires_at=expires,
                )
            )
        user = User(row["id"], row["name"], row["role"])
        return cookie, Session(user, csrf, expires)

    def session(self, cookie: str | None, *, now: datetime) -> Session | None:
        """The live session a cookie names, or None (none, unknown, expired, user disabled)."""
        if not cookie or len(cookie) > 200:
            return None
        u, s = self.store.t.users, self.store.t.web_sessions
        query = (
            select(s.c.csrf, s.c.expires_at, u.c.id, u.c.name, u.c.role, u.c.disabled)
            .join(u, u.c.id == s.c.user_id)
            .where(s.c.id_hash == digest(cookie))
        )
        with self.store.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None or row["disabled"] or row["expires_at"] < naive_utc(now):
            return None
        return Session(User(row["id"], row["name"], row["role"]), row["csrf"], row["expires_at"])

    def sign_out(self, cookie: str | None) -> None:
        if not cookie:
            return
        s = self.store.t.web_sessions
        with self.store.engine.begin() as conn:
            conn.execute(delete(s).where(s.c.id_hash == digest(cookie)))

    # -- saved views ------------------------------------------------------------------------

    def save_view(self, user: User, name: str, query: str, *, now: datetime) -> None:
        """Save (or replace) the user's view `name` of the at-risk list."""
        name = name.strip()
        if not name or len(name) > VIEW_NAME_MAX:
            raise AccountError(f"a view needs a name of 1 to {VIEW_NAME_MAX} characters")
        v = self.store.t.saved_views
        with self.store.engine.begin() as conn:
            conn.execute(delete(v).where(v.c.user_id == user.id, v.c.name == name))
            conn.execute(
                insert(v).values(user_id=user.id, name=name, query=query, created_at=naive_utc(now))
            )

    def views(self, user: User) -> list[dict]:
        v = self.store.t.saved_views
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(v.c.id, v.c.name, v.c.query).where(v.c.user_id == user.id).order_by(v.c.name)
            ).mappings()
            return [dict(r) for r in rows]

    def delete_view(self, user: User, view_id: int) -> None:
        v = self.store.t.saved_views
        with self.store.engine.begin() as conn:
            conn.execute(delete(v).where(v.c.user_id == user.id, v.c.id == view_id))


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > NAME_MAX or any(c in name for c in "\r\n\t"):
        raise AccountError(f"a user name needs 1 to {NAME_MAX} characters, on one line")
    return name
