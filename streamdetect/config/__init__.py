"""The config: one module per section, and the loader.

``from streamdetect.config import ...`` is the import path plugins and tools use; it stays as it was.
"""

from streamdetect.config.base import Strict
from streamdetect.config.daemon import ControlConfig, EmbeddingLogConfig, MetricsConfig
from streamdetect.config.events import EventConfig
from streamdetect.config.loader import (
    MAX_CONFIG_DEPTH,
    MAX_CONFIG_NODES,
    MAX_FOUND_CHARS,
    ConfigError,
    load_config,
    parse_config,
)
from streamdetect.config.plugins import (
    PluginConfig,
    PluginOptions,
    SinkConfig,
    SinkOptions,
    SourceConfig,
    SourceOptions,
)
from streamdetect.config.root import Config
from streamdetect.config.runtime import GateConfig, RuntimeConfig, WindowConfig
from streamdetect.config.scoring import NoveltyConfig, ScoringConfig, VocabularyConfig
from streamdetect.config.triton import TritonConfig
from streamdetect.config.web import WebConfig

__all__ = ['Strict', 'WindowConfig', 'RuntimeConfig', 'TritonConfig', 'GateConfig', 'MetricsConfig', 'ControlConfig', 'EmbeddingLogConfig', 'EventConfig', 'ScoringConfig', 'VocabularyConfig', 'NoveltyConfig', 'WebConfig', 'PluginConfig', 'PluginOptions', 'SinkConfig', 'SinkOptions', 'SourceConfig', 'SourceOptions', 'Config', 'ConfigError', 'MAX_CONFIG_NODES', 'MAX_CONFIG_DEPTH', 'MAX_FOUND_CHARS', 'parse_config', 'load_config']
