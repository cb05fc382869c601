"""YAML config -> validated, immutable pydantic models.

Every mistake is reported with the file, the key path, what was expected and what was found, and nothing
starts. Sink and source options are validated by the plugin's own ``Options`` model, found through the
registry by ``type``, so a third-party plugin gets the same checks as a built-in one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from streamdetect.plugins import Registry, UnknownPluginError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowConfig(Strict):
    window_s: float = Field(3.0, gt=0, le=10.0, description="analysis window length; CLAP takes at most 10 s")
    hop_s: float = Field(1.0, gt=0, le=60.0, description="time between window starts")


class RuntimeConfig(Strict):
    device: Literal["auto", "cpu", "cuda", "tensorrt", "openvino"] = Field(
        "auto", description="auto: CUDA when an NVIDIA driver and onnxruntime-gpu are there, else OpenVINO bf16 on a "
        "CPU with bf16 units when openvino is installed and the export verified bf16, else CPU; tensorrt: "
        "onnxruntime's TensorRT provider (engines cached next to the model), CUDA and CPU as fallbacks; openvino: "
        "the audio encoder on Intel's OpenVINO runtime on the CPU (pip install 'streamdetect[openvino]')")
    precision: Literal["auto", "fp32", "int8", "fp16", "bf16"] = Field(
        "auto", description="auto: bf16 on openvino, int8 on CPU, fp16 on GPU, when the export verified them "
        "(cosine >= 0.999 vs fp32), else fp32")
    intra_op_threads: int = Field(0, ge=0, le=256, description="0 lets onnxruntime choose")
    batch_size: int = Field(4, ge=1, le=1024, description="windows per encoder call when several are ready; "
                            "with tensorrt also the largest batch its engine is built for")
    frontend_threads: int = Field(0, ge=0, le=256, description="threads computing log-mel features; 0: one when "
                                  "the encoder runs on the CPU (it needs the cores), all cores but two on a GPU")


class GateConfig(Strict):
    min_dbfs: float | None = Field(None, ge=-200.0, le=0.0, description="windows quieter than this skip the "
                                   "encoder and count as silence (none: every window is analysed)")


class MetricsConfig(Strict):
    port: int | None = Field(None, ge=1, le=65535, description="serve /metrics and /healthz here (off if unset)")
    host: str = Field("127.0.0.1", description="listen address; loopback unless you mean to expose it")
    stale_after_s: float = Field(10.0, gt=0, le=3600, description="/healthz fails for a live stream this quiet")


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


class EventConfig(Strict):
    label: str = Field(min_length=1, max_length=200)
    prompts: list[str] = Field(description="text prompts, averaged as an ensemble (may be empty with examples)")
    threshold: float = Field(ge=-1.0, le=1.0, description="score at which the event fires: a cosine in "
                             "scoring mode cosine, a probability (0..1) in scoring mode softmax")
    negatives: list[str] = Field(default_factory=list, description="confusers: no firing where one scores higher")
    min_windows: int = Field(1, ge=1, le=1000, description="consecutive windows above threshold to fire")
    hysteresis: float = Field(0.02, ge=0.0, le=2.0, description="stay active until score < threshold - hysteresis")
    cooldown_s: float = Field(2.0, ge=0.0, le=86_400.0, description="quiet time after an end before firing again")
    examples: list[str] = Field(default_factory=list, max_length=100, description="audio files of the sound "
                                "(query by example), relative to the config file's directory")
    example_weight: float = Field(0.5, ge=0.0, le=1.0, description="share of the examples in the ensemble when "
                                  "the event has both prompts and examples (0: text only, 1: examples only)")

    @model_validator(mode="before")
    @classmethod
    def _examples_make_prompts_optional(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("examples") and "prompts" not in value:
            return {**value, "prompts": []}
        return value

    @field_validator("prompts", "negatives", mode="before")
    @classmethod
    def _one_string_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("prompts", "negatives")
    @classmethod
    def _no_blank_prompt(cls, value: list[str]) -> list[str]:
        for text in value:
            if not text.strip():
                raise ValueError("prompts must not be empty strings")
        return value

    @field_validator("examples", mode="before")
    @classmethod
    def _one_example_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("examples")
    @classmethod
    def _examples_exist(cls, value: list[str], info: ValidationInfo) -> list[str]:
        """Relative paths are taken from the config file's directory, so a config and its clips move together."""
        base = Path((info.context or {}).get("base_dir") or ".")
        resolved = []
        for name in value:
            path = Path(name).expanduser()
            path = path if path.is_absolute() else base / path
            if not path.is_file():
                raise ValueError(f"example file {str(path)!r} does not exist")
            resolved.append(str(path))
        return resolved

    @model_validator(mode="after")
    def _prompts_or_examples(self) -> EventConfig:
        if not self.prompts and not self.examples:
            raise ValueError("an event needs at least one prompt or one example file")
        return self


