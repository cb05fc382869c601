"""The dashboard's bounds on what one client may cost the station, in-process (``tests/web_site.py``): wrong
tokens limited for the whole app, whichever connections send them; typed queries (GET) that never write."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
from web_site import ADMIN, VIEWER, build_site, text_vectors

from streamdetect.util.ratelimit import TokenBucket
from streamdetect.web.app import TextQueries
from streamdetect.web.auth import WRONG_TOKEN_BURST, WRONG_TOKENS_PER_S


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
    assert len(embedded) == 40 and len(queries._recent) == 8
    assert viewer.get("/api/playground", params={"q": "a query number 0"}).status_code == 200  # dropped: again
    assert embedded[-1] == "a query number 0" and len(queries._recent) == 8
    np.testing.assert_allclose(queries("a query number 3"), text_vectors(["a query number 3"])[0], rtol=1e-6)
