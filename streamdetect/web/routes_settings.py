"""The settings page: the detection keys (events, their prompts, negatives, thresholds and timing; the energy
gate) as a form. A save is validated by the config's own schema (errors come back per key, shown next to the
field), applied without a restart, and written into the YAML file with its comments kept."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streamdetect.config import Config, parse_config
from streamdetect.web.common import api, apply_config, body
from streamdetect.web.context import WebContext
from streamdetect.web.yamlfile import update_yaml

EVENT_KEYS = ("label", "prompts", "negatives", "threshold", "min_windows", "hysteresis", "cooldown_s")
GATE_KEYS = ("min_dbfs",)


def form_of(config: Config) -> dict:
    return {"events": [{k: getattr(e, k) for k in EVENT_KEYS} | {"examples": len(e.examples)}
                       for e in config.events],
            "gate": {k: getattr(config.gate, k) for k in GATE_KEYS}, "scoring_mode": config.scoring.mode}


def _yaml_events(config: Config) -> list[dict]:
    """What the file should say for each event: the form's keys, left out where they hold the default."""
    defaults = {k: f.get_default(call_default_factory=True) for k, f in type(config.events[0]).model_fields.items()}
    out = []
    for event in config.events:
        entry = {}
        for key in EVENT_KEYS:
            value = getattr(event, key)
            if key in ("label", "prompts", "threshold") or value != defaults.get(key):
                entry[key] = list(value) if isinstance(value, tuple) else value
        out.append(entry)
    return out


def routes(ctx: WebContext) -> list[Route]:
    async def show(_request: Request) -> Response:
        return JSONResponse(form_of(ctx.current()) | {"file": str(ctx.config_path) if ctx.config_path else None})

    @api
    async def save(request: Request) -> Response:
        data = await body(request, ctx)
        if not isinstance(data, dict) or not isinstance(data.get("events"), list):
            raise ValueError('send {"events": [...], "gate": {...}}')
        current = ctx.current()
        old = {e.label: e for e in current.events}
        events = []
        for raw in data["events"]:
            if not isinstance(raw, dict):
                raise ValueError("each event must be an object")
            kept = old.get(raw.get("label"))  # keys the form does not show (examples) stay as they were
            extra = {"examples": kept.examples, "example_weight": kept.example_weight} if kept is not None else {}
            events.append(extra | {k: v for k, v in raw.items() if k in EVENT_KEYS})
        merged = current.model_dump()
        merged["events"] = events
        merged["gate"] = {**merged["gate"], **{k: v for k, v in (data.get("gate") or {}).items() if k in GATE_KEYS}}
        config = parse_config(merged, "settings")
        status, message = await apply_config(ctx, config)
        saved = False
        if status == 200 and ctx.config_path is not None:
            sections: dict = {"events": _yaml_events(config)}
            if config.gate.min_dbfs != current.gate.min_dbfs:
                sections["gate"] = {"min_dbfs": config.gate.min_dbfs}

            def write():
                update_yaml(ctx.config_path, sections,
                            {"events": set(EVENT_KEYS) - {"label", "prompts", "threshold"}})
            await run_in_threadpool(write)
            saved = True
        return JSONResponse({"status": message, "saved_to": str(ctx.config_path) if saved else None,
                             **form_of(ctx.current())}, status)

    return [Route("/api/settings", show), Route("/api/settings", save, methods=["POST"])]
