"""A detector for a config: the encoder, the prompt bank and the reload hook the config asks for.

The one place the pipeline's collaborators are built from a config, for the daemon, the analysis verbs and the
tools alike; tests hand ``Detector`` their own encoder or bank through the same keywords.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamdetect.config import Config
from streamdetect.embed.encoder import open_audio_encoder
from streamdetect.embed.encoder.base import AudioEncoder, RemoteEncoderObserver, RuntimeOptions
from streamdetect.model.manifest import ModelBundle
from streamdetect.pipeline.detector import Detector
from streamdetect.pipeline.observers import DetectorObserver, Outputs
from streamdetect.pipeline.results import WindowListener
from streamdetect.prompts.assemble import bank_for_config
from streamdetect.prompts.bank import PromptBank
from streamdetect.schedule import Clock, utc_now


def build_detector(config: Config, bundle: ModelBundle, outputs: Outputs, *, encoder: AudioEncoder | None = None,
                   bank: PromptBank | None = None, observer: DetectorObserver | None = None,
                   listeners: Sequence[WindowListener] = (),
                   encoder_observer: RemoteEncoderObserver | None = None, clock: Clock = utc_now) -> Detector:
    """A detector running the configured encoder (or ``encoder``) over the config's prompt bank (or ``bank``),
    handing each window's result to ``listeners``; ``encoder_observer`` counts what a remote encoder does.

    A config reload rebuilds the bank with the same encoder, so audio examples are embedded by what runs.
    """
    runtime = RuntimeOptions.from_config(config.runtime)
    if bank is None and encoder is None and not any(e.examples for e in config.events):
        # Text first: the text encoder is loaded, used and released before the audio encoder is opened, so a
        # first start that embeds a vocabulary never holds both (full-size model: 957 MB peak with both).
        bank = bank_for_config(bundle, config, runtime)
    encoder = encoder or open_audio_encoder(bundle, runtime, encoder_observer)

    def bank_for(new: Config) -> PromptBank:
        return bank_for_config(bundle, new, runtime, encoder)

    return Detector(config, bundle, outputs, encoder, bank or bank_for(config), bank_for=bank_for,
                    observer=observer, listeners=listeners, clock=clock)
