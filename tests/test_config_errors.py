"""Every mistake in a config file is one ``ConfigError`` naming the file, the key path and, for YAML, the line.

Values PyYAML itself cannot build (a day that does not exist, ``!!int 'zz'``), paths that cannot be expanded,
infinite bounds and vocabulary templates that only fail when used all used to escape as tracebacks (issue 15).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_cli

from streamdetect.config import ConfigError, load_config, parse_config

EVENT = "  - {label: bird, prompts: [birdsong], threshold: 0.2}\n"


def _problems(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert all(line.strip().startswith(str(path)) for line in str(error.value).splitlines()[1:]), error.value
    return dict(error.value.problems)


@pytest.mark.parametrize("value, words", [
    ("2024-02-30", ["line 2, column 12", "2024-02-30", "day is out of range", "quote it"]),
    ("!!int 'zz'", ["line 2, column 12", "'zz' is not a valid int"]),
    ("!!timestamp 'x'", ["line 2, column 12", "'x' is not a valid timestamp"]),
])
def test_values_yaml_cannot_build_are_reported_with_key_path_and_line(tmp_path, value, words):
    problems = _problems(tmp_path, f"events:\n  - label: {value}\n    prompts: [x]\n    threshold: 0.2\n")
    assert list(problems) == ["events[0].label"], problems
    for word in words:
        assert word in problems["events[0].label"], (word, problems)


def test_every_unbuildable_value_and_every_key_typo_comes_in_one_report(tmp_path):
    problems = _problems(tmp_path, "events:\n  - label: 2024-02-30\n    prompts: [x]\n    threshold: !!float 'y'\n"
                                   "windows: {hop_s: !!int 'zz'}\n")
    assert set(problems) == {"events[0].label", "events[0].threshold", "windows.hop_s"}, problems


def test_unknown_plugin_types_come_with_the_key_typos(tmp_path):
    problems = _problems(tmp_path, "modle: x\nevents:\n  - {label: a, prompts: [x], treshold: 0.2}\n"
                                   "sinks:\n  - {type: jsnol, path: out.jsonl}\n  - {type: jsonl, file: x}\n"
                                   "source: {type: carrier-pigeon}\n")
    assert {"modle", "events[0].treshold", "events[0].threshold", "sinks[0].type", "sinks[1].file",
            "source.type"} <= set(problems), problems
    assert "unknown sink type" in problems["sinks[0].type"] and "jsonl" in problems["sinks[0].type"]


@pytest.mark.parametrize("text, line", [
    ("model: m\nsinks: []\nevents:\n  - label: x\n    threshold: 0.2\n    prompts: [a, b\n", 6),  # unclosed [
    ("model: m\nsinks: []\nevents:\n  - label: x\n    threshold: 0.2\n    prompts: 'abc\n", 6),   # unclosed '
    ("model: m\nevents:\n  - label: x\n    prompts: [a]\n    threshold 0.3\nsinks: []\n", 5),     # no colon
    ("model: m\nsinks: []\nevents: []\nwindows: {}\nscoring: {}\n  novelty: x\n", 6),
])
def test_yaml_syntax_errors_point_at_the_line_in_the_file(tmp_path, text, line):
    assert len(text.splitlines()) == 6
    problems = _problems(tmp_path, text)
    message = problems[""]
    assert message.startswith(f"not valid YAML: line {line},"), message


@pytest.mark.parametrize("where", ["examples", "vocabulary"])
def test_a_path_with_an_unknown_user_is_a_key_error(tmp_path, where):
    text = ("events:\n  - {label: a, prompts: [x], threshold: 0.2, examples: ['~nosuchuser/a.wav']}\n"
            if where == "examples" else f"events:\n{EVENT}vocabulary: {{file: '~nosuchuser/names.txt'}}\n")
    problems = _problems(tmp_path, text)
    key = "events[0].examples" if where == "examples" else "vocabulary.file"
    assert "there is no user 'nosuchuser'" in problems[key], problems


@pytest.mark.parametrize("value", [".inf", "1e10", ".nan", "-.inf"])
def test_clip_retention_must_be_a_finite_usable_age(tmp_path, value):
    problems = _problems(tmp_path, f"events:\n{EVENT}sinks:\n  - {{type: clips, dir: clips, max_age_days: {value}}}\n")
    assert "sinks[0].max_age_days" in problems, problems


@pytest.mark.parametrize("field, value", [("threshold", ".inf"), ("threshold", ".nan"), ("cooldown_s", ".inf")])
def test_no_config_number_may_be_infinite_or_nan(tmp_path, field, value):
    problems = _problems(tmp_path, f"events:\n  - {{label: a, prompts: [x], threshold: 0.2, {field}: {value}}}\n")
    assert f"events[0].{field}" in problems, problems


@pytest.mark.parametrize("template", ["a {} {x}", "{} {!r}", "{}{", "{0} {1}", "}{}", "no slot", "{}{}"])
def test_vocabulary_templates_are_checked_by_formatting_them(template):
    with pytest.raises(ConfigError) as error:
        parse_config({"events": [{"label": "a", "prompts": ["x"], "threshold": 0.2}],
                      "vocabulary": {"file": "audioset", "template": template}})
    assert [k for k, _ in error.value.problems] == ["vocabulary.template"]


@pytest.mark.parametrize("template", ["This is a sound of {}.", "{{braces}} around {}", "{:>3}"])
def test_usable_templates_are_kept(template):
    config = parse_config({"events": [{"label": "a", "prompts": ["x"], "threshold": 0.2}],
                           "vocabulary": {"file": "audioset", "template": template}})
    assert config.vocabulary.template == template


@pytest.mark.parametrize("text", [
    "events:\n  - label: 2024-02-30\n    prompts: [x]\n    threshold: 0.2\n",
    "events:\n  - {label: a, prompts: [x], threshold: 0.2, examples: ['~nosuchuser/a.wav']}\n",
    f"events:\n{EVENT}sinks:\n  - {{type: clips, dir: clips, max_age_days: 1e10}}\n",
    f"events:\n{EVENT}vocabulary: {{file: audioset, template: 'a {{}} {{x}}'}}\n",
])
def test_the_cli_prints_one_error_line_per_mistake_and_no_traceback(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    result = run_cli("run", "--config", str(path), "--input", str(tmp_path / "none.wav"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and f"{path}: " in result.stderr, result.stderr
