from pathlib import Path

import pytest

from streamdetect.config import ConfigError, load_config, parse_config
from streamdetect.sinks.jsonl import JsonlOptions

GOOD = {"events": [{"label": "bird", "prompts": ["birdsong"], "threshold": 0.3}]}


def _problems(data):
    with pytest.raises(ConfigError) as info:
        parse_config(data, "cfg.yaml")
    return info.value.problems, str(info.value)


def test_defaults():
    config = parse_config(GOOD)
    assert config.windows.window_s == 3.0 and config.windows.hop_s == 1.0
    assert [(s.type, s.options) for s in config.sinks] == [("jsonl", JsonlOptions(path="-"))]
    assert config.events[0].min_windows == 1 and config.events[0].negatives == []


def test_single_prompt_string_is_accepted():
    config = parse_config({"events": [{"label": "a", "prompts": "dog barking", "threshold": 0.2}]})
    assert config.events[0].prompts == ["dog barking"]


@pytest.mark.parametrize(
    "data, path, words",
    [
        ({**GOOD, "window": {"window_s": 3}}, "window", ["unknown key"]),
        ({"events": [{**GOOD["events"][0], "treshold": 0.3}]}, "events[0].treshold", ["unknown key"]),
        ({"events": [{**GOOD["events"][0], "threshold": 1.7}]}, "events[0].threshold", ["less than or equal to 1", "1.7"]),
        ({"events": [{**GOOD["events"][0], "threshold": "high"}]}, "events[0].threshold", ["number", "'high'"]),
        ({**GOOD, "windows": {"hop_s": -1}}, "windows.hop_s", ["greater than 0", "-1"]),
        ({**GOOD, "windows": {"window_s": 12}}, "windows.window_s", ["less than or equal to 10", "12"]),
        ({"events": [{"label": "x", "threshold": 0.1}]}, "events[0].prompts", ["required key is missing"]),
        ({"events": []}, "events", ["at least 1"]),
        ({**GOOD, "sinks": [{"type": "carrier-pigeon"}]}, "sinks[0].type", ["unknown sink type", "jsonl", "stdout"]),
        ({**GOOD, "sinks": [{"type": "jsonl", "file": "x"}]}, "sinks[0].file", ["unknown key"]),
        ({**GOOD, "source": {"type": "file"}}, "source.path", ["required key is missing"]),
        ({**GOOD, "runtime": {"device": "tpu"}}, "runtime.device", ["'auto', 'cpu', 'cuda', 'tensorrt', 'openvino' or 'triton'", "'tpu'"]),
    ],
)
def test_errors_name_key_expectation_and_found_value(data, path, words):
    problems, message = _problems(data)
    assert path in [p for p, _ in problems], problems
    text = next(m for p, m in problems if p == path)
    for word in words:
        assert word in text, (word, text)
    assert message.count("cfg.yaml:") == len(problems)


def test_every_mistake_is_reported_at_once():
    problems, _ = _problems({"events": [{"label": "a", "prompts": ["x"], "threshold": 3, "min_windows": 0}],
                             "bogus": 1})
    assert {p for p, _ in problems} == {"events[0].threshold", "events[0].min_windows", "bogus"}


def test_duplicate_labels_are_refused():
    _, message = _problems({"events": [GOOD["events"][0], GOOD["events"][0]]})
    assert "'bird' appears twice" in message


def test_file_errors_name_the_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("events: [\n  {label: a, prompts: [x]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML: line \d+"):
        load_config(bad)
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        load_config(tmp_path / "missing.yaml")
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(top)


def test_shipped_configs_are_valid():
    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("*.yaml"))
    assert {f.name for f in files} >= {"birds.yaml", "home.yaml"}
    for f in files:
        config = load_config(f)
        assert config.events and all(e.prompts for e in config.events)
    birds = load_config(root / "birds.yaml")
    negatives = " ".join(n for e in birds.events for n in e.negatives)
    assert all(word in negatives for word in ("wind", "rain", "traffic"))
    home = {e.label for e in load_config(root / "home.yaml").events}
    assert {"glass_breaking", "smoke_alarm", "dog_barking", "baby_crying"} <= home
