"""Which config keys the settings page edits, and how each is shown, read from the config's pydantic models.

The form is described by the schema itself (kind, choices, default, description of every field), so a key added
to a model with a ``description=`` shows up here with its help text, and the browser needs no copy of the
schema. Only keys the detector applies live are listed: window, runtime, source and sink settings (the per-source
``events``, ``gate`` and ``schedule`` included: a stream takes them when it opens) need a restart and stay in the
YAML file. No path is typed in a browser: an event's audio examples are named by opaque ids (see
``streamdetect.web.examples``), and ``vocabulary.file`` is not editable here.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from streamdetect.config import Config, ConfigError, EventConfig
from streamdetect.config.yamledit import REMOVE

EVENT_KEYS = ("label", "prompts", "negatives", "threshold", "min_windows", "hysteresis", "cooldown_s",
              "example_weight", "schedule")
ALWAYS_WRITTEN = ("label", "prompts", "threshold")  # an event entry in the YAML file always names these
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "scoring": ("mode", "background"),
    "gate": ("min_dbfs",),
    "vocabulary": ("template", "top_k"),
    "novelty": ("enabled", "label", "max_prompt_similarity", "threshold", "half_life_windows", "warmup_windows",
                "min_windows", "hysteresis", "cooldown_s"),
    "privacy": ("enabled", "prompts", "threshold", "store_audio"),
}
_KINDS = {str: "text", float: "number", int: "integer", bool: "bool"}


def _describe(model: type[BaseModel], key: str) -> dict[str, Any]:
    field = model.model_fields[key]
    kind: dict[str, Any] = {}
    annotation: Any = field.annotation  # a class, a union or a Literal: told apart below
    args = typing.get_args(annotation)
    nullable = typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args
    if nullable:
        annotation = next(a for a in args if a is not type(None))
    if typing.get_origin(annotation) is Literal:
        kind = {"kind": "choice", "options": list(typing.get_args(annotation))}
    elif typing.get_origin(annotation) is list:
        kind = {"kind": "lines"}
    else:
        kind = {"kind": _KINDS.get(annotation, "text")}
    default = field.get_default(call_default_factory=True) if not field.is_required() else None
    return {"key": key, **kind, "nullable": nullable, "default": default, "description": field.description or ""}


def _section_model(name: str) -> type[BaseModel]:
    """The model of a config section (``scoring`` -> ``ScoringConfig``)."""
    model = Config.model_fields[name].annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"config section {name!r} is not a model: SECTION_KEYS names only model sections")
    return model


def schema() -> dict[str, Any]:
    """What the browser draws: per event the ``EVENT_KEYS``, per section its ``SECTION_KEYS``."""
    sections = {name: [_describe(_section_model(name), k) for k in keys] for name, keys in SECTION_KEYS.items()}
    return {"events": [_describe(EventConfig, k) for k in EVENT_KEYS], "sections": sections}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def event_values(config: Config, example: Callable[[str], Any]) -> list[dict[str, Any]]:
    """Each event's form keys, with ``example(path)`` for each of its examples."""
    return [{k: _plain(getattr(e, k)) for k in EVENT_KEYS} | {"examples": [example(p) for p in e.examples]}
            for e in config.events]


