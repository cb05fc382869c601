"""The ``web`` section: the dashboard the daemon serves (off unless ``port`` is set).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from streamdetect.config.base import Strict


class WebConfig(Strict):
    port: int | None = Field(None, ge=0, le=65535, description="serve the dashboard here (off if unset; 0 picks "
                                                               "a free port, logged at start)")
    host: str = Field("127.0.0.1", description="listen address; any address but loopback requires a login")
    login: Literal["auto", "always"] = Field("auto", description="auto: a login is required unless host is "
                                                                 "loopback; always: also on loopback")
    admin_token_env: str = Field("STREAMDETECT_WEB_ADMIN_TOKEN", min_length=1,
                                 description="environment variable holding the admin token (review, prompts, "
                                             "settings); never put it in YAML")
    viewer_token_env: str = Field("STREAMDETECT_WEB_VIEWER_TOKEN", min_length=1,
                                  description="environment variable holding the viewer token (see and listen "
                                              "only); optional")
    history_s: float = Field(300.0, ge=10, le=3600, description="seconds of scores and embeddings kept in memory "
                                                                "for the live strips and the prompt playground")
    stale_after_s: float = Field(10.0, gt=0, le=3600, description="a stream with no audio for this long is shown "
                                                                  "as stale")
    max_body_kb: int = Field(256, ge=1, le=65536, description="largest request body accepted, in KiB")
    max_upload_kb: int = Field(10240, ge=1, le=1048576, description="largest audio example uploaded on the "
                                                                 "settings page, in KiB (it is decoded to check it)")
    max_live_clients: int = Field(32, ge=1, le=1000, description="live views served at once; more are refused")
