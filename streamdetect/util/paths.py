"""Where streamdetect keeps state when the config does not say: never the working directory.

A relative default (``spool``) meant a different folder for every place the daemon was started from, and two
daemons started from one folder shared a spool without knowing. The default is the service manager's state
directory (systemd's ``StateDirectory=`` sets ``$STATE_DIRECTORY``), else ``$XDG_STATE_HOME/streamdetect``,
else ``~/.local/state/streamdetect``.
"""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd)
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "state") / "streamdetect"
