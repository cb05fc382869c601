"""streamdetect: real-time sound-event detection from plain-text prompts with CLAP."""

__version__ = "0.1.0"
