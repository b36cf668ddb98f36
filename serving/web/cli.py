"""`retain users add | token | disable | list`: the people of the CX workspace, from a shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge import ConfigOption, given_store_url, handle_errors, settings_from, utc_now
from serving.web.accounts import ROLES, AccountError
from store import StoreError

users_app = typer.Typer(no_args_is_help=True)

DataOption = Annotated[
    str | None, typer.Option("--data", help="Data folder whose store holds the users.")
]
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        help="Store database (default: RETAIN_STORE_URL, store.url, or <data>/store/retain.db).",
        show_default=False,
    ),
]


def _accounts(data: str | None, store: str | None, config: Path | None):
    from serving.web.accounts import Accounts
    from store import Store

    settings = settings_from(config)
    w = settings.workspace
    return Accounts(
        Store(given_store_url(settings, data, store)),
        session_hours=w.session_hours,
        token_days=w.token_days,
    ), settings


def _show_token(name: str, token: str, days: float) -> None:
    typer.echo(
        f"sign-in token for {name} (shown only this once; valid {days:g} days, for one sign-in):"
    )
    typer.echo(f"  {token}")
    typer.echo("Open http://localhost:3000/ui/signin on `retain serve --data DIR` and paste it.")


@users_app.command("add")
@handle_errors(AccountError, StoreError)
def add(
    name: Annotated[str, typer.Argument(help="The user's name (cases are owned by this name).")],
    role: Annotated[str, typer.Option("--role", help=f"One of {', '.join(ROLES)}.")] = "agent",
    data: DataOption = None,
    store: StoreOption = None,
    config: ConfigOption = None,
) -> None:
    """Add a workspace user and print their one-time sign-in token (only its hash is kept)."""
    accounts, settings = _accounts(data, store, config)
    token = accounts.add(name, role, now=utc_now())
    typer.echo(f"added {name.strip()} ({role})")
    _show_token(name.strip(), token, settings.workspace.token_days)


@users_app.command("token")
@handle_errors(AccountError, StoreError)
def token(
    name: str,
    data: DataOption = None,
    store: StoreOption = None,
    config: ConfigOption = None,
) -> None:
    """A new one-time sign-in token for a user (their open sessions end)."""
    accounts, settings = _accounts(data, store, config)
    _show_token(name, accounts.new_token(name, now=utc_now()), settings.workspace.token_days)


@users_app.command("disable")
@handle_errors(AccountError, StoreError)
def disable(
    name: str,
    data: DataOption = None,
    store: StoreOption = None,
    config: ConfigOption = None,
) -> None:
    """Stop a user signing in (their sessions end; their cases keep their name)."""
    accounts, _ = _accounts(data, store, config)
    accounts.disable(name)
    typer.echo(f"disabled {name}")


@users_app.command("list")
@handle_errors(AccountError, StoreError)
def list_users(
    data: DataOption = None,
    store: StoreOption = None,
    config: ConfigOption = None,
) -> None:
    """The workspace's users, their role and whether a sign-in token is waiting."""
    accounts, _ = _accounts(data, store, config)
    users = accounts.users()
    if not users:
        typer.echo("no users yet: `retain users add NAME --role agent|lead|admin`")
        return
    for u in users:
        state = (
            "disabled"
            if u["disabled"]
            else ("token not used yet" if u["token_pending"] else "active")
        )
        typer.echo(f"{u['name']:<24} {u['role']:<6} {state:<20} added {u['created_at']:%Y-%m-%d}")
