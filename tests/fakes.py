"""Stand-ins the tests share for what a station is connected to: a live audio source and an HTTP receiver.

One source covers what five hand-made sources did (an array delivered as fast as it is read, paced noise or
silence until stopped, audio the test hands in as it goes), and one receiver what three did (a webhook or
notification endpoint that answers, fails, hangs, trickles or floods), so each test says only what it needs.
"""

from __future__ import annotations

import http.client
import io
import json
import queue
import socket
import threading
import time
from email.message import Message

import numpy as np

from streamdetect.sources.base import AudioSource

SAMPLE_RATE = 48_000


class LiveSource(AudioSource):
    """A live source (``live = True``: the engine treats it as a microphone or a camera).

    - ``audio`` given: that array in blocks of ``block_s``, then the source ends.
    - no ``audio``: blocks of ``level`` plus noise of RMS ``noise`` (seeded), until stopped or until ``max_s``
      seconds of audio were delivered (``None``: no bound), so that a test that forgets to stop it still ends.
    - ``hand_fed``: only what the test hands in with ``feed(seconds)`` (made as above), until ``end()``.
    ``pace_s`` is the wall time waited before each block (0: as fast as the reader asks). The wait is on the stop
    event, so a stop is prompt whatever the pace.
    """

    live = True

    def __init__(self, audio: np.ndarray | None = None, name: str = "live", *, block_s: float = 0.5,
                 pace_s: float = 0.0, level: float = 0.0, noise: float = 0.0, max_s: float | None = 600.0,
                 hand_fed: bool = False, sample_rate: int = SAMPLE_RATE, seed: int = 0):
        super().__init__(AudioSource.Options(), sample_rate, name)
        self.audio, self.pace_s, self.level, self.noise, self.max_s = audio, pace_s, level, noise, max_s
        self.block = int(round(block_s * sample_rate))
        self.rng = np.random.default_rng(seed)
        self.hand_fed = hand_fed
        self.fed_s = 0.0  # what feed() handed in, in whole blocks
        self._fed: queue.Queue[np.ndarray | None] = queue.Queue()

    def make(self, n: int) -> np.ndarray:
        """``n`` samples of ``level`` plus the seeded noise."""
        block = np.full(n, self.level, np.float64)
        if self.noise:
            block += self.noise * self.rng.standard_normal(n)
        return block.astype(np.float32)

    def feed(self, seconds: float) -> None:
        """Hand in ``seconds`` of audio (whole blocks) for a ``hand_fed`` source."""
        count = int(seconds * self.sample_rate) // self.block
        self.fed_s += count * self.block / self.sample_rate
        for _ in range(count):
            self._fed.put(self.make(self.block))

    def end(self) -> None:
        """A ``hand_fed`` source ends after what was fed so far."""
        self._fed.put(None)

    def _next(self, stop: threading.Event, delivered: int) -> np.ndarray | None:
        if self.hand_fed:
            while not stop.is_set():
                try:
                    return self._fed.get(timeout=0.1)
                except queue.Empty:
                    continue
            return None
        if self.audio is not None:
            return self.audio[delivered : delivered + self.block] if delivered < self.audio.size else None
        if self.max_s is not None and delivered >= self.max_s * self.sample_rate:
            return None
        return self.make(self.block)

    def blocks(self, stop: threading.Event):
        delivered = 0
        while not stop.is_set():
            if self.pace_s and stop.wait(self.pace_s):
                return
            block = self._next(stop, delivered)
            if block is None:
                return
            delivered += block.size
            yield block


