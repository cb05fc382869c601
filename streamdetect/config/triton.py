"""The ``runtime.triton`` section: the audio encoder on a Triton Inference Server (KServe v2 over HTTP).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from streamdetect.config.base import Strict


class TritonConfig(Strict):
    url: str = Field("http://127.0.0.1:8000", pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
                     description="the server's HTTP endpoint (KServe v2 / Open Inference Protocol); https for TLS")
    model: str = Field("streamdetect_audio", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$",
                       description="model name in the server's repository (`streamdetect export --triton-repo`)")
    timeout_s: float = Field(5.0, gt=0, le=300, description="one request's limit (connect, send, answer); a "
                             "slower answer counts as a failure")
    retries: int = Field(2, ge=0, le=20, description="quick retries of a failed request before the server counts "
                         "as away (then: the local encoder with fallback: local, else the windows wait)")
    retry_min_s: float = Field(0.5, gt=0, le=60, description="first wait between tries; doubles, with jitter")
    retry_max_s: float = Field(30.0, gt=0, le=3600, description="longest wait between tries while the server is away")
    token_env: str | None = Field(None, min_length=1, description="environment variable holding a bearer token "
                                  "sent as `Authorization: Bearer ...` (never put the token in YAML)")
    ca_file: str | None = Field(None, min_length=1, description="CA bundle that signed an https server's "
                                "certificate (default: the system's)")
    verify_tls: bool = Field(True, description="check an https server's certificate; off only for testing")
    queue_windows: int = Field(600, ge=1, le=1_000_000, description="windows of live streams that may wait while "
                               "the server is away; older ones beyond this are dropped and counted")
    fallback: Literal["none", "local"] = Field("none", description="local: run the exported encoder on this "
                                               "machine while the server is away, and go back when it returns")
