"""ASGI middleware in front of every route: every path except the health and readiness probes
and the CX workspace under `/ui` (which has its own sign-in) needs `Authorization: Bearer <key>` (constant-time comparison against every accepted key);
bodies over `service.max_request_bytes` get 413, bodies that are not JSON 415.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any

# Probes a load balancer or orchestrator calls without a key (BentoML serves all three).
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
# The CX workspace signs its users in itself (sessions, CSRF) and takes HTML forms.
OPEN_PREFIXES = ("/ui",)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def parse_api_keys(value: str | None) -> tuple[str, ...]:
    """Accepted keys from a comma-separated list (blanks ignored)."""
    return tuple(k.strip() for k in (value or "").split(",") if k.strip())


class Guard:
    """ASGI middleware in front of every route: API key, body size, JSON content type."""

    def __init__(
        self,
        app: Callable,
        *,
        keys: Sequence[str],
        max_bytes: int,
        open_paths: frozenset[str] = OPEN_PATHS,
        open_prefixes: tuple[str, ...] = OPEN_PREFIXES,
    ) -> None:
        self.app = app
        self.keys = tuple(k.encode() for k in keys)
        self.max_bytes = max_bytes
        self.open_paths = open_paths
        self.open_prefixes = open_prefixes

    def is_open(self, path: str) -> bool:
        return path in self.open_paths or any(
            path == p or path.startswith(p + "/") for p in self.open_prefixes
        )

    def authorised(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        value = next((v for k, v in headers if k == b"authorization"), None)
        if value is None or not self.keys:
            return False
        scheme, _, token = value.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        token = token.strip()
        ok = False
        for key in self.keys:  # no early exit: the time taken does not tell which key matched
            ok |= hmac.compare_digest(token, key)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        if not self.authorised(headers):
            await _reply(
                send,
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer <key>' with a "
                "key listed in RETAIN_API_KEYS (`retain serve` says where it stored its key)",
                extra=[(b"www-authenticate", b'Bearer realm="retain"')],
            )
            return
        if scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        content_type = next((v for k, v in headers if k == b"content-type"), b"application/json")
        if content_type.split(b";")[0].strip().lower() != b"application/json":
            await _reply(
                send,
                415,
                f"send the body as JSON with 'Content-Type: application/json', not {content_type.decode(errors='replace')!r}",
            )
            return
        declared = next((v for k, v in headers if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _reply(send, 413, self._too_large(int(declared)))
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await _reply(send, 413, self._too_large(None))
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: int | None) -> str:
        got = f"{size:,} bytes" if size is not None else "more"
        return f"request body of {got} is over the limit of {self.max_bytes:,} bytes (service.max_request_bytes): split the request"


async def _reply(
    send: Send, status: int, message: str, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
