"""The HTTP edge to the API server: raw JSON requests and watch streams.

Reads (lists, watches) and the few writes (Events) go through here. Everything the HTTP
library can throw is turned here into ``KubeError`` (with a short ``reason`` for
counters), ``Gone`` (410: the resourceVersion is too old, list again) or ``NotServed``
(404: the CRD is absent; for a write, the object or its namespace). Responses are read
as raw JSON through the client's ``_preload_content=False`` path, so lists never become
client model objects, and watch lines are split by hand, so a large object never hits a
line-length limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

Obj = dict[str, Any]


class KubeError(Exception):
    """The API did not give a usable answer; ``reason`` is a short label for counters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Gone(KubeError):
    """410: the resourceVersion (or continue token) is too old; list again."""

    def __init__(self, message: str) -> None:
        super().__init__("gone", message)


class NotServed(KubeError):
    """404: the resource is not served (a CRD that is not installed)."""

    def __init__(self, message: str) -> None:
        super().__init__("absent", message)


HTTP_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


async def _request(api: Any, path: str, query: list[tuple[str, str]],
                   timeout: aiohttp.ClientTimeout, method: str = "GET", body: Obj | None = None,
                   content_type: str = "application/json") -> aiohttp.ClientResponse:
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    try:
        resp: aiohttp.ClientResponse = await api.call_api(
            path, method, query_params=query, header_params=headers, body=body,
            auth_settings=["BearerToken"], _preload_content=False, _request_timeout=timeout)
    except HTTP_ERRORS as e:
        raise KubeError(_reason(e), f"{method} {path}: {e!r}") from None
    return resp


async def _check(resp: aiohttp.ClientResponse, path: str, method: str = "GET") -> None:
    """Raise the right error for a non-2xx response (and release it)."""
    if 200 <= resp.status < 300:
        return
    try:
        body = (await resp.read())[:500].decode("utf-8", "replace")
    except HTTP_ERRORS:
        body = ""
    finally:
        resp.release()
    message = f"{method} {path}: HTTP {resp.status} {body}"
    if resp.status == 410:
        raise Gone(message)
    if resp.status == 404:
        raise NotServed(message)
    raise KubeError(f"http_{resp.status}", message)


async def get_json(api: Any, path: str, query: list[tuple[str, str]],
                   timeout: float) -> Obj:
    """GET ``path`` and decode the JSON object it returns."""
    return await send_json(api, "GET", path, None, timeout, query)


async def send_json(api: Any, method: str, path: str, body: Obj | None, timeout: float,
                    query: list[tuple[str, str]] | None = None,
                    content_type: str = "application/json") -> Obj:
    """``method`` (GET, POST, PATCH...) ``path`` with a JSON ``body`` (None: no body) sent
    as ``content_type``; the JSON object the API answers."""
    what = f"{method} {path}"
    resp = await _request(api, path, query or [], aiohttp.ClientTimeout(total=timeout),
                          method, body, content_type)
    await _check(resp, path, method)
    try:
        raw = await resp.read()
    except HTTP_ERRORS as e:
        raise KubeError(_reason(e), f"{what}: {e!r}") from None
    finally:
        resp.release()
    return _json_object(raw, what)


async def watch_lines(api: Any, path: str, query: list[tuple[str, str]],
                      connect_timeout: float, inactivity: float
                      ) -> AsyncIterator[list[Obj]]:
    """Open one watch stream and yield the events each network read brought, decoded.

    Ends when the server ends the stream; raises ``KubeError`` when it breaks, including
    when nothing arrives for ``inactivity`` seconds.
    """
    timeout = aiohttp.ClientTimeout(connect=connect_timeout, sock_connect=connect_timeout,
                                    sock_read=inactivity)
    resp = await _request(api, path, query, timeout)
    await _check(resp, path)
    try:
        yield []  # connected: lets the caller note contact before the first event
        rest = b""
        async for chunk in resp.content.iter_any():
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            events = [_decode(line, path) for line in lines if line.strip()]
            if events:
                yield events
        if rest.strip():
            yield [_decode(rest, path)]
    except HTTP_ERRORS as e:
        raise KubeError(_reason(e), f"watch {path}: {e!r}") from None
    finally:
        resp.close()


def _decode(line: bytes, path: str) -> Obj:
    return _json_object(line, f"watch {path}")


def _json_object(raw: bytes, what: str) -> Obj:
    """``raw`` decoded as a JSON object, or a KubeError naming ``what``."""
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise KubeError("bad_json", f"{what}: {e}") from None
    if not isinstance(data, dict):
        raise KubeError("bad_json", f"{what}: not a JSON object")
    return data


def _reason(e: BaseException) -> str:
    # aiohttp's connect timeout is a TimeoutError too, but it is a failure to connect
    # (back off), not a quiet stream (reopen at once): test for it first
    if isinstance(e, aiohttp.ConnectionTimeoutError):
        return "connect"
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    if isinstance(e, aiohttp.ClientConnectorError | ConnectionRefusedError):
        return "connect"
    return "disconnect"
