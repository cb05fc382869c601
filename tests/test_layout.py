"""The package layout holds: no import circle (imports inside functions count), data flows one way through the
layers, and no module grows past about 400 lines."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "streamdetect"


def checker():
    spec = importlib.util.spec_from_file_location("check_imports", ROOT / "tools" / "check_imports.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_imports"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "streamdetect"


def test_the_package_has_no_import_circle_and_no_layer_violation():
    assert checker().problems(PACKAGE) == []


def test_a_circle_hidden_in_a_function_is_found(tmp_path):
    pkg = write(tmp_path, {
        "streamdetect/__init__.py": "",
        "streamdetect/cli/__init__.py": "def main():\n    from streamdetect.cli import tools\n",
        "streamdetect/cli/tools.py": "from streamdetect.cli import main\n",
        "streamdetect/a.py": "from . import b\n",
        "streamdetect/b.py": "def f():\n    import streamdetect.a\n",
    })
    found = checker().problems(pkg)
    assert "import circle: streamdetect.cli -> streamdetect.cli.tools" in found
    assert "import circle: streamdetect.a -> streamdetect.b" in found
    assert len(found) == 2


def test_an_import_against_the_data_path_is_found(tmp_path):
    pkg = write(tmp_path, {
        "streamdetect/__init__.py": "",
        "streamdetect/sources/__init__.py": "",
        "streamdetect/sources/mic.py": "from streamdetect.pipeline.detector import Detector\n",
        "streamdetect/pipeline/__init__.py": "",
        "streamdetect/pipeline/detector.py": "def emit():\n    from streamdetect.sinks.base import SinkSet\n",
        "streamdetect/sinks/__init__.py": "",
        "streamdetect/sinks/base.py": "from streamdetect.pipeline.events import EventRecord\n",
        "streamdetect/pipeline/events.py": "",
    })
    found = checker().problems(pkg)
    assert len(found) == 2
    assert any("streamdetect.sources.mic imports streamdetect.pipeline.detector" in line for line in found)
    assert any("streamdetect.pipeline.detector imports streamdetect.sinks.base" in line for line in found)


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}


def test_tools_never_import_the_tests():
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "tools").glob("*.py"))
                 if "conftest" in p.read_text(encoding="utf-8") or "tests\"" in p.read_text(encoding="utf-8")]
    assert offenders == []
