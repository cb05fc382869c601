"""YAML -> a validated ``Config``, with every mistake reported at once by file and key path.

Sink and source options are validated by the plugin's own ``Options`` model, found through the registry by
``type`` (``config/plugins.py``), so a third-party plugin gets the same checks as a built-in one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)
from pydantic_core import ErrorDetails

from streamdetect.config.plugins import UNKNOWN_PLUGIN
from streamdetect.config.root import Config
from streamdetect.config.station import SiteConfig
from streamdetect.config.yamlfile import YamlProblems, read_yaml
from streamdetect.plugins import SINKS
from streamdetect.schedule import Site


class ConfigError(ValueError):
    """A config that cannot be used; ``problems`` holds one ``(key path, message)`` per mistake."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source, self.problems = source, problems
        lines = [f"{source}: {path}: {message}" if path else f"{source}: {message}" for path, message in problems]
        super().__init__("invalid config\n  " + "\n  ".join(lines))


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


MAX_CONFIG_NODES = 50_000  # a real config has hundreds; YAML aliases can make millions out of a few lines
MAX_CONFIG_DEPTH = 50
MAX_FOUND_CHARS = 200


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_FOUND_CHARS else text[:MAX_FOUND_CHARS] + "..."


def _describe(error: ErrorDetails) -> str:
    kind, found = error["type"], error.get("input")
    if kind == "extra_forbidden":
        return f"unknown key (found {_shown(found)})"
    if kind == "missing":
        return "required key is missing"
    if kind == UNKNOWN_PLUGIN:
        return error["msg"]
    return f"{error['msg'].replace('Input should be', 'expected')} (found {_shown(found)})"


def _too_big(data: Any) -> str | None:
    """Why the data is too large to validate, or None. PyYAML builds aliases as shared references, so a
    "billion laughs" file loads fast but expands exponentially once validation walks it; this walk stops at
    the limit instead of expanding."""
    stack, nodes = [(data, 0)], 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_CONFIG_NODES:
            return (f"too large: more than {MAX_CONFIG_NODES} values once YAML aliases (*name) are expanded; "
                    "a config this size is almost certainly an alias bomb or a wrong file")
        if depth > MAX_CONFIG_DEPTH:
            return f"nested more than {MAX_CONFIG_DEPTH} levels deep"
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, list | tuple | set):
            stack.extend((item, depth + 1) for item in value)
    return None


def _problems(error: ValidationError) -> list[tuple[str, str]]:
    return [(_key_path(tuple(e["loc"])), _describe(e)) for e in error.errors()]


def _raw_site(data: dict[str, Any]) -> Site | None:
    """The site of not yet validated data (None where the section itself is wrong: it is reported apart); sink
    options see it (quiet hours at sun times need its coordinates)."""
    try:
        return SiteConfig.model_validate(data.get("site") or {}).site()
    except ValidationError:
        return None


def _scoring_problems(config: Config) -> list[tuple[str, str]]:
    """Checks across sections: thresholds that mean nothing in the chosen scoring mode."""
    problems: list[tuple[str, str]] = []
    scoring = config.scoring
    if scoring.mode == "softmax":
        for i, event in enumerate(config.events):
            if not 0.0 <= event.threshold <= 1.0:
                problems.append((f"events[{i}].threshold", f"scoring.mode is softmax, so the threshold is a "
                                 f"probability between 0 and 1 (found {event.threshold!r})"))
        if len(config.events) + len(scoring.background) < 2:
            problems.append(("scoring.background", "softmax over a single prompt is always 1: add background "
                             "prompts (e.g. silence, room tone) or use scoring.mode cosine"))
    elif scoring.background and not config.novelty.enabled:
        problems.append(("scoring.background", "background prompts only take part in scoring.mode softmax (and "
                         "in novelty): set scoring.mode: softmax or remove them"))
    return problems


def parse_config(data: Any, source: str = "<config>", base_dir: str | Path | None = None) -> Config:
    """Validate already-parsed YAML data (also used by tests, config reload and the control API).

    ``base_dir`` is where relative example paths are looked up (the config file's directory; default: here).
    Every mistake comes back at once as one ``ConfigError``; no other exception leaves this function, so a
    reload (SIGHUP, ``PUT /events``) can always answer with the reason.
    """
    try:
        return _parse(data, source, base_dir)
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(source, [("", f"nested more than {MAX_CONFIG_DEPTH} levels deep")]) from None
    except Exception as e:  # noqa: BLE001 - a validator that raised something other than ValueError
        raise ConfigError(source, [("", f"cannot be validated ({type(e).__name__}: {e})")]) from None


