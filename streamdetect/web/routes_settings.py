"""The settings page: the detection keys the detector applies live (events with their prompts, negatives,
thresholds, timing, schedules and audio examples; scoring, energy gate, vocabulary, novelty, privacy) as a form.
A save is validated by the config's own schema (errors come back per key, shown next to the field), applied
without a restart through the control API's reload path, and written into the YAML file with its comments kept.

Audio examples are uploaded one file at a time (``POST /api/settings/examples``, a raw body bounded by
``web.max_upload_kb``) into the managed folder and take effect with the next save, like every other field; an
example the save drops is deleted if it is one of the managed folder's files and no event lists it any more, and
so is an upload that no save listed within a day.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from streamdetect.config import ConfigError, parse_config
from streamdetect.config.yamledit import update_yaml
from streamdetect.web.auth import read_body
from streamdetect.web.common import api, apply_config, body
from streamdetect.web.context import WebContext
from streamdetect.web.defs.query import UploadQuery
from streamdetect.web.defs.response import Example, SettingsForm, SettingsPage, SettingsSaved
from streamdetect.web.examples import EXAMPLE_ID, ExampleError, describe, known_examples
from streamdetect.web.routing import context, query, reply
from streamdetect.web.settings_form import form_of, merged_data, schema, yaml_sections

MEDIA = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}


async def current_form(ctx: WebContext) -> SettingsForm:
    config = ctx.current()
    return SettingsForm.model_validate(
        await run_in_threadpool(form_of, config, lambda path: describe(path, ctx.examples)))


async def save_settings(ctx: WebContext, data: Any) -> JSONResponse:
    """Validate, apply live, write the YAML, then delete the managed example files no event lists any more.

    The one save path: the form's Apply and an event's "use as example" both come here. A save still pending
    after the gate's wait (202) is written too: it is valid, its prompt bank is built, and the inference thread
    applies it once it gets to it; left out of the YAML, a restart would quietly undo it."""
    current = ctx.current()
    known = await run_in_threadpool(known_examples, current, ctx.examples)
    config = parse_config(merged_data(current, data, known.get), "settings")
    status, message = await apply_config(ctx, config)
    saved = False
    if status in (200, 202):
        if ctx.config_path is not None:
            sections, managed = yaml_sections(config, current, ctx.config_path.parent)
            await run_in_threadpool(update_yaml, ctx.config_path, sections, managed)
            saved = True
        used = {os.path.abspath(p) for e in config.events for p in e.examples}
        dropped = [p for e in current.events for p in e.examples]
        await run_in_threadpool(lambda: ctx.examples.discard(dropped + ctx.examples.abandoned(), used))
    return reply(SettingsSaved(status=message, saved_to=str(ctx.config_path) if saved else None,
                               **(await current_form(ctx)).model_dump()), status)


schema_once = cache(schema)  # the form's fields follow the config's models, which never change in a process


async def show(request: Request) -> Response:
    ctx = context(request)
    return reply(SettingsPage.model_validate((await current_form(ctx)).model_dump() | {
        "schema": schema_once(), "file": str(ctx.config_path) if ctx.config_path else None,
        "examples_dir": str(ctx.examples.root), "max_upload_kb": ctx.web.max_upload_kb}))


@api
async def save(request: Request) -> Response:
    ctx = context(request)
    return await save_settings(ctx, await body(request, ctx))


@api
async def upload(request: Request) -> Response:
    """Store one example file for ``?label=`` (``?name=``: the browser's file name, kept readable in the
    stored name through ``safe_name``); it is listed by an event once a save names its id."""
    ctx, q = context(request), query(request, UploadQuery)
    data = await read_body(request, ctx.web.max_upload_kb * 1024)
    try:
        path = await run_in_threadpool(ctx.examples.store, q.label, data, q.name)
    except ExampleError as e:
        raise ConfigError("upload", [("examples", str(e))]) from None
    except OSError as e:
        return JSONResponse({"error": f"cannot store the example in {ctx.examples.root}: {e.strerror}"}, 507)
    return reply(Example.model_validate(await run_in_threadpool(describe, str(path), ctx.examples)), 201)


@api
async def audio(request: Request) -> Response:
    """An example's audio, for the form's play button: only files of the managed folder are served."""
    ctx, example = context(request), request.path_params["id"]
    if not EXAMPLE_ID.match(example):
        raise LookupError(f"{example[:40]!r} is not an example id")
    path = (await run_in_threadpool(known_examples, ctx.current(), ctx.examples)).get(example)
    if path is None or not ctx.examples.owns(path):
        raise LookupError("no such example in the dashboard's examples folder")
    return FileResponse(path, media_type=MEDIA.get(Path(path).suffix, "application/octet-stream"))


ROUTES = [Route("/api/settings", show), Route("/api/settings", save, methods=["POST"]),
          Route("/api/settings/examples", upload, methods=["POST"]),
          Route("/api/settings/examples/{id}/audio", audio)]
