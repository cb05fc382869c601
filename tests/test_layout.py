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
        "streamdetect/util/__init__.py": "",
        "streamdetect/util/a.py": "from . import b\n",
        "streamdetect/util/b.py": "def f():\n    import streamdetect.util.a\n",
    })
    found = checker().problems(pkg)
    assert "import circle: streamdetect.cli -> streamdetect.cli.tools" in found
    assert "import circle: streamdetect.util.a -> streamdetect.util.b" in found
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
    assert len(found) == 3
    assert "package circle: streamdetect.pipeline -> streamdetect.sinks" in found
    assert any("streamdetect.sources.mic imports streamdetect.pipeline.detector" in line for line in found)
    assert any("streamdetect.pipeline.detector imports streamdetect.sinks.base" in line for line in found)


def test_a_package_circle_and_an_upward_import_are_found_and_so_is_a_module_on_no_floor(tmp_path):
    pkg = write(tmp_path, {
        "streamdetect/__init__.py": "",
        "streamdetect/model/__init__.py": "",
        "streamdetect/model/manifest.py": "from streamdetect.embed.frontend import LogMelFrontend\n",
        "streamdetect/embed/__init__.py": "",
        "streamdetect/embed/frontend.py": "from streamdetect.model.identity import ModelIdentity\n",
        "streamdetect/model/identity.py": "",
        "streamdetect/web/__init__.py": "",
        "streamdetect/web/app.py": "def f():\n    from streamdetect.daemon import control\n",
        "streamdetect/daemon/__init__.py": "",
        "streamdetect/daemon/control.py": "",
        "streamdetect/pipeline/__init__.py": "",
        "streamdetect/pipeline/detector.py": "from streamdetect.export import convert\n",
        "streamdetect/export/__init__.py": "",
        "streamdetect/export/convert.py": "",
        "streamdetect/newthing.py": "",
    })
    found = checker().problems(pkg)
    assert "package circle: streamdetect.embed -> streamdetect.model" in found
    assert any("streamdetect.model.manifest imports streamdetect.embed.frontend" in line for line in found)
    assert any("streamdetect.web.app imports streamdetect.daemon" in line for line in found)
    assert any("only streamdetect.cli may import streamdetect.export" in line for line in found)
    assert "streamdetect.newthing is on no floor: add it (or its package) to FLOORS in tools/check_imports.py" in found
    assert not any(line.startswith("import circle") for line in found)


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}


def test_tools_never_import_the_tests():
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "tools").glob("*.py"))
                 if "conftest" in p.read_text(encoding="utf-8") or "tests\"" in p.read_text(encoding="utf-8")]
    assert offenders == []
