"""Helpers of the ``triton`` tests: the model repositories they serve, through ``scripts/triton_local.py`` (the
tritonserver bundled in the nvidia-pytriton wheel, Python backend only, on the CPU, in ``.venv-triton``).

That server serves a repository written by ``streamdetect export --triton-repo ... --triton-backend python``: the
exported ONNX file through onnxruntime inside the Python backend, with Triton's dynamic batcher, on 127.0.0.1 and
free ports, stopped by its pid. Faults are real: SIGKILL (killed), SIGSTOP/SIGCONT (stalled), a restart on the
same port, a model unloaded through the repository API (it answers errors), a restart serving another repository
(another model).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from scripts.triton_local import TritonServer, triton_python

__all__ = ["TritonServer", "other_export", "python_repo", "triton_python"]


def python_repo(model_dir: Path, repo: Path, **options) -> Path:
    """``streamdetect export --triton-repo repo --triton-backend python`` for an existing export, through the CLI."""
    cmd = [sys.executable, "-m", "streamdetect", "export", "--out", str(model_dir), "--triton-repo", str(repo),
           "--triton-backend", "python", "--triton-kind", "cpu"]
    for key, value in options.items():
        cmd += [f"--triton-{key.replace('_', '-')}", str(value)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return repo


def other_export(model_dir: Path, dest: Path) -> Path:
    """A copy of an export whose audio encoder is another graph (the fp32 one with one weight scaled): what a
    station must refuse to be served, as if the server ran a different checkpoint. Made from the fp32 graph
    because it is the one file every export has (int8 is refused on CPUs without VNNI)."""
    import json

    import numpy as np
    import onnx
    from onnx import numpy_helper

    from streamdetect.model.manifest import AUDIO_ENCODER, MANIFEST_NAME, sha256_file

    shutil.copytree(model_dir, dest)
    graph = onnx.load(str(dest / AUDIO_ENCODER))
    weight = next(w for w in graph.graph.initializer
                  if (a := numpy_helper.to_array(w)).dtype == np.float32 and a.size > 16)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * np.float32(1.5), weight.name))
    onnx.save(graph, str(dest / AUDIO_ENCODER))
    manifest = json.loads((dest / MANIFEST_NAME).read_text())
    manifest["files"][AUDIO_ENCODER] = sha256_file(dest / AUDIO_ENCODER)
    manifest["precisions"]["fp16"]["status"] = "refused"
    manifest["source"]["model"] = "another-checkpoint"
    (dest / MANIFEST_NAME).write_text(json.dumps(manifest))
    return dest
