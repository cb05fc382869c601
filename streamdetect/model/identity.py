"""What identifies an audio encoder served elsewhere: the sha256 of its ONNX file and of the front-end parameters.

A server that runs another checkpoint (or the same one behind different log-mel settings) answers with
embeddings of the right shape that mean something else: scores against this station's prompts would be quietly
wrong. So the model repository carries these digests as model parameters, and a station compares them with its
own export before it sends a window (``streamdetect.embed.encoder.triton``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from streamdetect.model.manifest import AUDIO_ENCODER, AUDIO_ENCODER_FP16, ModelBundle

ONNX_SHA256 = "streamdetect_onnx_sha256"
FRONTEND_SHA256 = "streamdetect_frontend_sha256"
EMBEDDING_DIM = "streamdetect_embedding_dim"
PRECISION = "streamdetect_precision"
SOURCE_MODEL = "streamdetect_source_model"
SERVABLE = {AUDIO_ENCODER: "fp32", AUDIO_ENCODER_FP16: "fp16"}  # files a server runs with fp32 inputs/outputs


def frontend_sha256(frontend: dict) -> str:
    """The digest of the manifest's front-end parameters, independent of key order and number formatting."""
    canonical = {k: float(v) if isinstance(v, int | float) else v for k, v in frontend.items()}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ModelIdentity:
    onnx_sha256: str
    frontend_sha256: str
    embedding_dim: int
    precision: str
    source_model: str = ""

    @classmethod
    def of(cls, bundle: ModelBundle, file: str) -> ModelIdentity:
        return cls(bundle.manifest["files"][file], frontend_sha256(bundle.manifest["frontend"]),
                   bundle.embedding_dim, SERVABLE[file], str(bundle.manifest.get("source", {}).get("model", "")))

    def parameters(self) -> dict[str, str]:
        """As Triton model parameters (string values)."""
        return {ONNX_SHA256: self.onnx_sha256, FRONTEND_SHA256: self.frontend_sha256,
                EMBEDDING_DIM: str(self.embedding_dim), PRECISION: self.precision, SOURCE_MODEL: self.source_model}


def served_file(bundle: ModelBundle, parameters: dict[str, str]) -> str:
    """Which of this export's files a server's parameters identify, or a ``ValueError`` saying what differs."""
    if ONNX_SHA256 not in parameters or FRONTEND_SHA256 not in parameters:
        raise ValueError(f"it carries no {ONNX_SHA256}/{FRONTEND_SHA256} parameters (not a model repository "
                         "written by `streamdetect export --triton-repo`)")
    ours = frontend_sha256(bundle.manifest["frontend"])
    if parameters[FRONTEND_SHA256] != ours:
        raise ValueError(f"its front-end parameters differ (sha256 {parameters[FRONTEND_SHA256][:12]}..., this "
                         f"station's {ours[:12]}...)")
    files = bundle.manifest["files"]
    for name in SERVABLE:
        if files.get(name) == parameters[ONNX_SHA256]:
            return name
    source = parameters.get(SOURCE_MODEL) or "another export"
    raise ValueError(f"it serves a different audio encoder (ONNX sha256 {parameters[ONNX_SHA256][:12]}..., from "
                     f"{source}) than this station's {bundle.directory} (sha256 {files[AUDIO_ENCODER][:12]}...)")
