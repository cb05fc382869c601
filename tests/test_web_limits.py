"""The dashboard's bounds on what one client may cost the station, in-process (``tests/web_site.py``): wrong
tokens limited for the whole app, whichever connections send them; typed queries (GET) that never write; live
views and listeners limited per session, each slot freed when its stream ends."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
from web_site import ADMIN, RATE, VIEWER, build_site, text_vectors

from streamdetect.util.ratelimit import TokenBucket
from streamdetect.web.app import TextQueries
from streamdetect.web.auth import WRONG_TOKEN_BURST, WRONG_TOKENS_PER_S
from streamdetect.web.live import LiveHub


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limited_site(tmp_path):
    clock = FakeClock()
    site = build_site(tmp_path, guesses=TokenBucket(WRONG_TOKENS_PER_S, WRONG_TOKEN_BURST, clock))
    checked = []
    role_of_token = site.app.state.auth.role_of_token
    site.app.state.auth.role_of_token = lambda token: checked.append(token) or role_of_token(token)
    return site, clock, checked


async def _guesses(app, n: int, start: int) -> list[httpx.Response]:
    """``n`` wrong tokens at once, each on a connection of its own, half as logins, half as bearer headers."""
    async def one(i: int) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
            if i % 2:
                return await c.get("/api/events", headers={"Authorization": f"Bearer guess-{i}"})
            return await c.post("/api/login", json={"token": f"guess-{i}"})
    return list(await asyncio.gather(*(one(start + i) for i in range(n))))


def test_wrong_tokens_from_many_connections_are_checked_at_the_apps_rate(tmp_path):
    site, clock, checked = limited_site(tmp_path)
    answers = asyncio.run(_guesses(site.app, 200, 0))
    statuses = [a.status_code for a in answers]
    assert statuses.count(401) == WRONG_TOKEN_BURST == len(checked)  # only the burst was checked
    assert statuses.count(429) == 200 - WRONG_TOKEN_BURST
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["retry-after"] == "1" and "too many wrong tokens" in refused.json()["error"]
    right = site.client().post("/api/login", json={"token": ADMIN})
    assert right.status_code == 429 and len(checked) == WRONG_TOKEN_BURST  # an empty bucket checks nothing
    clock.now += 3.0  # 3 s at 2 a second: 6 more wrong tokens are checked
    statuses = [a.status_code for a in asyncio.run(_guesses(site.app, 50, 200))]
    assert statuses.count(401) == 6 and statuses.count(429) == 44 and len(checked) == WRONG_TOKEN_BURST + 6


def test_right_tokens_do_not_spend_the_budget_of_wrong_ones(tmp_path):
    site, _, checked = limited_site(tmp_path)
    browser, script = site.client(), site.client(ADMIN)
    for _ in range(WRONG_TOKEN_BURST + 2):  # more right tokens than the burst
        assert browser.post("/api/login", json={"token": ADMIN}).status_code == 200
        assert script.get("/api/session").status_code == 200
    statuses = [a.status_code for a in asyncio.run(_guesses(site.app, 20, 0))]
    assert statuses.count(401) == WRONG_TOKEN_BURST and statuses.count(429) == 20 - WRONG_TOKEN_BURST
    assert len(checked) == 2 * (WRONG_TOKEN_BURST + 2) + WRONG_TOKEN_BURST


def _files(folder) -> set:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_typed_queries_write_nothing_and_are_kept_in_memory_within_a_bound(tmp_path):
    site = build_site(tmp_path)
    embedded: list[str] = []

    def encoder(texts: list[str]):
        embedded.extend(texts)
        return text_vectors(texts)

    queries = site.ctx.embed_text = TextQueries(site.ctx.embed_text.cache, lambda: encoder, kept=8)
    viewer = site.client(VIEWER)
    before = _files(site.folder)
    assert any(p.suffix == ".npy" for p in before)  # the configured events' prompts are cached (not by a GET)
    for i in range(40):
        path = "/api/playground" if i % 2 else "/api/search"
        assert viewer.get(path, params={"q": f"a query number {i}"}).status_code == 200
    assert _files(site.folder) == before  # 40 new queries, no new file anywhere
    assert embedded == [f"a query number {i}" for i in range(40)]
    for i in range(32, 40):  # the last 8 are kept: not embedded again
        assert viewer.get("/api/playground", params={"q": f"a query number {i}"}).status_code == 200
    assert viewer.get("/api/playground", params={"q": "a beep"}).status_code == 200  # from the prompt cache
    assert len(embedded) == 40 and len(queries.store) == 8
    assert viewer.get("/api/playground", params={"q": "a query number 0"}).status_code == 200  # dropped: again
    assert embedded[-1] == "a query number 0" and len(queries.store) == 8
    np.testing.assert_allclose(queries("a query number 3"), text_vectors(["a query number 3"])[0], rtol=1e-6)


class Open:
    """One live request driven straight through the ASGI app: its status once the answer starts, and a hang-up
    when the test says (TestClient and httpx's transport read a response to its end; a live one has none)."""

    def __init__(self, app, path: str, query: str, headers: list[tuple[bytes, bytes]], broken: bool = False):
        self.hang_up, self.broken = asyncio.Event(), broken
        self.started: asyncio.Future = asyncio.get_running_loop().create_future()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
                 "root_path": "", "headers": [(b"host", b"testserver"), *headers],
                 "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}
        self.task = asyncio.create_task(app(scope, self._receive, self._send))

    async def _receive(self) -> dict:
        await self.hang_up.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict) -> None:
        if self.broken:  # the client is gone before the answer starts: the server's send fails
            raise OSError("connection reset by peer")
        if message["type"] == "http.response.start" and not self.started.done():
            self.started.set_result(message["status"])

    async def status(self) -> int:
        return await self.started

    async def close(self) -> None:
        self.hang_up.set()
        await self.task


