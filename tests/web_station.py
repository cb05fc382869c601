"""A running station for the dashboard's API tests: a real ``DetectorService`` with ``web:`` on loopback, two
generated scenes whose tones become events and clips, and a quiet live stream that keeps it running."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml
from fakes import LiveSource
from helpers import tone_events, write_tone_scene

from streamdetect.config import load_config
from streamdetect.daemon.service import DetectorService
from streamdetect.model.manifest import ModelBundle
from streamdetect.sources.file import FileOptions, FileSource

ADMIN, VIEWER = "admin-token-" + "a" * 20, "viewer-token-" + "v" * 20
CONFIG_COMMENT = "# station config: keep this comment"


class Station:
    def __init__(self, service: DetectorService, folder: Path, config_path: Path):
        self.service, self.folder, self.config_path = service, folder, config_path
        host, port = service.web.address[:2]
        self.url = f"http://{host}:{port}"
        self.db = folder / "events.db"
        self.clips = folder / "clips"

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def events(self) -> list[dict]:
        return self.client(ADMIN).get("/api/events", params={"limit": 200}).json()["events"]


def write_station_config(folder: Path, model: Path, events: list[dict], **web) -> Path:
    data = {"model": str(model), "runtime": {"device": "cpu"}, "events": events,
            "sinks": [{"type": "sqlite", "path": str(folder / "events.db")},
                      {"type": "clips", "dir": str(folder / "clips"), "pre_roll_s": 1.0, "post_roll_s": 1.0}],
            "web": {"port": 0, **web}}
    path = folder / "station.yaml"
    text = yaml.safe_dump(data, sort_keys=False)
    path.write_text(f"{CONFIG_COMMENT}\n" + text.replace("events:\n", "events:  # what to listen for\n"))
    return path


@contextmanager
def running_station(folder: Path, tiny_model: Path, **web) -> Iterator[Station]:
    # a copy: "refine now" saves refinements next to the model, which must not reach the other tests' model
    tiny_model = Path(shutil.copytree(tiny_model, folder / "model"))
    scene = write_tone_scene(folder / "scene.wav", seconds=24.0, tone_at=(5.0, 9.0))
    write_tone_scene(folder / "scene2.wav", seconds=24.0, tone_at=(14.0, 18.0), seed=1)
    path = write_station_config(folder, tiny_model, tone_events(tiny_model), login="always", **web)
    saved = {k: os.environ.get(k) for k in ("STREAMDETECT_WEB_ADMIN_TOKEN", "STREAMDETECT_WEB_VIEWER_TOKEN")}
    os.environ.update(STREAMDETECT_WEB_ADMIN_TOKEN=ADMIN, STREAMDETECT_WEB_VIEWER_TOKEN=VIEWER)
    bundle = ModelBundle.load(tiny_model)
    service = DetectorService(load_config(path), bundle, config_path=path)
    stop = threading.Event()
    sources = [FileSource(FileOptions(path=str(scene)), bundle.sample_rate),
               FileSource(FileOptions(path=str(folder / "scene2.wav")), bundle.sample_rate),
               # near silence at real-time pace until stopped: it keeps the daemon (and its inference thread)
               # running after the files are done, as a station's microphone would
               LiveSource(name="quiet", block_s=0.25, pace_s=0.25, level=1e-4, max_s=None,
                          sample_rate=bundle.sample_rate)]
    runner = threading.Thread(target=service.run, args=(sources, stop), daemon=True)
    runner.start()
    try:
        st = Station(service, folder, path)
        deadline = time.monotonic() + 120
        while len(list(st.clips.glob("*/*.flac"))) < 2:  # the clips sink writes in its own thread
            assert time.monotonic() < deadline and runner.is_alive(), "no clips were written"
            time.sleep(0.1)
        yield st
    finally:
        stop.set()
        runner.join(60)
        service.close()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
