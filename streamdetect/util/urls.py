"""URLs as they may appear in a log line: with the password and every query value replaced by ``***``.

A camera or stream URL often carries its credential in the query (``?token=...``, ``?apikey=...``,
``?auth=...``), not only in ``user:password@``. Which query keys are secret is not knowable in general, so every
query value is masked; the key names stay, so the line still says what was configured. Everything that logs a
URL (the ffmpeg source, the webhook sink, ffmpeg's own stderr lines) goes through this module.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"


def mask_url(url: str) -> str:
    """``url`` with its password and its query values replaced by ``***`` (the fragment is dropped too).

    A string that does not parse as a URL (a local path, a device name) is returned unchanged; one that looks
    like a URL but cannot be parsed is reduced to its scheme, so nothing of it can leak.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split(":", 1)[0] + "://" + MASK if "://" in url else url
    netloc = parts.netloc
    if password:
        netloc = netloc.replace(f":{password}@", f":{MASK}@", 1)
    query = "&".join(raw.split("=", 1)[0] + "=" + MASK if "=" in raw else raw for raw in parts.query.split("&")) \
        if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=MASK if parts.fragment else ""))


def url_secrets(url: str) -> list[str]:
    """The secret parts of ``url`` (password, query values, fragment), longest first, for scrubbing text that
    a child process printed about it (ffmpeg repeats its input URL, or parts of it, in error lines)."""
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
    except ValueError:
        return [url]
    found += [raw.split("=", 1)[1] for raw in parts.query.split("&") if "=" in raw]  # as written (%-escaped)
    found.append(parts.fragment)
    found += [unquote(s) for s in found]  # and as decoded, the way a program may print them
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def scrub(text: str, url: str, secrets: list[str] | None = None) -> str:
    """``text`` with ``url`` shown masked and any of its secrets (``url_secrets``) replaced by ``***``."""
    text = text.replace(url, mask_url(url))
    for secret in url_secrets(url) if secrets is None else secrets:
        text = text.replace(secret, MASK)
    return text
