"""Writing the settings page's changes back into the user's YAML file with its comments and layout kept.

ruamel.yaml's round-trip mode keeps comments, key order and quoting (and the file's list indentation, guessed by
ruamel; mappings are written with 2 spaces); only the values that changed are touched,
so a diff of the file shows exactly what was edited in the browser. The file is replaced atomically.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.util import load_yaml_guess_indent

from streamdetect.util.files import atomic_write

REMOVE = object()  # as a value in the new data: take this key out of the file


def _written(value: Any) -> Any:
    """``value`` as it goes into the file where nothing was before (``REMOVE`` keys dropped)."""
    if isinstance(value, dict):
        return {k: _written(v) for k, v in value.items() if v is not REMOVE}
    return [_written(v) for v in value] if isinstance(value, list) else value


def _merge_map(node: CommentedMap, new: dict[str, Any], managed: set[str] | None) -> None:
    for key, value in new.items():
        if value is REMOVE:
            node.pop(key, None)
        elif key in node and isinstance(node[key], CommentedMap) and isinstance(value, dict):
            _merge_map(node[key], value, None)
        elif key in node and isinstance(node[key], CommentedSeq) and isinstance(value, list):
            _merge_seq(node[key], value, None)
        elif key not in node or node[key] != value:
            node[key] = _written(value)
    if managed is not None:  # a managed key the form left out went back to its default
        for key in [k for k in node if k in managed and k not in new]:
            del node[key]


def _merge_seq(node: CommentedSeq, new: list[Any], managed: set[str] | None) -> None:
    """Entries with a ``label`` are matched by label (an event removed from the middle must not hand its
    examples or comments to the next one); other entries by position."""
    if all(isinstance(v, dict) and "label" in v for v in new) and all(isinstance(n, CommentedMap) for n in node):
        by_label = {n.get("label"): n for n in node}
        merged = []
        for value in new:
            entry = by_label.get(value["label"])
            if entry is None:
                entry = CommentedMap()
            _merge_map(entry, value, managed)
            merged.append(entry)
        node[:] = merged
        return
    for i, value in enumerate(new):
        if i < len(node) and isinstance(node[i], CommentedMap) and isinstance(value, dict):
            _merge_map(node[i], value, managed)
        elif i >= len(node):
            node.append(_written(value))
        elif node[i] != value:
            node[i] = _written(value)
    del node[len(new):]


def update_yaml(path: Path, sections: dict[str, Any], managed: dict[str, set[str]]) -> None:
    """Set top-level ``sections`` (plain data) in the YAML file at ``path``; ``managed[section]`` names the keys
    of each list entry (or mapping) the caller owns: those missing from the new data are removed."""
    yaml = YAML()
    yaml.preserve_quotes = True
    text = Path(path).read_text(encoding="utf-8")
    # ruamel keeps comments but writes block lists in its own indentation; keep the file's ("  - label: dog")
    _, sequence, offset = load_yaml_guess_indent(text)
    if sequence is not None and offset is not None and sequence >= offset + 2:
        yaml.indent(mapping=2, sequence=sequence, offset=offset)
    doc = yaml.load(text)
    if not isinstance(doc, CommentedMap):
        raise ValueError(f"{path}: the top level is not a mapping")
    for section, value in sections.items():
        keys = managed.get(section)
        if section in doc and isinstance(doc[section], CommentedSeq) and isinstance(value, list):
            _merge_seq(doc[section], value, keys)
        elif section in doc and isinstance(doc[section], CommentedMap) and isinstance(value, dict):
            _merge_map(doc[section], value, keys)
        elif value or section in doc:
            doc[section] = _written(value)
    out = io.StringIO()
    yaml.dump(doc, out)
    atomic_write(path, out.getvalue())
