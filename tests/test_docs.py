"""The docs site: the configuration reference is generated from the schema and must match the committed page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_generated_from_the_schema():
    result = subprocess.run([sys.executable, "-m", "scripts.config_reference", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    page = (ROOT / "docs" / "configuration.md").read_text()
    # descriptions, bounds and defaults come from the fields themselves
    from streamdetect.config import EventConfig, WindowConfig

    assert EventConfig.model_fields["hysteresis"].description in page
    assert "| `window_s` | float | `3.0` | > 0, <= 10.0 |" in page
    assert WindowConfig.model_fields["hop_s"].description in page
    for plugin in ("ffmpeg", "file", "microphone", "stdout", "jsonl", "sqlite", "command", "clips"):
        assert f"### `type: {plugin}`" in page


def test_every_page_in_the_nav_exists():
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def pages(entries):
        for entry in entries:
            for value in entry.values():
                yield from pages(value) if isinstance(value, list) else [value]

    missing = [page for page in pages(nav) if not (ROOT / "docs" / page).is_file()]
    assert not missing
