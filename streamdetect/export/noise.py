"""What torch, transformers, huggingface_hub and onnxruntime print during an export that users read as errors.

Each is filtered here, at its source, and only while an export runs:

- torch's ONNX exporter: ``torchvision is not installed. Skipping torchvision::nms`` (torchvision's detection
  ops; CLAP uses none), a ``FutureWarning`` about ``LeafSpec`` from torch's own pytree code, and a
  ``UserWarning`` that two dynamic axes share a name (they are the same batch axis on purpose);
- onnxruntime's quantisers: ``Please consider to run pre-processing before quantization`` (dynamic) and
  ``Please consider pre-processing before quantization`` (static), about its shape-inference pre-pass; the int8
  files are checked against fp32 on real audio instead, and refused if they drift;
- transformers' and huggingface_hub's progress bars (export prints its own steps);
- huggingface_hub's retries: it logs every failed try twice (through its own handler and ours) and in two lines
  (the error, then ``Retrying in Ns``); here each retry is one line that says both.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

QUANTIZER_HINT = "pre-processing before quantization"  # both quantisers' wordings end so


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


class HubRetryLines(logging.Filter):
    """Folds huggingface_hub's "'<error>' thrown while requesting ..." into the "Retrying in Ns" line after it,
    so a retry is one line; the error of the last try is left to the exception export raises."""

    def __init__(self) -> None:
        super().__init__()
        self.last_error = ""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "thrown while requesting" in message:
            self.last_error = message
            return False
        if message.startswith("Retrying in"):
            record.msg, record.args = f"{self.last_error}; {message[0].lower()}{message[1:]}", ()
        return True


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    hub = logging.getLogger("huggingface_hub")
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    root = logging.getLogger()
    hub_handlers, hub_level, registration_level = list(hub.handlers), hub.level, registration.level
    hint, retries = _DropMessage(QUANTIZER_HINT), HubRetryLines()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*axis name.*will not be used.*", category=UserWarning)
        for handler in hub_handlers:  # its records still reach our handler on the root logger, once
            hub.removeHandler(handler)
        hub.addFilter(retries)
        for name in ("huggingface_hub.utils._http", "huggingface_hub.file_download"):
            logging.getLogger(name).addFilter(retries)
        registration.setLevel(logging.ERROR)
        root.addFilter(hint)  # onnxruntime's quantiser logs through the root logger itself
        _progress_bars(enabled=False)
        try:
            yield
        finally:
            _progress_bars(enabled=True)
            root.removeFilter(hint)
            registration.setLevel(registration_level)
            for name in ("huggingface_hub", "huggingface_hub.utils._http", "huggingface_hub.file_download"):
                logging.getLogger(name).removeFilter(retries)
            for handler in hub_handlers:
                hub.addHandler(handler)
            hub.setLevel(hub_level)


def _progress_bars(enabled: bool) -> None:
    try:
        import huggingface_hub.utils as hub_utils
        from transformers.utils import logging as hf_logging
    except ImportError:  # export reports the missing extra itself
        return
    if enabled:
        hf_logging.enable_progress_bar()
        hub_utils.enable_progress_bars()
    else:
        hf_logging.disable_progress_bar()
        hub_utils.disable_progress_bars()
