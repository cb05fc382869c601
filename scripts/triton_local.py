"""Run the tritonserver bundled in the nvidia-pytriton wheel (Python backend only; CPU) on loopback, for a model
repository written by ``streamdetect export --triton-repo DIR --triton-backend python``.

The tests and bench/triton.py start their server through this; it also lets a developer try a station
against a real server without NVIDIA's container. It binds 127.0.0.1 (Triton's default is 0.0.0.0), takes free
ports unless told, and is stopped by its pid. The wheel's Python backend needs numpy < 2, so it runs from
``.venv-triton`` (made by ``scripts/setup.sh --dev``; or set STREAMDETECT_TRITON_VENV).

    python -m scripts.triton_local --repo DIR [--http-port 8000]      (Ctrl-C stops it)
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("STREAMDETECT_TRITON_VENV", ROOT / ".venv-triton"))


def pytriton_dir() -> Path:
    """The pytriton package in the Triton venv; an error naming the setup step when it is missing (never a skip)."""
    found = sorted(VENV.glob("lib/python3*/site-packages/pytriton"))
    if not found:
        raise RuntimeError(f"no nvidia-pytriton in {VENV}: run `bash scripts/setup.sh --dev` (it makes .venv-triton)")
    return found[0]


def triton_python() -> Path:
    return VENV / "bin" / "python"


class TritonServer:
    """One tritonserver process on loopback; ``start`` waits until the model is ready."""

    def __init__(self, repo: Path, workdir: Path, *, explicit: bool = False, http_port: int | None = None,
                 token: str | None = None):
        self.repo, self.workdir, self.explicit, self.token = repo, workdir, explicit, token
        self.http_port = http_port or free_port()
        self.grpc_port, self.metrics_port = free_port(), free_port()
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
        if self.token:  # Triton's own check of a header on these API groups (what a station sends)
            cmd += [f"--http-restricted-api=inference,model-config:Authorization=Bearer {self.token}"]
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



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, required=True, help="model repository (Python backend)")
    parser.add_argument("--http-port", type=int, default=8000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="triton-local-") as work:
        server = TritonServer(args.repo.resolve(), Path(work), http_port=args.http_port).start()
        print(f"tritonserver {server.process.pid} serves {args.repo} on {server.url}; Ctrl-C stops it", flush=True)
        try:
            server.process.wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
