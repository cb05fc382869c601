"""HTTP POST with a total deadline and a bounded answer, for the sinks that talk to a receiver.

httpx's timeouts apply to each network operation: a receiver that sends one byte every two seconds never trips a
5 s read timeout and holds the sender for as long as it likes, and a receiver that answers with a 2 GB body
makes ``response.read()`` hold it all in memory. Here every request runs on a private asyncio loop under
``asyncio.wait_for`` (cancellation closes the connection), and only the first ``max_answer_bytes`` of an
answer are read; the rest is never fetched (the connection is closed instead of being reused).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass


class PostFailed(RuntimeError):
    """No answer within the deadline, or no connection; the message says which (never with the URL)."""


@dataclass(frozen=True)
class Answer:
    status: int
    location: str | None  # of a redirect
    head: bytes  # the first bytes of the body, at most ``max_answer_bytes``


class DeadlinePoster:
    """One connection pool on one private event loop; ``post`` may be called from any thread (serialised)."""

    def __init__(self, timeout_s: float, headers: dict[str, str], max_answer_bytes: int = 64 * 1024):
        import httpx

        self.timeout_s, self.max_answer_bytes = timeout_s, max_answer_bytes
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(timeout=timeout_s, headers=headers, follow_redirects=False)
        self._lock = threading.Lock()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        import httpx

        with self._lock:
            try:
                return self._loop.run_until_complete(asyncio.wait_for(self._post(url, body, headers), self.timeout_s))
            except (TimeoutError, asyncio.TimeoutError):
                raise PostFailed(f"no complete answer within {self.timeout_s:g} s (timeout_s)") from None
            except httpx.HTTPError as e:
                raise PostFailed(type(e).__name__ + (f": {e}" if str(e) else "")) from None

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        async with self._client.stream("POST", url, content=body, headers=headers) as response:
            head = bytearray()
            async for chunk in response.aiter_raw():
                head += chunk[: self.max_answer_bytes - len(head)]
                if len(head) >= self.max_answer_bytes:
                    break  # leaving the block closes the connection: the rest is never read
            return Answer(response.status_code, response.headers.get("location"), bytes(head))

    def close(self) -> None:
        with self._lock:
            if not self._loop.is_closed():
                self._loop.run_until_complete(self._client.aclose())
                self._loop.close()
