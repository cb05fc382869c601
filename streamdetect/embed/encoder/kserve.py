"""A small client of the KServe v2 / Open Inference Protocol over HTTP, with Triton's binary-tensor extension.

httpx rather than ``tritonclient[http]``: httpx is already what the webhook sink uses, it brings timeouts, TLS and
HTTP keep-alive, and the protocol needs only two JSON calls and one binary POST; tritonclient would add gevent and
a second HTTP stack to every station. Tensors travel as raw little-endian bytes after a JSON header (the
``Inference-Header-Content-Length`` header says where the JSON ends), not as JSON number lists, which would be
about 3x larger and slow to parse.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from streamdetect.config import ConfigError

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
    """One keep-alive HTTP connection pool to one server; each method raises ``RemoteError`` on any failure."""

    def __init__(self, url: str, timeout_s: float, token: str | None = None, ca_file: str | None = None,
                 verify_tls: bool = True):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify: Any = ca_file if ca_file and verify_tls else verify_tls
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout_s, headers=headers, verify=verify)

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException as e:
            raise RemoteError("timeout", f"{self.url}{path}: no answer within {self.http.timeout.read} s") from e
        except httpx.HTTPError as e:
            raise RemoteError("connect", f"{self.url}{path}: {type(e).__name__}: {e}") from e
        if response.status_code != 200:
            raise RemoteError("http", f"{self.url}{path}: HTTP {response.status_code} {_error_text(response)}")
        return response

    def model_config(self, model: str) -> dict[str, Any]:
        """The model's configuration (Triton's model-configuration extension), with its parameters."""
        return self._request("GET", f"/v2/models/{model}/config").json()

    def statistics(self, model: str) -> dict[str, Any]:
        return self._request("GET", f"/v2/models/{model}/stats").json()

    def infer(self, model: str, input_name: str, output_name: str, batch: np.ndarray) -> InferResult:
        """One request: the float32 batch in, the float32 output tensor out, both as binary data."""
        data = np.ascontiguousarray(batch, dtype="<f4").tobytes()
        header = json.dumps({
            "inputs": [{"name": input_name, "shape": list(batch.shape), "datatype": "FP32",
                        "parameters": {"binary_data_size": len(data)}}],
            "outputs": [{"name": output_name, "parameters": {"binary_data": True}}],
        }).encode()
        body = header + data
        response = self._request("POST", f"/v2/models/{model}/infer", content=body,
                                 headers={HEADER_LENGTH: str(len(header)),
                                          "Content-Type": "application/octet-stream"})
        return InferResult(_output(response, output_name), len(body), len(response.content),
                           response.extensions.get("network_stream"))


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", ""))[:300]
    except (ValueError, AttributeError):
        return response.text[:300]


def _output(response: httpx.Response, name: str) -> np.ndarray:
    raw = response.content
    try:
        length = int(response.headers.get(HEADER_LENGTH, len(raw)))
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
