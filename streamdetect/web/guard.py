"""The checks every HTTP front door shares, with no web framework: a bearer token compared in constant time, and
one body guard (a size bound, then a JSON depth bound, then the parse).

The dashboard, the control API and their stdlib fallback (``streamdetect.daemon.control``, used when the ``web``
extra is missing) all call these, so a token or a hostile body is judged the same way on every port.
"""

from __future__ import annotations

import hmac
import json

IDLE_TIMEOUT_S = 10.0  # a connection that sends nothing of a request for this long is closed, on every port
MAX_JSON_DEPTH = 32  # an events list is 4 deep, the settings form 6; Python's parser recurses and fails near 1,000


class BodyError(Exception):
    """A request body that is refused; ``status`` and ``message`` are the answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, None for any other header."""
    return authorization[7:] if authorization.startswith("Bearer ") else None


def token_matches(given: str | None, secret: str) -> bool:
    """Constant-time comparison (a timing difference must not reveal how much of a token was right)."""
    return given is not None and hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8"))


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether ``body`` nests arrays/objects deeper than ``limit``: one pass over the bytes, no recursion, so a
    200,000-deep body is refused before ``json.loads`` could fail with ``RecursionError``. Brackets inside
    strings do not count."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def parse_json(body: bytes, max_bytes: int, max_depth: int = MAX_JSON_DEPTH, empty: object = None) -> object:
    """The body's JSON value (``empty`` for no body); ``BodyError`` for a body over ``max_bytes`` (413), nested
    deeper than ``max_depth`` or not JSON (400)."""
    if len(body) > max_bytes:
        raise BodyError(413, f"request body over {max_bytes} bytes")
    if not body:
        return empty
    if json_depth_exceeds(body, max_depth):
        raise BodyError(400, f"JSON nested more than {max_depth} levels deep")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise BodyError(400, f"body is not JSON: {e}") from None