class ScoringConfig(Strict):
    mode: Literal["cosine", "softmax"] = Field(
        "cosine", description="cosine: raw cosine of each event; softmax: probability over events + background "
        "with the model's logit scale (thresholds are then probabilities)")
    background: list[str] = Field(default_factory=list, max_length=100, description="prompts for what is always "
                                  "there (silence, wind noise, room tone): they compete with the events in softmax "
                                  "mode and never fire")

    @field_validator("background")
    @classmethod
    def _no_blank_background(cls, value: list[str]) -> list[str]:
        if any(not text.strip() for text in value):
            raise ValueError("background prompts must not be empty strings")
        return value


class VocabularyConfig(Strict):
    file: str | None = Field(None, description="'audioset' (the 527 AudioSet class names shipped with "
                             "streamdetect) or a text file with one name per line; none: no vocabulary")
    template: str = Field("This is a sound of {}.", description="prompt for each name; {} is the name")
    top_k: int = Field(3, ge=1, le=50, description="names per record in `sounds_like`")

    @field_validator("file")
    @classmethod
    def _file_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value == "audioset":
            return value
        path = Path(value).expanduser()
        path = path if path.is_absolute() else Path((info.context or {}).get("base_dir") or ".") / path
        if not path.is_file():
            raise ValueError(f"vocabulary file {str(path)!r} does not exist (or use 'audioset')")
        return str(path)

    @field_validator("template")
    @classmethod
    def _template_has_slot(cls, value: str) -> str:
        if value.count("{}") != 1:
            raise ValueError("template must contain {} exactly once")
        return value


class NoveltyConfig(Strict):
    enabled: bool = False
    label: str = Field("novelty", min_length=1, max_length=200, description="label of the novelty records")
    max_prompt_similarity: float = Field(0.3, ge=-1.0, le=1.0, description="novel only while the best cosine to "
                                         "every prompt (events, negatives, background, vocabulary) is below this")
    threshold: float = Field(0.2, gt=0.0, le=2.0, description="novel when the cosine distance (1 - cosine) of a "
                             "window to the site profile is at least this")
    half_life_windows: float = Field(300.0, ge=1.0, le=1e7, description="the site profile is an exponential "
                                     "moving average of window embeddings with this half-life, in windows")
    warmup_windows: int = Field(30, ge=1, le=1_000_000, description="windows the profile must have seen first")
    min_windows: int = Field(1, ge=1, le=1000)
    hysteresis: float = Field(0.02, ge=0.0, le=2.0)
    cooldown_s: float = Field(10.0, ge=0.0, le=86_400.0)


class PluginConfig(Strict):
    """A source or sink entry: ``type`` picks the plugin, the other keys are its options."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str = Field(min_length=1)
    name: str | None = Field(None, min_length=1, max_length=100, description="stream name in records and topics")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SourceConfig(PluginConfig):
    """A source entry: the plugin's options plus settings the detector applies to that stream."""

    gate: GateConfig | None = Field(None, description="this stream's energy gate (default: the top-level gate)")
    events: list[str] | None = Field(None, min_length=1, description="labels of the events this stream listens "
                                     "for (default: all); streams can share events or have their own")


