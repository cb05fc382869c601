"""The exported model directory and its ``manifest.json``: what was exported, from where, and file hashes.

Run-time code only reads; ``streamdetect.export.convert`` writes. Files are checked against their sha256 when first
used, so a tampered or half-copied model is refused instead of giving quietly wrong scores.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streamdetect.util.files import atomic_write

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
DEFAULT_MODEL_ID = "laion/clap-htsat-unfused"
DEFAULT_MODEL_DIR = Path("models/clap-htsat-unfused")  # what configs/*.yaml read as `model:`
AUDIO_ENCODER = "audio_encoder.onnx"
AUDIO_ENCODER_INT8 = "audio_encoder.int8.onnx"
# static (calibrated) QDQ int8: fixed activation scales, so a window's embedding never depends on its batch
AUDIO_ENCODER_INT8_STATIC = "audio_encoder.int8_static.onnx"
AUDIO_ENCODER_FP16 = "audio_encoder.fp16.onnx"
# bf16 runs on OpenVINO from its own IR with fp16-stored weights: compiling it peaks 110 MB lower than the fp32
# ONNX graph. Exports made before that IR existed name audio_encoder.onnx as their bf16 file, which still runs.
AUDIO_ENCODER_OPENVINO = "audio_encoder.openvino.xml"
AUDIO_ENCODER_OPENVINO_WEIGHTS = "audio_encoder.openvino.bin"
REDUCED_PRECISIONS = {"int8": AUDIO_ENCODER_INT8, "int8_static": AUDIO_ENCODER_INT8_STATIC, "fp16": AUDIO_ENCODER_FP16, "bf16": AUDIO_ENCODER_OPENVINO}
AUDIO_INPUT = "input_features"  # the audio encoder's one input: (batch, 1, frames, mels) log-mel dB
TEXT_ENCODER = "text_encoder.onnx"
# The text tower's weights (479 MiB at full size) in a file of their own, which onnxruntime maps instead of
# parsing: loading the one-file graph peaked at 706 MB RSS, this at 411 MB. Older exports have no such file.
TEXT_ENCODER_WEIGHTS = "text_encoder.onnx.data"
COMPANION_FILES = {AUDIO_ENCODER_OPENVINO: (AUDIO_ENCODER_OPENVINO_WEIGHTS,),  # checked along with the file
                   TEXT_ENCODER: (TEXT_ENCODER_WEIGHTS,)}
TOKENIZER = "tokenizer.json"
# Which files were hashed and found whole, with what stat() said then: hashing the full-size files took as long as
# opening their sessions (int8: 1.3 s against 2.0 s on a busy 2-core machine), on every start. A file that is
# copied, rewritten or touched gets a new ctime, which no user-space call can set back, and is hashed again.
VERIFIED_NAME = ".verified.json"


@dataclass(frozen=True)
class FrontendParams:
    """Log-mel parameters, as stored in the manifest under ``frontend``."""

    sample_rate: int = 48_000
    n_fft: int = 1024
    hop_length: int = 480
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 14_000.0
    max_length_s: float = 10.0
    padding: str = "repeatpad"

    @property
    def max_samples(self) -> int:
        return int(round(self.max_length_s * self.sample_rate))

    @property
    def n_frames(self) -> int:
        return self.max_samples // self.hop_length + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FrontendParams:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown front-end parameters {sorted(unknown)}")
        return cls(**data)


class ModelError(RuntimeError):
    """A model directory that is missing, incomplete or does not match its manifest."""


def default_model_dir(model: str = DEFAULT_MODEL_ID) -> Path:
    """Where ``streamdetect export`` writes without ``--out``: the folder the ready-made configs read for the
    default model and for a local checkpoint folder (so ``run`` needs no ``--model`` after an offline export,
    whatever the folder is called), ``models/<name>`` for any other hub id."""
    if model == DEFAULT_MODEL_ID or Path(model).expanduser().is_dir():
        return DEFAULT_MODEL_DIR
    return Path("models") / Path(model.rstrip("/")).name


def export_command(model_dir: Path, model: str = DEFAULT_MODEL_ID, local: bool = False) -> str:
    """The export that writes ``model_dir`` (``local``: ``model`` names a checkpoint folder)."""
    default = DEFAULT_MODEL_DIR if local else default_model_dir(model)
    out = "" if Path(model_dir) == default else f" --out {model_dir}"
    return f"streamdetect export --model {model}{out}"


def is_checkpoint_folder(directory: Path) -> bool:
    """A Hugging Face checkpoint (what export reads), as opposed to an exported model (what run reads)."""
    return (directory / "config.json").is_file() and not (directory / MANIFEST_NAME).is_file()


def sha256_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ModelBundle:
    """An exported model directory whose manifest was read and checked for shape."""

    directory: Path
    manifest: dict[str, Any]
    _verified: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, directory: str | Path) -> ModelBundle:
        directory = Path(directory)
        manifest_path = directory / MANIFEST_NAME
        if not directory.is_dir():
            raise ModelError(
                f"model directory {directory} does not exist. Export a CLAP checkpoint into it first:\n"
                f"  {export_command(directory)}\n"
                f"or, without internet, from a checkpoint folder you have:\n"
                f"  {export_command(directory, 'CHECKPOINT_DIR', local=True)}"
            )
        if is_checkpoint_folder(directory):
            raise ModelError(
                f"{directory} is a Hugging Face checkpoint, not an exported streamdetect model. Export from it "
                f"first (no internet needed):\n  streamdetect export --model {directory}\n"
                f"then run with --model {DEFAULT_MODEL_DIR}, or without --model where the config says "
                f"`model: {DEFAULT_MODEL_DIR}`"
            )
        if not manifest_path.is_file():
            raise ModelError(
                f"{directory} has no {MANIFEST_NAME}: it is not an exported streamdetect model (or the export did "
                f"not finish). Export again:\n  {export_command(directory)}"
            )
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ModelError(f"{manifest_path}: unreadable manifest ({e}); export again") from e
        for key in ("format_version", "files", "frontend", "embedding_dim", "sample_rate"):
            if key not in manifest:
                raise ModelError(f"{manifest_path}: key {key!r} missing; export again")
        if manifest["format_version"] != MANIFEST_VERSION:
            raise ModelError(
                f"{manifest_path}: format_version {manifest['format_version']} is not the supported "
                f"{MANIFEST_VERSION}; export again with this streamdetect version"
            )
        return cls(directory=directory, manifest=manifest)

    @property
    def frontend_params(self) -> FrontendParams:
        return FrontendParams.from_dict(self.manifest["frontend"])

    @property
    def random_weights(self) -> bool:
        """Exported from a checkpoint built with random weights: a demonstration of the tool, not a detector."""
        return bool(self.manifest.get("source", {}).get("random_weights", False))

    @property
    def embedding_dim(self) -> int:
        return int(self.manifest["embedding_dim"])

    @property
    def sample_rate(self) -> int:
        return int(self.manifest["sample_rate"])

    @property
    def logit_scale(self) -> float:
        """The model's learned temperature for audio-to-text logits (for softmax over prompts)."""
        return float(self.manifest.get("logit_scale", {}).get("audio", 1.0))

    @property
    def text_max_length(self) -> int:
        return int(self.manifest.get("text", {}).get("max_length", 77))

    @property
    def text_key(self) -> str:
        """Identifies the text side of this model for the prompt-embedding cache."""
        files = self.manifest["files"]
        weights = f":{files[TEXT_ENCODER_WEIGHTS]}" if TEXT_ENCODER_WEIGHTS in files else ""  # older exports: none
        return hashlib.sha256(f"{files[TEXT_ENCODER]}:{files[TOKENIZER]}{weights}".encode()).hexdigest()

    def shipped(self, precision: str) -> bool:
        return self.manifest.get("precisions", {}).get(precision, {}).get("status") == "shipped"

    def audio_encoder_file(self, precision: str, on_gpu: bool) -> str:
        """The encoder file for a requested precision ('auto': the fastest one the export shipped for this
        kind of device: int8 on a CPU, fp16 on a GPU, else fp32)."""
        if precision == "auto":
            precision = "fp16" if on_gpu else "int8"
            return REDUCED_PRECISIONS[precision] if self.shipped(precision) else AUDIO_ENCODER
        if precision == "fp32":
            return AUDIO_ENCODER
        if not self.shipped(precision):
            info = self.manifest.get("precisions", {}).get(precision, {})
            why = (f"it was refused at export (min cosine vs fp32 {info['cosine_min_vs_fp32']:.5f} < "
                   f"{info['required']})" if info else f"this export predates {precision} support; export again")
            raise ModelError(f"runtime.precision is {precision} but {self.directory} has no {precision} encoder: "
                             f"{why}. Use precision fp32 or auto.")
        return self.manifest["precisions"][precision].get("file", REDUCED_PRECISIONS[precision])

    def file_digest(self, name: str) -> str | None:
        """The manifest's sha256 of an exported file, folded with its companions' (an OpenVINO .xml is the same
        for every checkpoint of one architecture; its .bin holds the weights). Keys caches of embeddings."""
        files = self.manifest["files"]
        if name not in files:
            return None
        companions = COMPANION_FILES.get(name, ())
        if not companions:
            return files[name]
        return hashlib.sha256(":".join(files.get(n, "") for n in (name, *companions)).encode()).hexdigest()

    def path(self, name: str) -> Path:
        """Path of an exported file, after checking it against the manifest's sha256 (once per process)."""
        expected = self.manifest["files"].get(name)
        path = self.directory / name
        if expected is None:
            raise ModelError(f"{self.directory / MANIFEST_NAME} lists no file {name!r}; export again")
        if name in self._verified:
            return path
        if not path.is_file():
            raise ModelError(f"{path} is missing; export again:\n  {export_command(self.directory)}")
        stamps = self._stamps()
        if stamps.get(name) == [expected, *_stat_key(path)]:
            self._verified.add(name)
            return self._companions(name, path)
        actual = sha256_file(path)
        if actual != expected:
            raise ModelError(
                f"{path} does not match its manifest (sha256 {actual[:16]}..., manifest says {expected[:16]}...): "
                f"the file was changed or only partly copied. Export again:\n  {export_command(self.directory)}"
            )
        self._verified.add(name)
        stamps[name] = [expected, *_stat_key(path)]
        try:
            atomic_write(self.directory / VERIFIED_NAME, json.dumps(stamps, indent=1) + "\n", fsync=False)
        except OSError:  # a read-only model folder: files are hashed at every start, as before
            pass
        return self._companions(name, path)

    def _companions(self, name: str, path: Path) -> Path:
        for companion in COMPANION_FILES.get(name, ()):
            if companion in self.manifest["files"] or name != TEXT_ENCODER:  # older one-file text encoders
                self.path(companion)
        return path

    def _stamps(self) -> dict[str, list]:
        try:
            stamps = json.loads((self.directory / VERIFIED_NAME).read_text())
        except (OSError, ValueError):
            return {}
        return stamps if isinstance(stamps, dict) else {}


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
