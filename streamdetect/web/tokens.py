"""The dashboard's tokens from the environment, checked before any audio is opened (no web framework needed)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

from streamdetect.config.web import WebConfig


class WebError(RuntimeError):
    """The dashboard cannot start (no token in the environment, port in use); the message says what to do."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def login_required(config: WebConfig) -> bool:
    return config.login == "always" or not is_loopback(config.host)


def web_tokens(config: WebConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """role -> token from the environment; raises ``WebError`` when a login is needed and no admin token is set."""
    env = os.environ if environ is None else environ
    tokens = {role: env.get(var, "").strip() for role, var in (("admin", config.admin_token_env),
                                                               ("viewer", config.viewer_token_env))}
    tokens = {role: token for role, token in tokens.items() if token}
    if login_required(config) and "admin" not in tokens:
        raise WebError(f"web.host {config.host} is not loopback (or web.login is always), so the dashboard needs "
                       f"a login: export {config.admin_token_env} (a long random string; optionally "
                       f"{config.viewer_token_env} for read-only users), or set web.host: 127.0.0.1")
    if tokens.get("admin") is not None and tokens.get("admin") == tokens.get("viewer"):
        raise WebError(f"{config.admin_token_env} and {config.viewer_token_env} hold the same token; give the "
                       "viewers their own")
    return tokens
