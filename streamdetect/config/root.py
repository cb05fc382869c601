"""The whole config: every section, and the checks that span sections.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from pydantic import (
    Field,
    model_validator,
)

from streamdetect.config.base import Strict
from streamdetect.config.daemon import ControlConfig, EmbeddingLogConfig, MetricsConfig
from streamdetect.config.events import EventConfig
from streamdetect.config.plugins import PluginOptions, SinkConfig, SourceConfig
from streamdetect.config.runtime import GateConfig, RuntimeConfig, WindowConfig
from streamdetect.config.scoring import NoveltyConfig, ScoringConfig, VocabularyConfig
from streamdetect.config.station import PrivacyConfig, SiteConfig, SummaryConfig
from streamdetect.config.web import WebConfig
from streamdetect.schedule import Period

OptionsT = TypeVar("OptionsT", bound=PluginOptions)


def same_names(names: Sequence[str | None], where: str) -> str | None:
    """The one rule that stream names are unique, as a message naming the first two entries that share a name.

    Stream names key records, metrics, topics and clips: two streams of one name would mix them up (two file
    sources named after files with the same basename each got the other's clips). Config validation applies it
    to the names written in the file; ``run`` applies it again to the names the sources took, since a source
    without ``name:`` is named after its file, URL or device only once it is opened."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name is None:
            continue
        if name in seen:
            return (f"source names must be unique: {where}[{seen[name]}] and {where}[{i}] are both named {name!r}; "
                    "give each its own `name:`")
        seen[name] = i
    return None


class Config(Strict):
    model: str | None = Field(None, description="directory written by `streamdetect export`")
    prompt_cache: str | None = Field(None, description="directory for cached prompt embeddings")
    windows: WindowConfig = Field(WindowConfig(), description="how audio is cut into windows")
    runtime: RuntimeConfig = Field(RuntimeConfig(), description="where and at which precision the encoder runs")
    gate: GateConfig = Field(GateConfig(), description="energy gate: quiet windows skip the encoder")
    metrics: MetricsConfig = Field(MetricsConfig(), description="Prometheus /metrics and /healthz (off by default)")
    control: ControlConfig = Field(ControlConfig(), description="HTTP API to read and replace the events while running (off by default)")
    embedding_log: EmbeddingLogConfig = Field(EmbeddingLogConfig(), description="every window's embedding kept for `search --log` (off by default)")
    web: WebConfig = Field(WebConfig(), description="the web dashboard (off by default; loopback unless a login "
                           "is configured)")
    source: SourceConfig | None = Field(None, description="one stream; `--input` / `--device` override it")
    sources: list[SourceConfig] = Field(default_factory=list, description="several streams in one detector")
    events: list[EventConfig] = Field(min_length=1, description="what to listen for")
    scoring: ScoringConfig = Field(ScoringConfig(), description="cosine scores, or softmax against background prompts")
    vocabulary: VocabularyConfig = Field(VocabularyConfig(), description="names for `sounds_like` in every record")
    novelty: NoveltyConfig = Field(NoveltyConfig(), description="alerts for sounds unlike the site and every prompt")
    site: SiteConfig = Field(SiteConfig(), description="where the station is: name, time zone, position (for "
                             "schedules and sun times)")
    privacy: PrivacyConfig = Field(PrivacyConfig(), description="speech filter: windows with speech are not stored")
    summary: SummaryConfig = Field(SummaryConfig(), description="a scheduled summary of the day through the sinks")
    sinks: list[SinkConfig] = Field(default_factory=lambda: [SinkConfig.model_validate({"type": "jsonl", "path": "-"})],
                                      description="where records go, each in its own thread")

    @property
    def all_sources(self) -> list[SourceConfig]:
        return self.sources or ([self.source] if self.source is not None else [])

    def sink_options(self, kind: type[OptionsT]) -> list[OptionsT]:
        """The options of every sink whose ``Options`` are ``kind`` (say ``SqliteOptions``), in config order:
        how the dashboard, the summary and the CLI find the event store and the clips folder, typed and with the
        sink's own defaults."""
        return [s.options for s in self.sinks if isinstance(s.options, kind)]

    @model_validator(mode="after")
    def _one_way_to_name_sources(self) -> Config:
        if self.source is not None and self.sources:
            raise ValueError("give either `source` or `sources`, not both")
        problem = same_names([s.name for s in self.sources], "sources")
        if problem is not None:
            raise ValueError(problem)
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

    @model_validator(mode="after")
    def _sun_needs_coordinates(self) -> Config:
        where = [(f"events[{i}].schedule", e.schedule) for i, e in enumerate(self.events)] + [
            ("sources[].schedule", s.schedule) for s in self.all_sources] + [
            ("summary.at", [f"{self.summary.at}..{self.summary.at}"] if self.summary.at else None)]
        for key, periods in where:
            if self.site.latitude is None and any(Period.parse(p).uses_sun for p in periods or []):
                raise ValueError(f"{key} uses sun times: set site.latitude and site.longitude (and site.timezone)")
        return self
