"""The dashboard's bounds on what one client may cost the station, in-process (``tests/web_site.py``): wrong
tokens limited for the whole app, whichever connections send them."""

from __future__ import annotations

import asyncio

import httpx
from web_site import ADMIN, build_site

from streamdetect.util.ratelimit import TokenBucket
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
    for _ in range(3 * WRONG_TOKEN_BURST):
        assert site.client().post("/api/login", json={"token": ADMIN}).status_code == 200
        assert site.client(ADMIN).get("/api/session").status_code == 200
    statuses = [a.status_code for a in asyncio.run(_guesses(site.app, 20, 0))]
    assert statuses.count(401) == WRONG_TOKEN_BURST and statuses.count(429) == 20 - WRONG_TOKEN_BURST
    assert len(checked) == 6 * WRONG_TOKEN_BURST + WRONG_TOKEN_BURST
