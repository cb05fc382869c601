"""The daemon's services: ``metrics``, ``control`` and ``embedding_log``.
"""

from __future__ import annotations

from pydantic import (
    Field,
)

from streamdetect.config.base import Strict


class MetricsConfig(Strict):
    port: int | None = Field(None, ge=1, le=65535, description="serve /metrics and /healthz here (off if unset)")
    host: str = Field("127.0.0.1", description="listen address; loopback unless you mean to expose it")
    stale_after_s: float = Field(5.0, gt=0, le=3600, description="/healthz fails (503) for a live stream this quiet, "
                                 "or that has delivered nothing this long after start-up; keep it below the "
                                 "sources' stall_timeout_s (10 s for ffmpeg) so a stall shows before the reconnect")


class ControlConfig(Strict):
    port: int | None = Field(None, ge=1, le=65535, description="serve GET/PUT /events here (off if unset)")
    host: str = Field("127.0.0.1", description="listen address; loopback unless you mean to expose it")
    token_env: str = Field("STREAMDETECT_CONTROL_TOKEN", min_length=1,
                           description="environment variable holding the bearer token (never put it in YAML)")


class EmbeddingLogConfig(Strict):
    dir: str | None = Field(None, min_length=1, description="keep every analysed window's embedding here (off if unset)")
    max_days: float = Field(30.0, gt=0, le=3650, description="chunks older than this are deleted")
    queue_windows: int = Field(10_000, ge=1, le=10_000_000, description="windows waiting for the writer before "
                                                                          "new ones are dropped (and counted)")
