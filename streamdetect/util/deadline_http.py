"""HTTP requests with a total deadline and a bounded answer, for every client that talks to a remote server (the
webhook sink, the Triton encoder).

httpx's timeouts apply to each network operation: a server that sends one byte every two seconds never trips a
5 s read timeout and holds the caller for as long as it likes, and a server that answers with a 2 GB body
makes ``response.read()`` hold it all in memory. Here every request runs on a private asyncio loop under
``asyncio.wait_for`` (cancellation closes the connection), and only the first ``max_answer_bytes`` of an
answer (decoded: Triton gzips its answers) are read; the rest is never fetched (the connection is closed instead
of being reused).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any


class RequestFailed(RuntimeError):
    """No complete answer within the deadline (``timed_out``), or no connection; the message says which (never
    with the URL: callers add the one they may show)."""

    def __init__(self, message: str, timed_out: bool):
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Any  # httpx.Headers: case-insensitive
    head: bytes  # the body, or its first ``max_answer_bytes`` when ``complete`` is false
    complete: bool
    connection: Any = None  # the connection it came over: a new one may lead to a restarted server

    @property
    def location(self) -> str | None:
        """Of a redirect."""
        return self.headers.get("location")


class DeadlineClient:
    """One connection pool on one private event loop; ``request`` may be called from any thread (serialised).
    ``timeout_s`` bounds each whole request, connect to the answer's last byte."""

    def __init__(self, timeout_s: float, headers: dict[str, str], max_answer_bytes: int = 64 * 1024, *,
                 base_url: str = "", verify: Any = True):
        import httpx

        self.timeout_s, self.max_answer_bytes = timeout_s, max_answer_bytes
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(timeout=timeout_s, headers=headers, follow_redirects=False,
                                         base_url=base_url, verify=verify)
        self._lock = threading.Lock()

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        import httpx

        with self._lock:
            if self._loop.is_closed():
                raise RequestFailed("the client is closed", timed_out=False)
            try:
                return self._loop.run_until_complete(
                    asyncio.wait_for(self._request(method, url, body, headers or {}), self.timeout_s))
            except (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException):
                raise RequestFailed(f"no complete answer within {self.timeout_s:g} s (timeout_s)",
                                    timed_out=True) from None
            except httpx.HTTPError as e:
                raise RequestFailed(type(e).__name__ + (f": {e}" if str(e) else ""), timed_out=False) from None

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        return self.request("POST", url, body, headers)

    async def _request(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        async with self._client.stream(method, url, content=body, headers=headers) as response:
            head = bytearray()
            complete = True
            async for chunk in response.aiter_bytes():  # decoded: a gzip bomb is bounded too
                if len(head) + len(chunk) > self.max_answer_bytes:
                    head += chunk[: self.max_answer_bytes - len(head)]
                    complete = False
                    break  # leaving the block closes the connection: the rest is never read
                head += chunk
            return Answer(response.status_code, response.headers, bytes(head), complete,
                          response.extensions.get("network_stream"))

    def close(self) -> None:
        with self._lock:
            if not self._loop.is_closed():
                self._loop.run_until_complete(self._client.aclose())
                self._loop.close()
