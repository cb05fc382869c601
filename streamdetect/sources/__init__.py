"""Audio sources, chosen by ``type`` in the config; third parties register more under ``streamdetect.sources``."""

from streamdetect.plugins import Registry

SOURCES = Registry(
    kind="source",
    entry_point_group="streamdetect.sources",
    builtins={
        "ffmpeg": "streamdetect.sources.ffmpeg:FfmpegSource",
        "file": "streamdetect.sources.file:FileSource",
        "microphone": "streamdetect.sources.microphone:MicrophoneSource",
    },
)
