"""HTTP POST of each record as JSON, with retries, an optional HMAC signature, and a disk spool so that a receiver
outage loses nothing: records that still fail are appended to a JSON-lines spool and re-sent, oldest first, as
soon as the receiver answers again (also after a restart). Delivery is at least once; receivers can drop
repeats by ``(id, phase)``.

Every request has a total deadline (``timeout_s``) and reads at most 64 KiB of the answer (``DeadlineClient``).
While the receiver is down, new records go straight to the spool and the spool's head is retried with back-off,
so a hanging receiver costs one deadline per retry, not one per record. The spool is sent by the sink's worker
in slices of about a second, between records and while idle, never while the sink is built: detection starts at
once and a signal finds the spool rewritten after each slice. A 4xx answer (other than 408/429) or a redirect
will never change by retrying: such a record is counted as a failure and kept in the dead-letter file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import AnyHttpUrl, Field

from streamdetect.pipeline.events import EventRecord
from streamdetect.sinks.base import Sink, SinkError, SinkOptions
from streamdetect.sinks.spool import open_spool
from streamdetect.util.backoff import Backoff
from streamdetect.util.deadline_http import DeadlineClient, RequestFailed
from streamdetect.util.paths import state_dir
from streamdetect.util.ratelimit import OutageLog, RateLimitedLog
from streamdetect.util.urls import mask_url, scrub
from streamdetect.util.writable import OutputPath

SLICE_S = 1.0  # longest stretch of spool sending before the worker looks at new records again
CLOSE_FLUSH_S = 10.0  # at shutdown, spooled records are sent for at most this long; the rest wait for the next start
BATCH_LINES = 256  # spool lines read, sent and then cut off the file at a time (what a SIGKILL may send twice)
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
    timeout_s: float = Field(5.0, gt=0, le=120, description="total deadline of one request, answer included")
    retries: int = Field(4, ge=0, le=20, description="extra attempts before a record goes to the spool")
    backoff_s: float = Field(0.5, gt=0, le=60, description="first retry delay; doubles each time, with jitter")
    max_backoff_s: float = Field(30.0, gt=0, le=3600, description="retry delays (and spool retries) grow up to this")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")
    secret_env: str | None = Field(None, description="environment variable holding the HMAC-SHA256 secret")
    sign_timestamp: bool = Field(False, description="send X-Streamdetect-Timestamp (Unix seconds) and sign "
                                 "'<timestamp>.<body>', so receivers can refuse replayed requests")
    spool_dir: str = Field(default_factory=lambda: str(state_dir() / "spool"), min_length=1,
                           description="where undelivered and refused records wait (default: $STATE_DIRECTORY/spool "
                                       "under systemd, else ~/.local/state/streamdetect/spool); one daemon per spool")


@dataclass(frozen=True)
class _Outcome:
    delivered: bool
    permanent: bool = False  # refused for good: dead letter, not spool
    reason: str = ""


class WebhookSink(Sink[WebhookOptions]):
    Options = WebhookOptions

    def __init__(self, options: WebhookOptions):
        super().__init__(options)
        self.url = str(options.url)
        self.shown_url = mask_url(self.url)  # for logs and errors: a password or token in the URL is a secret too
        self.secret: bytes | None = None
        if options.secret_env:
            value = os.environ.get(options.secret_env)
            if not value:
                raise SinkError(f"webhook {self.shown_url}: environment variable {options.secret_env} (secret_env) "
                                "is not set; export it, or remove secret_env to send unsigned requests")
            self.secret = value.encode()
        self._rng = random.Random()  # the retry jitter's
        self._spool = open_spool(options.spool_dir, "webhook", self.url, f"webhook {self.shown_url}",
                                 Backoff(options.backoff_s, options.max_backoff_s, rng=self._rng))
        self.spool, self.dead_letter = self._spool.path, self._spool.dead_path
        self.poster = DeadlineClient(options.timeout_s, options.headers)
        self.delivered = 0
        self.spooled = 0  # records kept in the spool while the receiver was away: retried, not failures
        self._retry = Backoff(options.backoff_s, options.max_backoff_s, rng=self._rng)  # of the spool's head
        self._retry_at = 0.0  # monotonic time before which a known-down receiver is not tried again
        self._down: str | None = None  # why the last attempt failed, while the receiver is down
        self._down_log = OutageLog(log, logging.WARNING)  # one line when the receiver goes away, one when back
        self._closing = threading.Event()  # shutdown: one attempt per record, no waits, then the spool
        self._failed_while_closing = False  # then the rest goes straight to the spool, without another try
        self._progress_log = RateLimitedLog(log, 60.0, logging.INFO)
        self._refused: list[str] = []  # spooled records the receiver refused for good, not yet reported

    # -- the worker's side -------------------------------------------------------------------------------

    @classmethod
    def outputs(cls, options: WebhookOptions) -> list[OutputPath]:
        return [OutputPath("spool_dir", Path(options.spool_dir), "dir", "webhook spool folder")]

    def emit(self, record: EventRecord) -> None:
        body = json.dumps(record.to_dict(), sort_keys=True, ensure_ascii=False).encode()
        what = f"{record.label} {record.phase} record"
        with self._spool.mutex:
            if self._failed_while_closing or not self._flush(SLICE_S):  # older records go first
                self._keep([body], what)  # sent in its turn: a retry, not a failure (a lost one raises)
                return
            outcome = self._send(body, attempts=1 + self.options.retries)
            if not outcome.delivered and outcome.permanent:
                self._refuse([body], what, outcome.reason)
            elif not outcome.delivered:
                self._keep([body], what)
            self._report_refused()

    def idle(self) -> None:
        """Send spooled records while no new one waits (records of an earlier run, after an outage)."""
        with self._spool.mutex:
            self._flush(SLICE_S)
            self._report_refused()

    def shutting_down(self) -> None:
        self._closing.set()

    def keep_undelivered(self, records: list[EventRecord]) -> int:
        bodies = [json.dumps(r.to_dict(), sort_keys=True, ensure_ascii=False).encode() for r in records]
        self._keep(bodies, f"{len(bodies)} record(s) left at shutdown")
        return len(bodies)

    def close(self) -> None:
        # Last tries, with back-off, for at most CLOSE_FLUSH_S: records spooled just before the receiver came back
        # do not wait for the next start, and a receiver that stays down costs a bounded time.
        try:
            with self._spool.mutex:
                end = time.monotonic() + CLOSE_FLUSH_S
                while not self._flush(max(0.0, end - time.monotonic()), force=True) and self._down is not None \
                        and time.monotonic() < self._retry_at < end:
                    time.sleep(max(0.0, self._retry_at - time.monotonic()))
                if not self._spool.empty():
                    log.warning("webhook %s: %d record(s) stay in %s and are sent when the daemon next starts",
                                self.shown_url, self._spool.count(), self.spool)
                if self._refused:
                    log.error("webhook %s: %s", self.shown_url, self._refused_message())
        finally:
            self.poster.close()
            self._spool.close()

    # -- sending -----------------------------------------------------------------------------------------

    def _send(self, body: bytes, attempts: int) -> _Outcome:
        headers = {"Content-Type": "application/json"}
        if self.secret is not None:
            headers.update(signature_headers(self.secret, body, int(time.time()) if self.options.sign_timestamp else None))
        backoff = Backoff(self.options.backoff_s, self.options.max_backoff_s, rng=self._rng)
        outcome = _Outcome(False, reason="not tried")
        for attempt in range(attempts):
            if attempt:
                self._closing.wait(backoff.next_delay())  # cut short at shutdown: the drain has a deadline
            outcome = self._attempt(body, headers)
            if outcome.delivered or outcome.permanent:
                break
        if outcome.delivered or outcome.permanent:
            self._down = None
            self._retry.reset()
            self._down_log.recovered("webhook %s answers again", self.shown_url)
        else:
            self._down_log.failed("webhook %s unreachable (%s); records wait in the spool %s and are sent when "
                                  "it answers (logged again then)", self.shown_url, outcome.reason, self.spool)
            self._down = outcome.reason
            self._retry_at = time.monotonic() + self._retry.next_delay()
            self._failed_while_closing = self._closing.is_set()
        return outcome

    def _attempt(self, body: bytes, headers: dict[str, str]) -> _Outcome:
        try:
            answer = self.poster.post(self.url, body, headers)
        except RequestFailed as e:
            reason = scrub(str(e), self.url)
            log.debug("webhook %s: %s", self.shown_url, reason)
            return _Outcome(False, reason=reason)
        status = answer.status
        if 200 <= status < 300:
            self.delivered += 1
            return _Outcome(True)
        if 300 <= status < 400:
            where = mask_url(answer.location) if answer.location else "no Location header"
            return _Outcome(False, True, f"HTTP {status} redirect to {where}: redirects are not followed (the "
                                         "body and its signature would go elsewhere); set url to the new address")
        if 400 <= status < 500 and status not in (408, 429):
            return _Outcome(False, True, f"HTTP {status}: the receiver refuses it, retrying cannot help")
        return _Outcome(False, reason=f"HTTP {status}")

    # -- the spool ---------------------------------------------------------------------------------------

    def _flush(self, budget_s: float, force: bool = False) -> bool:
        """Send spooled records oldest first, for about ``budget_s``; True when the spool is empty afterwards.
        While the receiver is known to be down, tries nothing before the back-off has passed (``force``: now),
        nor once it failed during shutdown."""
        if self._spool.empty():
            return True
        if not force and (not self._spool.ready() or self._down is not None and (
                time.monotonic() < self._retry_at or self._closing.is_set())):
            return False
        end = time.monotonic() + budget_s
        sent = 0
        while time.monotonic() < end:
            lines = self._spool.head(BATCH_LINES)
            if not lines:
                break
            done, refused = 0, []
            for line in lines:
                outcome = self._send(line, attempts=1)
                if not outcome.delivered and not outcome.permanent:
                    break
                done += 1
                if outcome.permanent:
                    refused.append(line)
                    self._refused.append(outcome.reason)
                if time.monotonic() >= end:
                    break
            if refused:
                self._dead_letter_spooled(refused)
            self._spool.drop_head(done)
            sent += done
            if done < len(lines):
                break
        empty = self._spool.empty()
        if sent and empty:
            log.info("webhook %s: re-sent %d spooled record(s); the spool is empty", self.shown_url, sent)
        elif sent:  # a long spool goes out slice by slice: say how it goes once a minute
            self._progress_log("webhook %s: re-sending the spool, %d record(s) left", self.shown_url,
                               self._spool.count())
        return empty

    def _dead_letter_spooled(self, refused: list[bytes]) -> None:
        """Spooled records refused for good go to the dead-letter file; if it cannot be written they are lost
        (and counted): sending them again would only be refused again."""
        try:
            self._spool.dead_letter(refused)
        except OSError as e:
            self._refused[-len(refused):] = [f"{reason}; the dead-letter file cannot be written ({e.strerror}): "
                                             "lost" for reason in self._refused[-len(refused):]]

    def _keep(self, bodies: list[bytes], what: str) -> None:
        try:
            self._spool.append(bodies)
        except OSError as e:
            raise SinkError(f"webhook {self.shown_url} unreachable and its spool {self.spool} cannot be written "
                            f"({e.strerror}): {what} lost", records=len(bodies)) from e
        self.spooled += len(bodies)

    def _refuse(self, bodies: list[bytes], what: str, reason: str) -> None:
        try:
            self._spool.dead_letter(bodies)
        except OSError as e:
            raise SinkError(f"webhook {self.shown_url} refused the {what} ({reason}) and the dead-letter file "
                            f"{self.dead_letter} cannot be written ({e.strerror}): lost") from e
        raise SinkError(f"webhook {self.shown_url} refused the {what} for good ({reason}); kept in "
                        f"{self.dead_letter}")

    def _refused_message(self) -> str:
        reasons = sorted(set(self._refused))
        kept = "kept in" if not any(r.endswith(": lost") for r in reasons) else "the others kept in"
        return f"{len(self._refused)} spooled record(s) refused for good ({'; '.join(reasons)}); {kept} {self.dead_letter}"

    def _report_refused(self) -> None:
        if self._refused:
            message, count = self._refused_message(), len(self._refused)
            self._refused = []
            raise SinkError(message, records=count)
