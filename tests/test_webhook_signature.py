"""The webhook signature against the receiver that docs/sinks/webhook.md gives: its code block is run as is,
on loopback, and the real sink's requests must pass it; tampered, replayed or old ones must not."""

import re
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from helpers import event_record

from streamdetect.sinks.webhook import WebhookOptions, WebhookSink, signature_headers

DOC = Path(__file__).parent.parent / "docs/sinks/webhook.md"


def receiver_module(monkeypatch, secret):
    """The documented receiver's code, executed with the secret in its environment."""
    code = re.search(r"## A receiver in Python.*?```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    monkeypatch.setenv("STREAMDETECT_WEBHOOK_SECRET", secret)
    namespace = {"__name__": "receiver"}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace


@pytest.fixture
def receiver(monkeypatch, capsys):
    ns = receiver_module(monkeypatch, "s3cret-ä")
    server = ThreadingHTTPServer(("127.0.0.1", 0), ns["Hook"])
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield ns, f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("timestamped", [False, True])
def test_the_documented_receiver_accepts_the_sinks_requests(receiver, tmp_path, monkeypatch, capsys, timestamped):
    ns, url = receiver
    monkeypatch.setenv("HOOK_SECRET", "s3cret-ä")
    sink = WebhookSink(WebhookOptions(url=url, spool_dir=str(tmp_path / "spool"), secret_env="HOOK_SECRET",
                                      sign_timestamp=timestamped, retries=0))
    try:
        sink.emit(event_record("start", label="glass ä", stream="garden", end_s=None))
        sink.emit(event_record("end", label="glass ä", stream="garden"))
    finally:
        sink.close()
    assert sink.delivered == 2  # the receiver answered 204 to both: it verified them
    assert capsys.readouterr().out.count("glass ä garden") == 2


def test_tampered_replayed_and_unsigned_requests_are_refused(receiver):
    ns, url = receiver
    body = b'{"id": "e1", "label": "dog", "phase": "start", "stream": "s", "time": "t"}'
    secret = "s3cret-ä".encode()
    now = int(time.time())

    def post(data, headers):
        return httpx.post(url, content=data, headers=headers, timeout=10).status_code

    assert post(body, signature_headers(secret, body)) == 204
    assert post(body, signature_headers(secret, body, now)) == 204
    assert post(body + b" ", signature_headers(secret, body)) == 401  # not the bytes that were signed
    assert post(body, signature_headers(b"other", body)) == 401
    assert post(body, {}) == 401
    old = signature_headers(secret, body, now - 3600)  # a recorded request replayed an hour later
    assert post(body, old) == 401
    moved = {**old, "X-Streamdetect-Timestamp": str(now)}  # ...with a fresh timestamp: the signature breaks
    assert post(body, moved) == 401
    # the format the docs give, checked by hand: sha256= and 64 lowercase hex digits over "<ts>." + body
    import hashlib
    import hmac

    header = signature_headers(secret, body, now)
    assert header["X-Streamdetect-Timestamp"] == str(now)
    assert header["X-Streamdetect-Signature"] == "sha256=" + hmac.new(secret, f"{now}.".encode() + body,
                                                                      hashlib.sha256).hexdigest()
    assert ns["verified"](body, header["X-Streamdetect-Signature"], str(now))
