"""Offline step: a Hugging Face CLAP checkpoint -> ONNX encoders + tokenizer + manifest.

This is the only module that imports torch/transformers (``pip install 'streamdetect[export]'``). The export
checks itself before it succeeds: embeddings from the exported files, run through the same run-time code the
detector uses (numpy front end, onnxruntime, ``tokenizers``), must match PyTorch with cosine >= 0.9999 on
generated audio and on a few prompts, and the figures are printed.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import streamdetect
from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.export.offline import has_random_weights
from streamdetect.export.precisions import (
    PARITY_BOUNDS,
    REDUCED_FILES,
    cosine_rows,
    reduce_precisions,
    verification_audio,
)
from streamdetect.model.manifest import (
    AUDIO_ENCODER,
    AUDIO_INPUT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    TEXT_ENCODER,
    TEXT_ENCODER_WEIGHTS,
    TOKENIZER,
    FrontendParams,
    ModelBundle,
    sha256_file,
)

MIN_COSINE = 0.9999
VERIFY_PROMPTS = (
    "birdsong",
    "a dog barking in the distance",
    "glass breaking",
    "the beeping of a smoke alarm",
    "wind noise on a microphone, with rain falling on a metal roof and traffic far away",
)


class ExportError(RuntimeError):
    """The checkpoint cannot be exported, or the exported files do not reproduce it."""


def _import_export_deps() -> tuple[Any, Any, Any, Any, Any]:
    """torch, transformers and the three classes export uses (Any to the type checker: pyproject reads torch and
    transformers as untyped, they are large)."""
    try:
        import torch
        import transformers
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel
    except ImportError as e:
        raise ExportError(
            f"export needs torch and transformers ({e.name} is missing): pip install 'streamdetect[export]'"
        ) from e
    return torch, transformers, ClapModel, ClapFeatureExtractor, AutoTokenizer


@dataclass
class Verification:
    audio_cosine_min: float
    text_cosine_min: float
    audio_max_abs_diff: float
    text_max_abs_diff: float
    frontend_max_abs_db: float
    n_audio: int
    n_text: int


def _frontend_params(fe: Any, model_id: str) -> FrontendParams:
    if fe.truncation == "fusion":
        raise ExportError(
            f"{model_id} uses feature fusion (truncation='fusion'); streamdetect supports unfused CLAP checkpoints "
            "such as laion/clap-htsat-unfused or laion/larger_clap_general"
        )
    if fe.top_db is not None:
        raise ExportError(f"{model_id}: feature extractor top_db={fe.top_db} is not supported (expected None)")
    if fe.padding != "repeatpad":
        raise ExportError(f"{model_id}: feature extractor padding={fe.padding!r} is not supported (expected repeatpad)")
    return FrontendParams(
        sample_rate=int(fe.sampling_rate),
        n_fft=int(fe.fft_window_size),
        hop_length=int(fe.hop_length),
        n_mels=int(fe.feature_size),
        f_min=float(fe.frequency_min),
        f_max=float(fe.frequency_max),
        max_length_s=float(fe.max_length_s),
        padding=fe.padding,
    )


def _export_onnx(torch: Any, module: Any, args: tuple[Any, ...], path: Path, input_names: Sequence[str],
                 output_name: str, dynamic_shapes: dict[str, dict[int, Any]]) -> None:
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(input_names),
            output_names=[output_name],
            dynamic_shapes=dynamic_shapes,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def export_model(
    model: str,
    out: str | Path,
    revision: str | None = None,
    report: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
    force: bool = False,
) -> dict[str, Any]:
    """Export ``model`` (hub id or local directory) into ``out``; returns the manifest written. Library noise a
    user would read as errors is filtered meanwhile (``streamdetect.export.noise``)."""
    refuse_existing_export(Path(out), force)  # both before torch or transformers load: an answer in a second,
    refuse_missing_folder(model)  # not in ten
    from streamdetect.export.noise import quiet_export

    with quiet_export():
        return _export_model(model, out, revision, report, force)


def refuse_existing_export(out: Path, force: bool) -> None:
    if (out / MANIFEST_NAME).exists() and not force:
        raise ExportError(f"{out} already holds an exported model; pass --force to replace it")


def refuse_missing_folder(model: str) -> None:
    """A path (not a hub id) that names nothing on disk."""
    if not Path(model).expanduser().exists() and model.startswith(("/", "./", "../", "~")):
        raise ExportError(f"cannot load CLAP checkpoint {model!r}: no such directory")


def _load_checkpoint(model: str, revision: str | None, ClapModel: Any, ClapFeatureExtractor: Any,
                     AutoTokenizer: Any) -> tuple[Any, Any, Any]:
    """The checkpoint's model, preprocessing and tokenizer; a one-line error when it cannot be had."""
    kwargs = {"revision": revision} if revision else {}
    local = Path(model).expanduser()
    try:
        return (ClapModel.from_pretrained(str(local) if local.exists() else model, **kwargs).eval(),
                ClapFeatureExtractor.from_pretrained(str(local) if local.exists() else model, **kwargs),
                AutoTokenizer.from_pretrained(str(local) if local.exists() else model, **kwargs))
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if local.exists():
            raise ExportError(f"cannot load CLAP checkpoint folder {model}: {first}") from None
        raise ExportError(
            f"cannot load {model!r} from the Hugging Face hub ({first.rstrip('.')}). Without internet, export a "
            "checkpoint folder you have: streamdetect export --model DIR") from None


