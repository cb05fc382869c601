"""Source and sink entries: a ``type`` chosen from the registries and that plugin's own, typed options.

An entry is a union discriminated by ``type``, as Frigate types its detectors, but built from the registry
lazily: the ``type`` names the plugin class (``streamdetect.plugins.SINKS`` / ``SOURCES``), and that class's
``Options`` model validates the entry's other keys. Only the plugins a config names are imported, and a
third-party entry point is one more member of the union without any change here. The validated ``Options``
object is what every reader gets (``entry.options``, ``Config.sink_options``): defaults live in that model only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from streamdetect.config.base import Strict
from streamdetect.config.runtime import GateConfig
from streamdetect.config.station import SCHEDULE_DESCRIPTION, check_periods
from streamdetect.plugins import SINKS, SOURCES, Registry, UnknownPluginError

UNKNOWN_PLUGIN = "unknown_plugin"  # the error type of a ``type`` no registry knows (its message lists the known)


class PluginOptions(BaseModel):
    """A plugin's own keys; each plugin class names its subclass as ``Options``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


OptionsModel = type[PluginOptions]  # an alias: inside an entry, ``type`` names the field


class SinkOptions(PluginOptions):
    """The keys every sink has; ``streamdetect.sinks.base`` re-exports it for plugins."""

    labels: list[str] | None = Field(None, description="only records of these event labels (default: all)")
    queue_size: int = Field(1000, ge=1, le=1_000_000, description="records waiting for this sink before "
                                                                   "new ones are dropped (and counted)")


class SourceOptions(PluginOptions):
    """The keys every source has (none yet); ``streamdetect.sources.base`` re-exports it for plugins."""


def _again(error: Any) -> InitErrorDetails:
    """A reported error as it can be raised again, with its type, message, place and input unchanged."""
    return {"type": PydanticCustomError(error["type"], error["msg"]), "loc": error["loc"], "input": error["input"]}


class PluginConfig(Strict):
    """A source or sink entry: ``type`` picks the plugin, the other keys are its options (the base of
    ``SinkConfig`` and ``SourceConfig``; used alone, it is a sink entry)."""

    registry: ClassVar[Registry] = SINKS
    options_base: ClassVar[OptionsModel] = SinkOptions  # what every plugin's ``Options`` derives from
    type: str = Field(min_length=1, description="which plugin: a built-in (listed below) or an entry point's name")
    name: str | None = Field(None, min_length=1, max_length=100, description="stream name in records and topics")
    _options: PluginOptions = PrivateAttr()

    @property
    def options(self) -> PluginOptions:
        """The plugin's validated ``Options`` (the class the registry gives for ``type``)."""
        return self._options

    @model_validator(mode="wrap")
    @classmethod
    def _typed_options(cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        """The entry's own keys go to the fields, the others to the plugin's ``Options``; the mistakes of both
        are reported together, at their key paths in the file."""
        if not isinstance(data, dict):
            return handler(data)
        errors: list[Any] = []
        entry = None
        try:
            entry = handler({k: v for k, v in data.items() if k in cls.model_fields})
        except ValidationError as e:
            errors += e.errors()
        kind, options = data.get("type"), None
        if isinstance(kind, str) and kind:  # else ``type`` itself is reported, and its options cannot be checked
            try:
                model = cls.registry.get(kind).Options
                if isinstance(model, type) and issubclass(model, cls.options_base):
                    options = model.model_validate({k: v for k, v in data.items() if k not in cls.model_fields},
                                                   context=info.context)
                else:  # a third party's mistake, reported like the config's
                    errors.append({"type": "plugin_options", "loc": ("type",), "input": kind, "msg":
                                   f"the {kind} plugin's Options must derive from {cls.options_base.__name__}"})
            except UnknownPluginError as e:
                errors.append({"type": UNKNOWN_PLUGIN, "msg": str(e), "loc": ("type",), "input": kind})
            except ValidationError as e:
                errors += e.errors()
        if errors or entry is None or options is None:
            raise ValidationError.from_exception_data(cls.__name__, [_again(e) for e in errors])
        entry._options = options
        return entry

    @model_serializer(mode="wrap")
    def _flat(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        """Back to the file's shape: the options beside ``type``, as given (their defaults left out), so a
        dumped config parses again to the same config."""
        return {**handler(self), **self._options.model_dump(mode=info.mode, exclude_unset=True,
                                                            exclude_none=info.exclude_none)}

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield from super().__repr_args__()
        yield "options", self._options


class SinkConfig(PluginConfig):
    """A sink entry: ``type`` picks the sink, the other keys are its options (listed with each type below)."""

    registry: ClassVar[Registry] = SINKS
    options_base: ClassVar[OptionsModel] = SinkOptions

    @property
    def options(self) -> SinkOptions:
        assert isinstance(self._options, SinkOptions)
        return self._options


class SourceConfig(PluginConfig):
    """A source entry: the plugin's options plus settings the detector applies to that stream."""

    registry: ClassVar[Registry] = SOURCES
    options_base: ClassVar[OptionsModel] = SourceOptions
    gate: GateConfig | None = Field(None, description="this stream's energy gate (default: the top-level gate)")
    events: list[str] | None = Field(None, min_length=1, description="labels of the events this stream listens "
                                     "for (default: all); streams can share events or have their own")
    schedule: list[str] | None = Field(None, max_length=50, description="when the stream is recorded: "
                                       + SCHEDULE_DESCRIPTION + "; outside it its audio is discarded unheard")

    _periods_parse = field_validator("schedule")(check_periods)

    @property
    def options(self) -> SourceOptions:
        assert isinstance(self._options, SourceOptions)
        return self._options