def _parse(data: Any, source: str, base_dir: str | Path | None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(source, [("", f"expected a mapping of keys at the top level, found {type(data).__name__}")])
    if (why := _too_big(data)) is not None:
        raise ConfigError(source, [("", why)])
    context = {"base_dir": str(base_dir) if base_dir else None, "site": _raw_site(data)}
    try:
        config = Config.model_validate(data, context=context)
    except ValidationError as e:
        raise ConfigError(source, _problems(e) + _problems_of_the_rest(data, e, context)) from None
    problems = _scoring_problems(config) + _cross_problems(config)
    problems += _summary_problems(config)
    if problems:
        raise ConfigError(source, problems)
    return config


def _cross_problems(config: Config, sink_index: list[int] | None = None,
                    source_index: list[int] | None = None) -> list[tuple[str, str]]:
    """Labels named by sinks and sources that no event has; ``*_index`` map entries back to their place in the
    file when some entries were left out (``_problems_of_the_rest``)."""
    problems = []
    known = [e.label for e in config.events] + ([config.novelty.label] if config.novelty.enabled else [])
    for i, sink in enumerate(config.sinks):
        for label in sink.options.labels or []:
            if label not in known:
                place = sink_index[i] if sink_index is not None else i
                problems.append((f"sinks[{place}].labels", f"{label!r} is not an event label ({', '.join(known)})"))
    entries = [(f"sources[{source_index[i] if source_index is not None else i}]", e)
               for i, e in enumerate(config.sources)]
    entries += [("source", config.source)] if config.source is not None else []
    for where, entry in entries:
        for label in entry.events or []:
            if label not in known[: len(config.events)]:
                problems.append((f"{where}.events", f"{label!r} is not an event label "
                                                    f"({', '.join(e.label for e in config.events)})"))
    return problems


def _problems_of_the_rest(data: dict[str, Any], error: ValidationError,
                          context: dict[str, Any]) -> list[tuple[str, str]]:
    """When only some source or sink entries are wrong, the checks that need a valid config (scoring mode, labels
    named by the other entries) still run, so that every mistake of a file comes back at once, as it did when
    plugin options were checked apart from the schema. The summary check is left out: it names sinks, and the
    wrong ones are missing from what it would see."""
    wrong: dict[str, set[int]] = {}
    for problem in error.errors():
        loc = problem["loc"]
        if len(loc) < 2 or loc[0] not in ("sinks", "sources") or not isinstance(loc[1], int):
            return []  # a mistake outside the plugin entries: the cross-checks would read unchecked data
        wrong.setdefault(str(loc[0]), set()).add(loc[1])
    rest, keep = dict(data), {}
    for key, indices in wrong.items():
        entries = data.get(key)
        if not isinstance(entries, list):
            return []
        keep[key] = [i for i in range(len(entries)) if i not in indices]
        rest[key] = [entries[i] for i in keep[key]]
    try:
        config = Config.model_validate(rest, context=context)
    except ValidationError:
        return []
    return _scoring_problems(config) + _cross_problems(config, keep.get("sinks"), keep.get("sources"))


def _summary_problems(config: Config) -> list[tuple[str, str]]:
    """The daily summary needs an event store to read and a sink that can send it."""
    summary = config.summary
    if summary.at is None:
        return []
    problems = []
    if summary.store is None and not any(s.type == "sqlite" for s in config.sinks):
        problems.append(("summary.store", "the summary is read from an event store: add a sqlite sink or set "
                         "summary.store"))
    names = {s.name for s in config.sinks if s.name}
    for name in summary.sinks:
        if name not in names:
            problems.append(("summary.sinks", f"{name!r} is not a sink name (sinks[].name: "
                             f"{', '.join(sorted(names)) or 'none set'})"))
    senders = [s for s in config.sinks if (s.name in summary.sinks if summary.sinks else True)]
    if not problems and not any(SINKS.get(s.type).sends_summaries for s in senders):
        problems.append(("summary.sinks", "none of these sinks can send a summary (apprise, jsonl and stdout "
                         "can)"))
    return problems


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ``ConfigError`` (file, key path, line) and nothing else."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(path), [("", f"cannot read the file ({e.strerror})")]) from None
    except UnicodeDecodeError as e:
        raise ConfigError(str(path), [("", f"not UTF-8 text (byte {e.start}): is this the config file?")]) from None
    except ValueError as e:  # a path with a NUL byte
        raise ConfigError(str(path), [("", f"cannot read the file ({e})")]) from None
    try:
        data = read_yaml(text, MAX_CONFIG_NODES, MAX_CONFIG_DEPTH)
    except YamlProblems as e:
        raise ConfigError(str(path), e.problems) from None
    return parse_config(data, str(path), base_dir=path.parent)
