"""Command-line edge helpers shared by every package's Typer app: the `--config` option,
progress lines on stderr, and turning expected errors into one clear message and exit code."""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from configs import ConfigError, Settings, load_settings

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", help="YAML file merged over configs/default.yaml.", show_default=False
    ),
]

F = TypeVar("F", bound=Callable[..., Any])

# Exit status for bad input (config, contract, arguments); 1 stays for unexpected crashes.
EXIT_BAD_INPUT = 2


def settings_from(config: Path | None) -> Settings:
    return load_settings(config)


def parse_cutoff(value: str, option: str = "--as-of"):
    """A cutoff given on the command line, as a UTC timestamp, or a usage error naming the option."""
    from features.contract import to_utc

    try:
        return to_utc(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


class Progress:
    """Timestamped progress lines on stderr, so long runs show where they are."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def __call__(self, message: str) -> None:
        typer.echo(f"[{time.perf_counter() - self._start:7.1f}s] {message}", err=True)


def handle_errors(*expected: type[BaseException]) -> Callable[[F], F]:
    """Report expected errors as `error: ...` on stderr with exit status 2, not a traceback."""
    caught = (ConfigError, *expected)

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except caught as exc:
                typer.echo(f"error: {exc}", err=True)
                sys.exit(EXIT_BAD_INPUT)

        return inner  # type: ignore[return-value]

    return wrap
