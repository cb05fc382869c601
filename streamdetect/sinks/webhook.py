"""HTTP POST of each record as JSON, with retries, an optional HMAC signature, and a disk spool so that a receiver
outage loses nothing: records that still fail are appended to a JSON-lines spool and re-sent, oldest first, as
soon as the receiver answers again (also after a restart). Delivery is at least once; receivers can drop
repeats by ``(id, phase)``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import time
from pathlib import Path

from pydantic import AnyHttpUrl, Field

from streamdetect.pipeline.events import EventRecord
from streamdetect.sinks.base import Sink, SinkError, SinkOptions
from streamdetect.util.backoff import Backoff
from streamdetect.util.files import atomic_write
from streamdetect.util.writable import OutputPath

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Streamdetect-Signature"
TIMESTAMP_HEADER = "X-Streamdetect-Timestamp"


def signature_headers(secret: bytes, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The signature a receiver checks (docs/sinks/webhook.md): ``sha256=`` + the hex HMAC-SHA256, under the
    secret, of the raw body bytes exactly as sent; with ``timestamp`` (Unix seconds at sending) of
    ``<timestamp>.`` + body, and the timestamp in its own header, so a receiver can refuse old requests
    replayed by someone who recorded them."""
    if timestamp is None:
        return {SIGNATURE_HEADER: "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()}
    signed = str(timestamp).encode() + b"." + body
    return {SIGNATURE_HEADER: "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest(),
            TIMESTAMP_HEADER: str(timestamp)}


class WebhookOptions(SinkOptions):
    url: AnyHttpUrl = Field(description="http:// or https:// address that receives the POSTs")
    timeout_s: float = Field(5.0, gt=0, le=120)
    retries: int = Field(4, ge=0, le=20, description="extra attempts before a record goes to the spool")
    backoff_s: float = Field(0.5, gt=0, le=60, description="first retry delay; doubles each time, with jitter")
    max_backoff_s: float = Field(30.0, gt=0, le=3600)
    headers: dict[str, str] = Field(default_factory=dict)
    secret_env: str | None = Field(None, description="environment variable holding the HMAC-SHA256 secret")
    sign_timestamp: bool = Field(False, description="send X-Streamdetect-Timestamp (Unix seconds) and sign "
                                 "'<timestamp>.<body>', so receivers can refuse replayed requests")
    spool_dir: str = Field("spool", min_length=1, description="where undelivered records wait")


def redacted(url: AnyHttpUrl) -> str:
    """The URL with a password (https://user:token@host/...) replaced by ***."""
    text = str(url)
    return text.replace(f":{url.password}@", ":***@", 1) if url.password else text


class WebhookSink(Sink):
    Options = WebhookOptions

    def __init__(self, options: WebhookOptions):
        super().__init__(options)
        import httpx

        self.url = str(options.url)
        self.shown_url = redacted(options.url)  # for logs and errors: a password in the URL is a secret too
        self.secret: bytes | None = None
        if options.secret_env:
            value = os.environ.get(options.secret_env)
            if not value:
                raise SinkError(f"webhook {self.shown_url}: environment variable {options.secret_env} (secret_env) "
                                "is not set; export it, or remove secret_env to send unsigned requests")
            self.secret = value.encode()
        self.client = httpx.Client(timeout=options.timeout_s, headers=options.headers)
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        self.spool = Path(options.spool_dir) / f"webhook-{digest}.jsonl"
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        self.delivered = 0
        self._rng = random.Random()  # the retry jitter's
        self._flush_spool()  # records left by an earlier run go out first

    @classmethod
    def outputs(cls, options: WebhookOptions) -> list[OutputPath]:
        return [OutputPath("spool_dir", Path(options.spool_dir), "dir", "webhook spool folder")]

    def emit(self, record: EventRecord) -> None:
        body = json.dumps(record.to_dict(), sort_keys=True, ensure_ascii=False).encode()
        if self._flush_spool() and self._send(body, attempts=1 + self.options.retries):
            return
        self._append_to_spool(body, record)
        raise SinkError(f"webhook {self.shown_url} unreachable; {record.label} {record.phase} record spooled to "
                        f"{self.spool}")

    def _send(self, body: bytes, attempts: int) -> bool:
        import httpx

        headers = {"Content-Type": "application/json"}
        if self.secret is not None:
            headers.update(signature_headers(self.secret, body, int(time.time()) if self.options.sign_timestamp else None))
        backoff = Backoff(self.options.backoff_s, self.options.max_backoff_s, rng=self._rng)
        for attempt in range(attempts):
            if attempt:
                time.sleep(backoff.next_delay())
            try:
                response = self.client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as e:
                log.debug("webhook %s: %s", self.shown_url, e)
                continue
            if response.is_success:
                self.delivered += 1
                return True
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                log.error("webhook %s refused a record with HTTP %d; not retried", self.shown_url,
                          response.status_code)
                return True  # the receiver will never take it: retrying or spooling cannot help
        return False

    def _append_to_spool(self, body: bytes, record: EventRecord) -> None:
        """Keep order behind older spooled records. A full disk can cut a line short; it is cut back off, so
        the next record does not land on the same line and the spool stays whole JSON lines."""
        size = self.spool.stat().st_size if self.spool.is_file() else 0
        try:
            with open(self.spool, "ab") as fh:
                fh.write(body + b"\n")
        except OSError as e:
            try:
                os.truncate(self.spool, size)
            except OSError as e2:
                log.error("webhook %s: cannot cut a partial line off %s (%s)", self.shown_url, self.spool,
                          e2.strerror)
            raise SinkError(f"webhook {self.shown_url} unreachable and its spool {self.spool} cannot be written "
                            f"({e.strerror}): {record.label} {record.phase} record lost") from e

    def _flush_spool(self) -> bool:
        """Send spooled records oldest first; True when the spool is empty afterwards."""
        if not self.spool.is_file() or self.spool.stat().st_size == 0:
            return True
        lines = self.spool.read_bytes().splitlines()
        sent = 0
        for line in lines:
            if not self._send(line, attempts=1):
                break
            sent += 1
        if sent:
            log.info("webhook %s: re-sent %d spooled record(s), %d left", self.shown_url, sent, len(lines) - sent)
            try:
                atomic_write(self.spool, b"".join(line + b"\n" for line in lines[sent:]))
            except OSError as e:  # full disk: the spool keeps the sent lines, which go out again (at least once)
                log.error("webhook %s: cannot rewrite the spool %s (%s); %d record(s) already re-sent will be sent "
                          "again", self.shown_url, self.spool, e.strerror, sent)
                return False
        return sent == len(lines)

    def close(self) -> None:
        # One last try, so records spooled just before the receiver came back do not wait for the next start.
        if not self._flush_spool():
            log.warning("webhook %s: %d record(s) stay in %s and are sent when the daemon next starts", self.shown_url,
                        len(self.spool.read_bytes().splitlines()), self.spool)
        self.client.close()
