"""The exported CLAP text tower: prompts -> embeddings, for the prompt bank."""

from __future__ import annotations

import numpy as np

from streamdetect.embed.encoder.base import RuntimeOptions
from streamdetect.embed.encoder.onnx import open_session
from streamdetect.model.manifest import TEXT_ENCODER, TOKENIZER, ModelBundle


class TextEncoder:
    """Prompts -> L2-normalised embeddings via the exported text tower and the checkpoint's fast tokenizer."""

    def __init__(self, bundle: ModelBundle, options: RuntimeOptions | None = None):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(bundle.path(TOKENIZER)))
        text = bundle.manifest.get("text", {})
        self.tokenizer.enable_truncation(bundle.text_max_length)
        self.tokenizer.enable_padding(pad_id=int(text.get("pad_id", 1)), pad_token=text.get("pad_token", "<pad>"))
        self.session = open_session(bundle.path(TEXT_ENCODER), options or RuntimeOptions())
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        return self.session.run([self.output_name], {k: feeds[k] for k in self.input_names})[0]
