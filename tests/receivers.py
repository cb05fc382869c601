"""Misbehaving HTTP receivers on loopback, on raw sockets (http.server cannot trickle or hang on purpose)."""

from __future__ import annotations

import json
import socket
import threading
import time


class RawReceiver:
    """``mode``: "ok" (200 after ``delay_s``), "hang" (reads the request, never answers), "trickle" (a 200 answer,
    one byte every ``delay_s``), "huge" (200 declaring a 2 GB body, sent as fast as it is read, at most
    ``huge_bytes``), or an HTTP status code (answered at once, with ``location`` for a redirect)."""

    def __init__(self, mode: str | int = "ok", delay_s: float = 0.0, location: str | None = None,
                 huge_bytes: int = 300 << 20, port: int = 0):
        self.mode, self.delay_s, self.location, self.huge_bytes = mode, delay_s, location, huge_bytes
        self.bodies: list[bytes] = []  # of the requests answered 2xx
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

    def _read_request(self, conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
        return body

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self._lock:
            self.sent_bytes += len(data)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(60)
        try:
            while not self._stop.is_set():
                body = self._read_request(conn)
                if body is None:
                    return
                with self._lock:
                    self.requests += 1
                if self.mode == "hang":
                    self._stop.wait(120)
                    return
                if self.mode == "trickle":
                    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                        if self._stop.wait(self.delay_s):
                            return
                        self._send(conn, bytes([byte]))
                    with self._lock:
                        self.bodies.append(body)
                    continue
                if self.mode == "huge":
                    self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2000000000\r\n\r\n")
                    with self._lock:
                        self.bodies.append(body)
                    block = b"\0" * (1 << 20)
                    while self.sent_bytes < self.huge_bytes and not self._stop.is_set():
                        self._send(conn, block)
                    return
                if self.mode == "ok":
                    time.sleep(self.delay_s)
                    with self._lock:
                        self.bodies.append(body)
                    self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    continue
                extra = f"Location: {self.location}\r\n" if self.location else ""
                self._send(conn, f"HTTP/1.1 {self.mode} X\r\n{extra}Content-Length: 0\r\n\r\n".encode())
        except OSError:
            return  # the client hung up (what a deadline does)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
