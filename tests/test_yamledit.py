"""The one YAML editor (``config.yamledit``): the settings page and ``calibrate`` keep a file's own list
indentation, and both write new lists the same way."""

from __future__ import annotations

import yaml

from streamdetect.config.yamledit import update_yaml, write_thresholds

FLUSH = "# mine\nevents:\n- label: dog  # barks\n  prompts: ['a dog']\n  threshold: 0.3\n"


def test_settings_and_calibrate_keep_the_files_own_list_indentation(tmp_path):
    path, out = tmp_path / "c.yaml", tmp_path / "out.yaml"
    path.write_text(FLUSH)
    write_thresholds(path, out, {"dog": 0.25}, "calibrated by streamdetect: test")
    assert out.read_text() == "# calibrated by streamdetect: test\n" + FLUSH.replace("0.3", "0.25")
    write_thresholds(out, out, {"dog": 0.2}, "calibrated by streamdetect: again")  # the old note is replaced
    assert out.read_text() == "# calibrated by streamdetect: again\n" + FLUSH.replace("0.3", "0.2")
    update_yaml(path, {"events": [{"label": "dog", "prompts": ["a dog"], "threshold": 0.4}]}, {"events": set()})
    assert path.read_text() == FLUSH.replace("0.3", "0.4")


def test_a_file_without_lists_gets_them_as_the_docs_write_them(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m  # the model\n")
    update_yaml(path, {"events": [{"label": "dog", "prompts": ["a dog"], "threshold": 0.4}]}, {})
    text = path.read_text()
    assert text.startswith("model: m  # the model\nevents:\n  - label: dog\n    prompts:\n      - a dog\n")
    assert yaml.safe_load(text)["events"] == [{"label": "dog", "prompts": ["a dog"], "threshold": 0.4}]
