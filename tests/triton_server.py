"""A real tritonserver for the ``triton`` tests: the binary bundled in the nvidia-pytriton wheel (Python backend
only, runs on the CPU), installed by ``tools/setup.sh --dev`` into ``.venv-triton`` (its backend needs numpy < 2).

It serves a model repository written by ``streamdetect export --triton-repo ... --triton-backend python``: the
exported ONNX file through onnxruntime inside the Python backend, with Triton's dynamic batcher. It listens on
127.0.0.1 only (Triton's default is 0.0.0.0), on free ports, and is stopped by its pid. Faults are real: SIGKILL
(killed), SIGSTOP/SIGCONT (stalled), a restart on the same port, a model unloaded through the repository API
(it answers errors), a restart serving another repository (another model).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("STREAMDETECT_TRITON_VENV", ROOT / ".venv-triton"))


def pytriton_dir() -> Path:
    """The pytriton package in the Triton venv; an error naming the setup step when it is missing (never a skip)."""
    found = sorted(VENV.glob("lib/python3*/site-packages/pytriton"))
    if not found:
        raise RuntimeError(f"no nvidia-pytriton in {VENV}: run `bash tools/setup.sh --dev` (it makes .venv-triton)")
    return found[0]


def triton_python() -> Path:
    return VENV / "bin" / "python"


class TritonServer:
    """One tritonserver process on loopback; ``start`` waits until the model is ready."""

    def __init__(self, repo: Path, workdir: Path, *, explicit: bool = False):
        self.repo, self.workdir, self.explicit = repo, workdir, explicit
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.shm_prefix = f"sdtest{uuid.uuid4().hex[:10]}"  # parallel servers must not share shared memory
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / "tritonserver.log"
        self.dist = self._prepare()

    def _prepare(self) -> Path:
        """A private copy of the wheel's server with the Python backend stub for the venv's Python (as pytriton
        itself does at start)."""
        pkg = pytriton_dir()
        dist = self.workdir / "tritonserver"
        if not dist.is_dir():
            shutil.copytree(pkg / "tritonserver", dist, ignore=shutil.ignore_patterns("python_backend_stubs"))
            version = subprocess.run([str(triton_python()), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                     capture_output=True, text=True, check=True).stdout.strip()
            shutil.copy(pkg / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub",
                        dist / "backends" / "python" / "triton_python_backend_stub")
        return dist

    def start(self, repo: Path | None = None, timeout_s: float = 90.0) -> TritonServer:
        self.repo = repo or self.repo
        pkg = pytriton_dir()
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = ":".join(filter(None, [str(pkg.parent / "nvidia_pytriton.libs"),
                                                        env.get("LD_LIBRARY_PATH")]))
        env["PATH"] = f"{VENV / 'bin'}:{env['PATH']}"  # the stub's Python finds the venv (numpy < 2, onnxruntime)
        env.pop("PYTHONPATH", None)
        env["STREAMDETECT_TRITON_THREADS"] = "1"
        cmd = [str(self.dist / "bin" / "tritonserver"), f"--model-repository={self.repo}",
               f"--backend-directory={self.dist / 'backends'}", f"--cache-directory={self.dist / 'caches'}",
               "--http-address=127.0.0.1", f"--http-port={self.http_port}",
               "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
               "--metrics-address=127.0.0.1", f"--metrics-port={self.metrics_port}",
               f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
               "--exit-timeout-secs=5", "--log-verbose=0"]
        if self.explicit:
            cmd += ["--model-control-mode=explicit", "--load-model=*"]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"tritonserver not ready within {timeout_s} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.is_file() else ""

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would (its Python backend stub notices and exits by itself)."""
        self._signal(signal.SIGKILL)
        self._wait()

    def stall(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signal(signal.SIGCONT)
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
        self._wait()

    def _signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def _wait(self) -> None:
        if self.process is not None:
            self.process.wait(30)
        for leftover in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
            leftover.unlink(missing_ok=True)

    def unload(self, model: str) -> None:
        httpx.post(f"{self.url}/v2/repository/models/{model}/unload", timeout=30).raise_for_status()

    def load(self, model: str) -> None:
        httpx.post(f"{self.url}/v2/repository/models/{model}/load", timeout=60).raise_for_status()

    def statistics(self, model: str) -> dict:
        """Triton's own counts: ``inference_count`` (windows) and ``execution_count`` (batched runs)."""
        stats = httpx.get(f"{self.url}/v2/models/{model}/stats", timeout=10).json()["model_stats"][0]
        return {"inference_count": int(stats["inference_count"]), "execution_count": int(stats["execution_count"])}


def python_repo(model_dir: Path, repo: Path, **options) -> Path:
    """``streamdetect export --triton-repo repo --triton-backend python`` for an existing export, through the CLI."""
    cmd = [sys.executable, "-m", "streamdetect", "export", "--out", str(model_dir), "--triton-repo", str(repo),
           "--triton-backend", "python", "--triton-kind", "cpu"]
    for key, value in options.items():
        cmd += [f"--triton-{key.replace('_', '-')}", str(value)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return repo


def other_export(model_dir: Path, dest: Path) -> Path:
    """A copy of an export whose audio encoder is another graph (the int8 one, renamed): what a station must
    refuse to be served, as if the server ran a different checkpoint."""
    import json

    from streamdetect.model.manifest import AUDIO_ENCODER, AUDIO_ENCODER_INT8, MANIFEST_NAME, sha256_file

    shutil.copytree(model_dir, dest)
    shutil.copyfile(dest / AUDIO_ENCODER_INT8, dest / AUDIO_ENCODER)
    manifest = json.loads((dest / MANIFEST_NAME).read_text())
    manifest["files"][AUDIO_ENCODER] = sha256_file(dest / AUDIO_ENCODER)
    manifest["precisions"]["fp16"]["status"] = "refused"
    manifest["source"]["model"] = "another-checkpoint"
    (dest / MANIFEST_NAME).write_text(json.dumps(manifest))
    return dest
