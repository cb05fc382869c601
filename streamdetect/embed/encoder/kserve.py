"""A small client of the KServe v2 / Open Inference Protocol over HTTP, with Triton's binary-tensor extension.

httpx rather than ``tritonclient[http]``: httpx is already what the webhook sink uses, it brings TLS and HTTP
keep-alive, and the protocol needs only two JSON calls and one binary POST; tritonclient would add gevent and a
second HTTP stack to every station. Requests go through the webhook's ``DeadlineClient``: ``timeout_s`` bounds the
whole request, so a server that trickles its answer a byte at a time fails within one deadline like one that
does not answer at all (httpx's own timeouts bound each read only).

Tensors travel as raw little-endian bytes after a JSON header (the ``Inference-Header-Content-Length`` header
says where the JSON ends), not as JSON number lists, which would be about 3x larger and slow to parse.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamdetect.config import ConfigError
from streamdetect.util.deadline_http import Answer, DeadlineClient, RequestFailed

HEADER_LENGTH = "Inference-Header-Content-Length"


class RemoteError(RuntimeError):
    """A request that failed; ``kind`` labels the error counter (connect, timeout, http, protocol, wrong_model)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class InferResult:
    outputs: np.ndarray
    sent_bytes: int
    received_bytes: int
    connection: Any  # the connection it came over: a new one may lead to a restarted server with another model


def bearer_token(token_env: str | None) -> str | None:
    if token_env is None:
        return None
    token = os.environ.get(token_env)
    if not token:
        raise ConfigError("environment", [("runtime.triton.token_env", f"variable {token_env} is not set; set it "
                                           "to the server's token, or remove token_env")])
    return token


class KServeClient:
    """One keep-alive HTTP connection pool to one server; each method raises ``RemoteError`` on any failure.
    ``max_answer_bytes`` bounds what one answer may hold (the largest batch's embeddings, and room for JSON)."""

    def __init__(self, url: str, timeout_s: float, token: str | None = None, ca_file: str | None = None,
                 verify_tls: bool = True, max_answer_bytes: int = 16 << 20):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify: Any = ca_file if ca_file and verify_tls else verify_tls
        self.url = url.rstrip("/")
        self.http = DeadlineClient(timeout_s, headers, max_answer_bytes, base_url=self.url, verify=verify)

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> Answer:
        try:
            answer = self.http.request(method, path, body, headers)
        except RequestFailed as e:
            what = str(e).replace("(timeout_s)", "(runtime.triton.timeout_s)")
            raise RemoteError("timeout" if e.timed_out else "connect", f"{self.url}{path}: {what}") from None
        if answer.status != 200:
            raise RemoteError("http", f"{self.url}{path}: HTTP {answer.status} {_error_text(answer.head)}")
        if not answer.complete:
            raise RemoteError("protocol", f"{self.url}{path}: an answer over {self.http.max_answer_bytes} bytes")
        return answer

    def _json(self, path: str) -> dict[str, Any]:
        try:
            return json.loads(self._request("GET", path).head)
        except ValueError as e:
            raise RemoteError("protocol", f"{self.url}{path}: not JSON: {e}") from None

    def model_config(self, model: str) -> dict[str, Any]:
        """The model's configuration (Triton's model-configuration extension), with its parameters."""
        return self._json(f"/v2/models/{model}/config")

    def model_ready(self, model: str) -> None:
        """Raises unless the model is loaded and ready for inference (its configuration is served either way:
        an unloaded model's too)."""
        self._request("GET", f"/v2/models/{model}/ready")

    def statistics(self, model: str) -> dict[str, Any]:
        return self._json(f"/v2/models/{model}/stats")

    def infer(self, model: str, input_name: str, output_name: str, batch: np.ndarray) -> InferResult:
        """One request: the float32 batch in, the float32 output tensor out, both as binary data."""
        data = np.ascontiguousarray(batch, dtype="<f4").tobytes()
        header = json.dumps({
            "inputs": [{"name": input_name, "shape": list(batch.shape), "datatype": "FP32",
                        "parameters": {"binary_data_size": len(data)}}],
            "outputs": [{"name": output_name, "parameters": {"binary_data": True}}],
        }).encode()
        body = header + data
        answer = self._request("POST", f"/v2/models/{model}/infer", body,
                               {HEADER_LENGTH: str(len(header)), "Content-Type": "application/octet-stream"})
        return InferResult(_output(answer, output_name), len(body), len(answer.head), answer.connection)


def _error_text(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error", ""))[:300]
    except (ValueError, AttributeError):
        return raw[:300].decode("utf-8", "replace")


def _output(answer: Answer, name: str) -> np.ndarray:
    raw = answer.head
    try:
        length = int(answer.headers.get(HEADER_LENGTH, len(raw)))
        header = json.loads(raw[:length])
        offset = length
        for out in header["outputs"]:
            size = int(out.get("parameters", {}).get("binary_data_size", 0))
            if out["name"] == name:
                if out["datatype"] != "FP32":
                    raise RemoteError("protocol", f"output {name} is {out['datatype']}, expected FP32")
                if size:
                    return np.frombuffer(raw[offset:offset + size], dtype="<f4").reshape(out["shape"]).copy()
                return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
            offset += size
    except (KeyError, TypeError, ValueError) as e:
        raise RemoteError("protocol", f"unreadable inference response: {type(e).__name__}: {e}") from e
    raise RemoteError("protocol", f"the response has no output {name}")
