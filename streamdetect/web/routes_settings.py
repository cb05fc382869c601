"""The settings page: the detection keys the detector applies live (events with their prompts, negatives,
thresholds, timing and schedules; scoring, energy gate, vocabulary, novelty, privacy) as a form. A save is
validated by the config's own schema (errors come back per key, shown next to the field), applied without a
restart through the control API's reload path, and written into the YAML file with its comments kept."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streamdetect.config import parse_config
from streamdetect.web.common import api, apply_config, body
from streamdetect.web.context import WebContext
from streamdetect.web.settings_form import form_of, merged_data, schema, yaml_sections
from streamdetect.web.yamlfile import update_yaml


def routes(ctx: WebContext) -> list[Route]:
    fields = schema()

    async def show(_request: Request) -> Response:
        return JSONResponse(form_of(ctx.current()) | {"schema": fields,
                                                      "file": str(ctx.config_path) if ctx.config_path else None})

    @api
    async def save(request: Request) -> Response:
        data = await body(request, ctx)
        current = ctx.current()
        config = parse_config(merged_data(current, data), "settings")
        status, message = await apply_config(ctx, config)
        saved = False
        if status == 200 and ctx.config_path is not None:
            sections, managed = yaml_sections(config, current)
            await run_in_threadpool(update_yaml, ctx.config_path, sections, managed)
            saved = True
        return JSONResponse({"status": message, "saved_to": str(ctx.config_path) if saved else None,
                             **form_of(ctx.current())}, status)

    return [Route("/api/settings", show), Route("/api/settings", save, methods=["POST"])]