def _json_or_bytes(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return body


class HttpReceiver:
    """An HTTP endpoint on loopback, on a raw socket (http.server cannot trickle or hang on purpose).

    ``mode`` (a test may change it while the receiver runs): "ok" (200 after ``delay_s``), "hang" (reads the
    request, never answers), "trickle" (a 200 answer, one byte every ``delay_s``), "huge" (200 declaring a 2 GB
    body, sent as fast as it is read, at most ``huge_bytes``), or an HTTP status code (answered at once, with
    ``location`` for a redirect). The first ``fail_first`` requests are answered 500 whatever the mode.

    It keeps ``requests`` (how many were read), ``posts`` (path and JSON body of every request), and for the
    requests answered 2xx their ``bodies`` and ``headers`` (case-insensitive, as a server reads them).
    """

    def __init__(self, mode: str | int = "ok", delay_s: float = 0.0, location: str | None = None,
                 huge_bytes: int = 300 << 20, port: int = 0, fail_first: int = 0):
        self.mode, self.delay_s, self.location, self.huge_bytes = mode, delay_s, location, huge_bytes
        self.fail_first = fail_first
        self.bodies: list[bytes] = []
        self.headers: list[Message] = []
        self.posts: list[tuple[str, object]] = []
        self.requests = 0
        self.sent_bytes = 0  # of answers: how far a trickle or a huge body got before the client hung up
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def records(self) -> list[dict]:
        with self._lock:
            return [json.loads(b) for b in self.bodies]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> tuple[str, Message, bytes] | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        request_line, _, header_lines = head.partition(b"\r\n")
        headers = http.client.parse_headers(io.BytesIO(header_lines + b"\r\n\r\n"))
        length = int(headers.get("Content-Length", 0))
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
        return request_line.split(b" ")[1].decode(), headers, body

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self._lock:
            self.sent_bytes += len(data)

    def _accept(self, headers: Message, body: bytes) -> None:
        with self._lock:
            self.bodies.append(body)
            self.headers.append(headers)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(60)
        try:
            while not self._stop.is_set():
                request = self._read_request(conn)
                if request is None:
                    return
                path, headers, body = request
                with self._lock:
                    self.requests += 1
                    failing = self.requests <= self.fail_first
                    self.posts.append((path, _json_or_bytes(body)))
                mode = 500 if failing else self.mode
                if mode == "hang":
                    self._stop.wait(120)
                    return
                if mode == "trickle":
                    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                        if self._stop.wait(self.delay_s):
                            return
                        self._send(conn, bytes([byte]))
                    self._accept(headers, body)
                    continue
                if mode == "huge":
                    self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2000000000\r\n\r\n")
                    self._accept(headers, body)
                    block = b"\0" * (1 << 20)
                    while self.sent_bytes < self.huge_bytes and not self._stop.is_set():
                        self._send(conn, block)
                    return
                if mode == "ok" or (isinstance(mode, int) and 200 <= mode < 300):
                    time.sleep(self.delay_s)
                    self._accept(headers, body)
                    self._send(conn, f"HTTP/1.1 {200 if mode == 'ok' else mode} OK\r\nContent-Length: 0\r\n\r\n"
                               .encode())
                    continue
                extra = f"Location: {self.location}\r\n" if self.location else ""
                self._send(conn, f"HTTP/1.1 {mode} X\r\n{extra}Content-Length: 0\r\n\r\n".encode())
        except OSError:
            return  # the client hung up (what a deadline does)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


class TcpProxy:
    """A loopback TCP proxy in front of a real server (tritonserver), to make it slow without touching it.

    ``mode`` (a test may change it while connections are open; it applies to bytes not yet passed on): "pass"
    forwards both ways, "trickle" passes the server's answers back one byte every ``delay_s`` (each read sees
    progress, so no per-read timeout ever fires), "stall" passes nothing back. Requests always reach the server.
    ``answer_bytes`` counts what was passed back.
    """

    def __init__(self, target_port: int, mode: str = "pass", delay_s: float = 0.2):
        self.target_port, self.mode, self.delay_s = target_port, mode, delay_s
        self.answer_bytes = 0
        self._changed = threading.Condition()
        self._stop = False
        self._conns: list[socket.socket] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def set(self, mode: str) -> None:
        with self._changed:
            self.mode = mode
            self._changed.notify_all()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return  # closed by stop()
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()  # the server is down: so is the proxy's connection
                continue
            with self._changed:
                self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, answer: bool) -> None:
        try:
            while data := src.recv(65536):
                pending = memoryview(data)
                while answer and pending:
                    with self._changed:  # woken by set() and stop(), so a change applies mid-answer
                        self._changed.wait_for(lambda: self._stop or self.mode != "stall")
                        if self._stop:
                            return
                        if self.mode == "trickle" and self._changed.wait(self.delay_s):
                            continue  # the mode changed meanwhile: look again
                        step = 1 if self.mode == "trickle" else len(pending)
                    dst.sendall(pending[:step])
                    self.answer_bytes += step
                    pending = pending[step:]
                if not answer:
                    dst.sendall(data)
        except OSError:
            pass  # one side hung up (a client's deadline does that)
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        with self._changed:
            self._stop = True
            self._changed.notify_all()
            conns, self._conns = self._conns, []
        self._sock.close()
        for s in conns:
            s.close()