def test_one_session_holds_a_few_live_slots_and_each_is_freed_when_its_stream_ends(tmp_path):
    site = build_site(tmp_path)
    hub = site.ctx.hub = LiveHub(max_clients=10, max_per_session=3)
    hub.live_audio("garden", 0, np.full(RATE, 0.01, np.float32), RATE)
    viewer = site.client()
    logins = [viewer.post("/api/login", json={"token": VIEWER}).cookies["streamdetect_session"] for _ in range(2)]
    first, second = ([(b"cookie", f"streamdetect_session={sid}".encode())] for sid in logins)
    bearer = [(b"authorization", f"Bearer {VIEWER}".encode())]

    async def scenario() -> None:
        views = [Open(site.app, "/api/live/stream", "stream=garden", first) for _ in range(2)]
        views.append(Open(site.app, "/api/live/audio", "stream=garden", first))
        assert [await v.status() for v in views] == [200, 200, 200]
        fourth = Open(site.app, "/api/live/stream", "", first)
        assert await fourth.status() == 429  # this session holds its three
        await fourth.task
        others = [Open(site.app, "/api/live/stream", "", who) for who in (second, second, bearer, bearer)]
        assert [await v.status() for v in others] == [200] * 4  # other sessions are not crowded out
        assert hub.subscribers == 7 and sorted(hub._held.values()) == [2, 2, 3]
        await views[0].close()  # a view ends: its slot is free again, for the same session
        assert hub.subscribers == 6
        again = Open(site.app, "/api/live/audio", "stream=garden", first)
        assert await again.status() == 200
        gone = Open(site.app, "/api/live/stream", "", second)
        gone.hang_up.set()  # hangs up at once: its slot comes back
        await gone.task
        for path in ("/api/live/stream", "/api/live/audio"):  # gone before the answer started (the body never
            broken = Open(site.app, path, "stream=garden", second, broken=True)  # ran): its slot comes back too
            await asyncio.gather(broken.task, return_exceptions=True)
            assert hub.subscribers == 7
        for view in [*views[1:], *others, again]:
            await view.close()
        assert hub.subscribers == 0 and hub._held == {}

    asyncio.run(scenario())