def _export_model(model: str, out: str | Path, revision: str | None, report: Callable[[str], None],
                  force: bool) -> dict[str, Any]:
    out = Path(out)
    torch, transformers, ClapModel, ClapFeatureExtractor, AutoTokenizer = _import_export_deps()
    import onnx
    import onnxruntime

    t_start = time.perf_counter()
    report(f"[1/7] loading {model}" + (f" @ {revision}" if revision else ""))
    clap, fe, tokenizer = _load_checkpoint(model, revision, ClapModel, ClapFeatureExtractor, AutoTokenizer)
    if clap.config.audio_config.enable_fusion:
        raise ExportError(f"{model} is a fused CLAP checkpoint; export an unfused one (laion/clap-htsat-unfused)")
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"{model} has no fast tokenizer (tokenizer.json); it cannot be used without transformers")
    params = _frontend_params(fe, model)

    module_base: Any = torch.nn.Module  # a class of the torch imported above

    class AudioTower(module_base):
        def __init__(self, clap: Any) -> None:
            super().__init__()
            self.clap = clap

        def forward(self, input_features: Any) -> Any:
            return self.clap.get_audio_features(input_features=input_features).pooler_output

    class TextTower(module_base):
        def __init__(self, clap: Any) -> None:
            super().__init__()
            self.clap = clap

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.clap.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        batch = torch.export.Dim("batch", min=1, max=4096)
        seq = torch.export.Dim("sequence", min=2, max=4096)
        report("[2/7] exporting the audio encoder to ONNX")
        feats = torch.zeros(2, 1, params.n_frames, params.n_mels)
        _export_onnx(torch, AudioTower(clap).eval(), (feats,), staging / AUDIO_ENCODER, [AUDIO_INPUT],
                     "audio_embedding", {AUDIO_INPUT: {0: batch}})
        report("[3/7] exporting the text encoder to ONNX")
        sample = tokenizer(list(VERIFY_PROMPTS[:2]), padding=True, return_tensors="pt")
        _export_onnx(torch, TextTower(clap).eval(), (sample["input_ids"], sample["attention_mask"]), staging / TEXT_ENCODER,
                     ["input_ids", "attention_mask"], "text_embedding",
                     {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}})
        _weights_apart(staging / TEXT_ENCODER, TEXT_ENCODER_WEIGHTS)
        tokenizer.backend_tokenizer.save(str(staging / TOKENIZER))

        text_cfg = clap.config.text_config
        max_length = min(int(tokenizer.model_max_length), int(text_cfg.max_position_embeddings) - 2)
        manifest: dict[str, Any] = {
            "format_version": MANIFEST_VERSION,
            "source": {
                "model": model,
                "revision": revision or getattr(clap.config, "_commit_hash", None),
                "local_directory": str(Path(model).expanduser().resolve()) if Path(model).expanduser().is_dir()
                else None,
                # True for checkpoints built with random weights (the tests' tiny CLAP, export --random-weights):
                # their scores mean nothing, and what is made with them (scan plots) says so.
                "random_weights": has_random_weights(Path(model).expanduser()),
            },
            "files": {name: sha256_file(staging / name)
                      for name in (AUDIO_ENCODER, TEXT_ENCODER, TEXT_ENCODER_WEIGHTS, TOKENIZER)},
            "sample_rate": params.sample_rate,
            "frontend": params.to_dict(),
            "embedding_dim": int(clap.config.projection_dim),
            "logit_scale": {"audio": clap.logit_scale_a.detach().exp().item(),
                            "text": clap.logit_scale_t.detach().exp().item()},
            "text": {"max_length": max_length, "pad_id": int(tokenizer.pad_token_id),
                     "pad_token": str(tokenizer.pad_token)},
            "inputs": {"audio": "input_features (batch, 1, frames, mels) float32 log-mel dB",
                       "text": "input_ids, attention_mask (batch, sequence) int64"},
            "export": {
                "streamdetect": streamdetect.__version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
                "opset": int(onnx.load(staging / AUDIO_ENCODER, load_external_data=False).opset_import[0].version),
                "python": platform.python_version(),
                "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")

        report("[4/7] verifying the exported files against PyTorch")
        check = verify_export(staging, clap, fe, tokenizer, torch)
        manifest["verification"] = check.__dict__
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        report(
            f"  audio: {check.n_audio} generated clips, min cosine ONNX vs PyTorch {check.audio_cosine_min:.8f}, "
            f"max |diff| {check.audio_max_abs_diff:.1e}\n"
            f"  text:  {check.n_text} prompts, min cosine ONNX vs PyTorch {check.text_cosine_min:.8f}, "
            f"max |diff| {check.text_max_abs_diff:.1e}\n"
            f"  front end: max |numpy - ClapFeatureExtractor| = {check.frontend_max_abs_db:.2e} dB"
        )
        if min(check.audio_cosine_min, check.text_cosine_min) < MIN_COSINE:
            raise ExportError(
                f"exported encoders do not reproduce PyTorch (min cosine audio {check.audio_cosine_min:.6f}, "
                f"text {check.text_cosine_min:.6f}, required {MIN_COSINE}); nothing was written to {out}"
            )
        manifest["precisions"] = {"fp32": {"file": AUDIO_ENCODER, "status": "shipped"}}
        reduce_precisions(staging, manifest, params, PARITY_BOUNDS, report)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        optional = list(REDUCED_FILES)
        names = [AUDIO_ENCODER, TEXT_ENCODER, TEXT_ENCODER_WEIGHTS, TOKENIZER] + [n for n in optional
                                                                                if n in manifest["files"]]
        if out.exists():
            for name in (*names, *optional, MANIFEST_NAME):
                (out / name).unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        for name in (*names, MANIFEST_NAME):  # manifest last: it marks completion
            shutil.move(str(staging / name), out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report(f"exported {model} to {out} in {time.perf_counter() - t_start:.1f} s")
    _time_for_auto(out, report)
    return manifest


def _time_for_auto(out: Path, report: Callable[[str], None]) -> None:
    """Time the engines here once, so the first `run` on this machine starts with the choice made (another
    machine, CPU or engine version times them again at its first start). In a fresh interpreter: torch's idle
    threads in this one would slow every candidate (2-3x measured on 2 cores)."""
    code = ("import sys\nfrom streamdetect.model.manifest import ModelBundle\n"
            "from streamdetect.embed.encoder import runtime_choice\n"
            "from streamdetect.embed.encoder.base import RuntimeOptions\n"
            "c = runtime_choice(ModelBundle.load(sys.argv[1]), RuntimeOptions(), say=False, retime=True)\n"
            "print(c.device, c.precision)\n")
    result = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    if result.returncode != 0:
        report(f"  could not time the engines for runtime.device auto ({result.stderr.strip().splitlines()[-1:]}); "
               "the first `run` does")
        return
    device, precision = result.stdout.split()
    if device != "auto":
        report(f"runtime.device auto on this CPU: {device} {precision} (measured fastest; `streamdetect devices` "
               "shows the timings)")


def _weights_apart(path: Path, weights: str) -> None:
    """Move an ONNX graph's weights into ``weights`` beside it (see ``TEXT_ENCODER_WEIGHTS``)."""
    import onnx

    graph = onnx.load(path)
    # small constants stay in the graph: shape inference reads some of them (Unsqueeze axes)
    onnx.save_model(graph, path, save_as_external_data=True, all_tensors_to_one_file=True, location=weights,
                    size_threshold=1024)
    (path.parent / weights).chmod(path.stat().st_mode & 0o777)  # onnx creates it 0600; like its graph file


def verify_export(directory: Path, clap: Any, fe: Any, tokenizer: Any, torch: Any) -> Verification:
    """Compare the run-time path over the exported files with the PyTorch model, row by row."""
    from streamdetect.embed.encoder import open_audio_encoder
    from streamdetect.embed.encoder.base import RuntimeOptions
    from streamdetect.embed.encoder.text import TextEncoder

    bundle = ModelBundle.load(directory)
    params = bundle.frontend_params
    frontend = LogMelFrontend(params)
    clips = verification_audio(params.sample_rate)
    ours_feats = frontend(clips)
    ref = fe(clips, sampling_rate=params.sample_rate, return_tensors="pt")
    fe_diff = float(np.abs(ref["input_features"].numpy() - ours_feats).max())
    with torch.no_grad():
        ref_audio = clap.get_audio_features(input_features=ref["input_features"]).pooler_output.numpy()
    cpu = RuntimeOptions(device="cpu")
    onnx_audio = open_audio_encoder(bundle, cpu)(ours_feats)
    # Cut as the run-time text encoder cuts (the manifest's max_length): a checkpoint with a small vocabulary
    # spells the long prompt in more tokens than its text tower has positions.
    enc = tokenizer(list(VERIFY_PROMPTS), padding=True, truncation=True, max_length=bundle.text_max_length,
                    return_tensors="pt")
    with torch.no_grad():
        ref_text = clap.get_text_features(**enc).pooler_output.numpy()
    onnx_text = TextEncoder(bundle, cpu)(list(VERIFY_PROMPTS))
    return Verification(
        audio_cosine_min=float(cosine_rows(ref_audio, onnx_audio).min()),
        text_cosine_min=float(cosine_rows(ref_text, onnx_text).min()),
        audio_max_abs_diff=float(np.abs(ref_audio - onnx_audio).max()),
        text_max_abs_diff=float(np.abs(ref_text - onnx_text).max()),
        frontend_max_abs_db=fe_diff,
        n_audio=len(clips),
        n_text=len(VERIFY_PROMPTS),
    )
