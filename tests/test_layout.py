"""The package layout holds: no import circle (imports inside functions count), data flows one way through the
layers, and no module grows past about 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "streamdetect"


def checker():
    from scripts import check_imports

    return check_imports


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
    assert "streamdetect.newthing is on no floor: add it (or its package) to FLOORS in scripts/check_imports.py" in found
    assert not any(line.startswith("import circle") for line in found)


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}


# The packages beside streamdetect, bottom-up: each may import streamdetect and the ones before it, never the tests.
TOOL_PACKAGES = ("mini", "scripts", "bench")


def _tool_files() -> list[Path]:
    return sorted(p for name in (*TOOL_PACKAGES, "tools") for p in (ROOT / name).rglob("*.py"))


def test_tools_never_import_the_tests():
    offenders = [str(p.relative_to(ROOT)) for p in _tool_files()
                 if "conftest" in p.read_text(encoding="utf-8") or "tests\"" in p.read_text(encoding="utf-8")]
    assert offenders == []


def test_tool_packages_import_each_other_by_package_one_way_and_never_touch_sys_path():
    offenders = []
    for path in _tool_files():
        text = path.read_text(encoding="utf-8")
        if "sys.path" in text:
            offenders.append(f"{path.relative_to(ROOT)}: sys.path")
        own = path.relative_to(ROOT).parts[0]
        above = TOOL_PACKAGES[TOOL_PACKAGES.index(own) + 1:] if own in TOOL_PACKAGES else ()
        for node in ast.walk(ast.parse(text)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.relative_to(ROOT)}: imports {n}" for n in names if n.split(".")[0] in above]
    assert offenders == []
