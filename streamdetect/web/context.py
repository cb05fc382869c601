"""What the dashboard's routes may reach in the running daemon, handed in when it is built (no globals)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamdetect.config import Config, WebConfig
from streamdetect.config.gate import ConfigGate
from streamdetect.model.manifest import ModelBundle
from streamdetect.prompts.bank import PromptBank
from streamdetect.sinks.clips import ClipsOptions
from streamdetect.sinks.sqlite import SqliteOptions
from streamdetect.store import connect
from streamdetect.web.examples import ExampleFolder, examples_root
from streamdetect.web.live import LiveHub


@dataclass(frozen=True)
class ClipsPlace:
    """The folder of the config's clips sink and the pre-roll its clips start with."""

    root: Path
    pre_roll_s: float


@dataclass
class WebContext:
    web: WebConfig
    current: Callable[[], Config]  # the running config (changes on reload)
    bank: Callable[[], PromptBank]  # the running prompt bank
    gate: ConfigGate  # applies a config to the running detector (the reload gate SIGHUP uses too)
    bundle: ModelBundle
    hub: LiveHub
    embed_text: Callable[[str], np.ndarray]  # a prompt -> its unit text embedding
    db_path: Path | None = None
    clips: ClipsPlace | None = None
    config_path: Path | None = None  # the YAML the settings page rewrites (None: changes live in memory only)
    examples: ExampleFolder = field(init=False)  # where uploaded audio examples go: next to the config file

    _db: sqlite3.Connection | None = field(default=None, init=False, repr=False)
    _db_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.examples = ExampleFolder(examples_root(self.config_path))

    @contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        """The store, opened once (its schema and indexes checked once) and used by one request at a time."""
        if self.db_path is None:
            raise LookupError("no event store: add a `sqlite` sink to the config to list and review events")
        with self._db_lock:
            if self._db is None:
                if not self.db_path.is_file():
                    raise LookupError(f"no event database at {self.db_path} yet (the sqlite sink creates it)")
                self._db = connect(self.db_path)
            yield self._db

    def close(self) -> None:
        with self._db_lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def store_places(config: Config) -> tuple[Path | None, ClipsPlace | None]:
    """Where the config's sqlite sink writes events and its clips sink writes clips (the first of each)."""
    db = next((Path(o.path) for o in config.sink_options(SqliteOptions)), None)
    clips = next((ClipsPlace(Path(o.dir), o.pre_roll_s) for o in config.sink_options(ClipsOptions)), None)
    return db, clips