class Config(Strict):
    model: str | None = Field(None, description="directory written by `streamdetect export`")
    prompt_cache: str | None = Field(None, description="directory for cached prompt embeddings")
    windows: WindowConfig = WindowConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    gate: GateConfig = GateConfig()
    metrics: MetricsConfig = MetricsConfig()
    control: ControlConfig = ControlConfig()
    embedding_log: EmbeddingLogConfig = EmbeddingLogConfig()
    source: SourceConfig | None = None
    sources: list[SourceConfig] = Field(default_factory=list, description="several streams in one detector")
    events: list[EventConfig] = Field(min_length=1)
    scoring: ScoringConfig = ScoringConfig()
    vocabulary: VocabularyConfig = VocabularyConfig()
    novelty: NoveltyConfig = NoveltyConfig()
    sinks: list[PluginConfig] = Field(default_factory=lambda: [PluginConfig(type="jsonl", path="-")])

    @property
    def all_sources(self) -> list[SourceConfig]:
        return self.sources or ([self.source] if self.source is not None else [])

    @model_validator(mode="after")
    def _one_way_to_name_sources(self) -> Config:
        if self.source is not None and self.sources:
            raise ValueError("give either `source` or `sources`, not both")
        names = [s.name for s in self.sources if s.name]
        if len(names) != len(set(names)):
            raise ValueError(f"source names must be unique, found {names}")
        return self

    @model_validator(mode="after")
    def _unique_labels(self) -> Config:
        seen: set[str] = set()
        for event in self.events:
            if event.label in seen:
                raise ValueError(f"event label {event.label!r} appears twice; labels must be unique")
            seen.add(event.label)
        if self.novelty.enabled and self.novelty.label in seen:
            raise ValueError(f"novelty.label {self.novelty.label!r} is also an event label; pick another")
        return self


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


def _describe(error: dict[str, Any]) -> str:
    kind, found = error["type"], error.get("input")
    if kind == "extra_forbidden":
        return f"unknown key (found {_shown(found)})"
    if kind == "missing":
        return "required key is missing"
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


def _problems(error: ValidationError, prefix: tuple[Any, ...] = ()) -> list[tuple[str, str]]:
    return [(_key_path(prefix + tuple(e["loc"])), _describe(e)) for e in error.errors()]


def _validate_plugin(
    registry: Registry, entry: PluginConfig, where: tuple[Any, ...], problems: list[tuple[str, str]]
) -> None:
    try:
        cls = registry.get(entry.type)
    except UnknownPluginError as e:
        problems.append((_key_path(where + ("type",)), str(e)))
        return
    try:
        cls.Options.model_validate(entry.options)
    except ValidationError as e:
        problems.extend(_problems(e, where))


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
    """Validate already-parsed YAML data (also used by tests and by config reload).

    ``base_dir`` is where relative example paths are looked up (the config file's directory; default: here).
    """
    from streamdetect.sinks import SINKS
    from streamdetect.sources import SOURCES

    if not isinstance(data, dict):
        raise ConfigError(source, [("", f"expected a mapping of keys at the top level, found {type(data).__name__}")])
    if (why := _too_big(data)) is not None:
        raise ConfigError(source, [("", why)])
    try:
        config = Config.model_validate(data, context={"base_dir": str(base_dir) if base_dir else None})
    except ValidationError as e:
        raise ConfigError(source, _problems(e)) from None
    problems = _scoring_problems(config)
    for i, sink in enumerate(config.sinks):
        _validate_plugin(SINKS, sink, ("sinks", i), problems)
    if config.source is not None:
        _validate_plugin(SOURCES, config.source, ("source",), problems)
    for i, entry in enumerate(config.sources):
        _validate_plugin(SOURCES, entry, ("sources", i), problems)
    known = [e.label for e in config.events] + ([config.novelty.label] if config.novelty.enabled else [])
    for i, sink in enumerate(config.sinks):
        labels = sink.options.get("labels")
        for label in labels if isinstance(labels, list) else []:
            if label not in known:
                problems.append((f"sinks[{i}].labels", f"{label!r} is not an event label ({', '.join(known)})"))
    entries = [(f"sources[{i}]", e) for i, e in enumerate(config.sources)] + (
        [("source", config.source)] if config.source is not None else [])
    for where, entry in entries:
        for label in entry.events or []:
            if label not in known[: len(config.events)]:
                problems.append((f"{where}.events", f"{label!r} is not an event label "
                                                    f"({', '.join(e.label for e in config.events)})"))
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(path), [("", f"cannot read the file ({e.strerror})")]) from None
    except UnicodeDecodeError as e:
        raise ConfigError(str(path), [("", f"not UTF-8 text (byte {e.start}): is this the config file?")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(str(path), [("", f"not valid YAML: {where}{getattr(e, 'problem', e)}")]) from None
    except RecursionError:
        raise ConfigError(str(path), [("", f"not valid YAML: nested too deeply (over {MAX_CONFIG_DEPTH} levels "
                                           "are refused)")]) from None
    return parse_config(data, str(path), base_dir=path.parent)