def form_of(config: Config, describe: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """The running values; ``describe`` turns an example's path into what the browser may see of it."""
    return {"events": event_values(config, describe),
            **{name: {k: _plain(getattr(getattr(config, name), k)) for k in keys}
               for name, keys in SECTION_KEYS.items()}}


def _examples(raw: Any, where: str, resolve: Callable[[str], str | None]) -> tuple[list[str], list]:
    """The paths of the example ids the form sent (or of the examples as the form showed them), and a problem
    for each that names no known example."""
    if not isinstance(raw, list):
        return [], [(where, "expected a list of example ids")]
    paths, problems = [], []
    for j, example in enumerate(raw):
        if isinstance(example, dict):  # what GET /api/settings shows of it, sent back as it came
            example = example.get("id")
        path = resolve(example) if isinstance(example, str) else None
        if path is None:
            problems.append((f"{where}[{j}]", "unknown example: upload the file again"))
        elif path not in paths:
            paths.append(path)
    return paths, problems


def merged_data(current: Config, data: Any, resolve: Callable[[str], str | None]) -> dict[str, Any]:
    """The running config's data with the form's events and sections put in, for ``parse_config``.

    An event's ``examples`` are ids, turned into paths by ``resolve`` (None: not an example this daemon knows);
    an event sent without them keeps its examples, matched by label. A key the form may not change is refused
    with its key path, like any other config mistake."""
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise ValueError('send {"events": [...], "scoring": {...}, "gate": {...}, ...}')
    problems: list[tuple[str, str]] = []
    old = {e.label: e for e in current.events}
    events = []
    for i, raw in enumerate(data["events"]):
        if not isinstance(raw, dict):
            problems.append((f"events[{i}]", "each event must be an object"))
            continue
        problems += [(f"events[{i}].{k}", "not editable here; edit the config file") for k in raw
                     if k not in EVENT_KEYS and k != "examples"]
        label = raw.get("label")
        kept = old.get(label) if isinstance(label, str) else None
        extra = {"examples": kept.examples} if kept is not None else {}
        if "examples" in raw:
            extra["examples"], found = _examples(raw["examples"], f"events[{i}].examples", resolve)
            problems += found
        events.append(extra | {k: v for k, v in raw.items() if k in EVENT_KEYS})
    merged = current.model_dump()
    merged["events"] = events
    for name, keys in SECTION_KEYS.items():
        given = data.get(name)
        if given is None:
            continue
        if not isinstance(given, dict):
            problems.append((name, "expected an object of keys"))
            continue
        problems += [(f"{name}.{k}", "not editable here; edit the config file") for k in given if k not in keys]
        merged[name] = {**merged[name], **{k: v for k, v in given.items() if k in keys}}
    if problems:
        raise ConfigError("settings", problems)
    return merged


def _written_path(path: str, base_dir: Path | None) -> str:
    """A path as the file says it: relative to the config file's folder when inside it, as paths are read."""
    if base_dir is not None:
        relative = os.path.relpath(os.path.abspath(path), os.path.abspath(base_dir))
        if not relative.startswith(".."):
            return Path(relative).as_posix()
    return os.path.abspath(path)


def yaml_sections(config: Config, before: Config, base_dir: Path | None = None,
                  ) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """What the file should say: every event with the form's keys (left out where they hold the default), and
    each section whose keys changed, with its non-default keys; plus the keys each section manages (those
    missing from the new data are removed from the file, having gone back to their default). An event's
    ``examples`` are written only where they changed (``base_dir``: the config file's folder), so paths the
    user wrote (``~/sounds/dog.wav``) stay as written."""
    defaults = {k: f.get_default(call_default_factory=True) for k, f in EventConfig.model_fields.items()
                if not f.is_required()}
    old_examples = {e.label: e.examples for e in before.events}
    events = []
    for e in config.events:
        entry = {k: _plain(getattr(e, k)) for k in EVENT_KEYS if k in ALWAYS_WRITTEN or getattr(e, k) != defaults.get(k)}
        if e.examples != old_examples.get(e.label, []):
            entry["examples"] = [_written_path(p, base_dir) for p in e.examples] or REMOVE
        events.append(entry)
    sections: dict[str, Any] = {"events": events}
    managed: dict[str, set[str]] = {"events": set(EVENT_KEYS) - set(ALWAYS_WRITTEN)}
    for name, keys in SECTION_KEYS.items():
        new, old = getattr(config, name), getattr(before, name)
        if all(getattr(new, k) == getattr(old, k) for k in keys):
            continue
        fresh = type(new)()
        sections[name] = {k: _plain(getattr(new, k)) for k in keys if getattr(new, k) != getattr(fresh, k)}
        managed[name] = set(keys)
    return sections, managed
