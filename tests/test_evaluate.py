import json

import numpy as np
import pytest
from helpers import run_cli, split_threshold, write_config, write_tone_scene

from streamdetect.analysis.evaluate import (
    LabelsError,
    apart_for_psds,
    centred,
    event_fscore,
    merge_touching,
    present,
    read_strong_labels,
)


def _scenes(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(3):
        write_tone_scene(audio / f"s{i}.wav", seconds=12.0, tone_at=(2 + i, 6 + i), seed=i)
    return audio


def _detections(tiny_model, tmp_path, audio, threshold):
    """What the real pipeline detects, as (file, start, end, label) rows."""
    out = tmp_path / "det.jsonl"
    events = [{"label": "dog", "prompts": ["a dog barking"], "threshold": threshold, "hysteresis": 0.0,
               "cooldown_s": 0.0}]
    cfg = write_config(tmp_path / "run.yaml", tiny_model, events, sinks=[{"type": "jsonl", "path": str(out)}])
    # every file in one run, as a source named after the file (the stream name evaluate matches labels by)
    every = write_config(tmp_path / "every.yaml", tiny_model, events, sinks=[{"type": "jsonl", "path": str(out)}],
                         sources=[{"type": "file", "name": wav.name, "path": str(wav)}
                                  for wav in sorted(audio.iterdir())])
    result = run_cli("run", "--config", str(every))
    assert result.returncode == 0, result.stderr
    rows = []
    for line in out.read_text().splitlines():
        r = json.loads(line)
        if r["phase"] == "end":
            rows.append((r["stream"], r["start_s"], r["end_s"], r["label"]))
    return cfg, rows


def _tsv(path, rows, shift=0.0):
    path.write_text("filename\tonset\toffset\tevent_label\n" + "".join(
        f"{f}\t{s + shift:.3f}\t{e + shift:.3f}\t{label}\n" for f, s, e, label in rows))
    return path


@pytest.mark.slow
def test_metrics_are_1_for_the_pipelines_own_events_and_0_beyond_the_collar(tiny_model, tmp_path):
    audio = _scenes(tmp_path)
    scan = run_cli("scan", str(audio / "s0.wav"), "--config", str(write_config(tmp_path / "s.yaml", tiny_model, [
        {"label": "dog", "prompts": ["a dog barking"], "threshold": 0.0}])), "--csv", str(tmp_path / "s.csv"))
    assert scan.returncode == 0, scan.stderr
    scores = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)[:, 2]
    cfg, rows = _detections(tiny_model, tmp_path, audio, split_threshold(scores))
    assert rows, "the scenes should give at least one detection"

    perfect = run_cli("evaluate", "--config", str(cfg), "--audio", str(audio), "--labels",
                      str(_tsv(tmp_path / "same.tsv", rows)), "--json", str(tmp_path / "same.json"))
    assert perfect.returncode == 0, perfect.stderr
    report = json.loads((tmp_path / "same.json").read_text())
    assert report["per_label"]["dog"]["f1"] == pytest.approx(1.0)
    assert report["per_label"]["dog"]["tp"] == len(rows) and report["per_label"]["dog"]["fp"] == 0
    assert report["micro"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0})
    assert 0.0 <= report["psds1"] <= 1.0 and report["files"] == 3
    assert "PSDS1" in perfect.stdout and "dog" in perfect.stdout

    run_cli("evaluate", "--config", str(cfg), "--audio", str(audio), "--labels",
            str(_tsv(tmp_path / "shifted.tsv", rows, shift=1.5)), "--json", str(tmp_path / "shifted.json"))
    shifted = json.loads((tmp_path / "shifted.json").read_text())
    assert shifted["per_label"]["dog"]["f1"] == 0.0 and shifted["per_label"]["dog"]["fp"] == len(rows)

    inside = run_cli("evaluate", "--config", str(cfg), "--audio", str(audio), "--labels",
                     str(_tsv(tmp_path / "inside.tsv", rows, shift=0.5)), "--json", str(tmp_path / "inside.json"))
    assert inside.returncode == 0
    assert json.loads((tmp_path / "inside.json").read_text())["per_label"]["dog"]["f1"] == pytest.approx(1.0)


def test_label_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("filename\tonset\toffset\tevent_label\na.wav\t1.0\t0.5\tdog\n")
    with pytest.raises(LabelsError, match=r"bad\.tsv:2: need 0 <= onset < offset"):
        read_strong_labels(bad)
    bad.write_text("a.wav\t1.0\tdog\n")
    with pytest.raises(LabelsError, match=r"bad\.tsv:1: expected 4 tab-separated columns"):
        read_strong_labels(bad)
    assert merge_touching([(0, 2, "a"), (1, 3, "a"), (3, 4, "b"), (5, 6, "a")]) == [
        (0, 3, "a"), (3, 4, "b"), (5, 6, "a")]
    bad.write_text("a.wav\t1.0\t2.0\t\n")
    with pytest.raises(LabelsError, match=r"bad\.tsv:1: the event_label column is empty"):
        read_strong_labels(bad)


def test_dcase_rows_without_events_and_touching_references(tmp_path):
    """DCASE lists a file without events as ``file<TAB><TAB><TAB>``; touching references stay two events
    unless merging is asked for (sed_eval and psds_eval count them apart)."""
    tsv = tmp_path / "gt.tsv"
    tsv.write_text("filename\tonset\toffset\tevent_label\nempty.wav\t\t\t\n"
                   "d.wav\t3.797\t4.103\tDishes\nd.wav\t4.103\t4.492\tDishes\n")
    assert read_strong_labels(tsv) == {"empty.wav": [], "d.wav": [(3.797, 4.103, "Dishes"), (4.103, 4.492, "Dishes")]}
    assert read_strong_labels(tsv, merge=True)["d.wav"] == [(3.797, 4.492, "Dishes")]
    # what PSDS gets: the pair kept apart by a microsecond
    assert apart_for_psds(read_strong_labels(tsv)["d.wav"]) == [(3.797, 4.103, "Dishes"),
                                                               (4.103 + 1e-6, 4.492, "Dishes")]


def test_missing_audio_is_reported(tiny_model, tmp_path):
    audio = _scenes(tmp_path)
    cfg = write_config(tmp_path / "c.yaml", tiny_model, [{"label": "dog", "prompts": ["x"], "threshold": 0.1}])
    tsv = _tsv(tmp_path / "l.tsv", [("nope.wav", 1.0, 2.0, "dog")])
    result = run_cli("evaluate", "--config", str(cfg), "--audio", str(audio), "--labels", str(tsv))
    assert result.returncode == 2 and "names files not found" in result.stderr and "nope.wav" in result.stderr


def test_event_fscore_on_hand_computed_cases():
    labels = ("dog", "bell")
    truth = {"a": [(1.0, 3.0, "dog"), (6.0, 8.0, "dog"), (4.0, 5.0, "bell")]}

    def score(events, collar=1.0, rate=0.0):
        return event_fscore({"a": events}, truth, labels, collar, rate)

    f, p, r, _ = score(list(truth["a"]))
    assert f["dog"] == f["bell"] == 1.0 and f["micro_average"] == 1.0
    # one dog right (0.8 s late: inside the collar), one dog missed, one false dog, the bell 2 s late
    f, p, r, stats = score([(1.8, 3.8, "dog"), (8.5, 9.5, "dog"), (6.0, 7.0, "bell")])
    assert (p["dog"], r["dog"], f["dog"]) == (0.5, 0.5, 0.5)
    assert stats["dog"]["tps"] == 1 and stats["dog"]["fps"] == 1 and stats["dog"]["n_ref"] == 2
    assert (p["bell"], r["bell"], f["bell"]) == (0.0, 0.0, 0.0)
    assert p["micro_average"] == pytest.approx(1 / 3) and r["micro_average"] == pytest.approx(1 / 3)
    f, *_ = score(list(truth["a"]), collar=1e-3)  # exact boundaries match under a tiny collar (sed_eval needs > 0)
    assert f["micro_average"] == 1.0
    # DCASE's offset collar: a 2 s reference whose offset is 0.35 s late fails a 0.2 s collar, and passes
    # max(0.2 s, 20 % of 2 s = 0.4 s)
    late = [(1.0, 3.35, "dog"), (6.0, 8.0, "dog"), (4.0, 5.0, "bell")]
    assert score(late, collar=0.2)[0]["dog"] == 0.5
    assert score(late, collar=0.2, rate=0.2)[0]["dog"] == 1.0


@pytest.mark.slow
def test_centre_timing_scores_the_windows_centres_not_their_whole_extent(tiny_model, tmp_path):
    """A 3 s / 1 s hop event reported over [first window start, last window end] is scored, with --timing centre,
    as the hops nearest its windows' centres: 1 s in from each end."""
    assert centred((4.0, 9.0, "dog"), 3.0, 1.0) == (5.0, 8.0, "dog")
    assert centred((4.0, 7.0, "dog"), 3.0, 1.0) == (5.0, 6.0, "dog")  # one window: its middle hop
    # presence: began in the hop before the first window's end (6.5 +- 0.5), ended in the hop after the last
    # window's start (7 + 0.5); one window alone: the middle 2 s it shares with no neighbour
    assert present((4.0, 11.0, "dog"), 3.0, 1.0) == (6.5, 8.5, "dog")
    assert present((4.0, 7.0, "dog"), 3.0, 1.0) == (4.5, 6.5, "dog")
    assert present((4.0, 9.0, "dog"), 3.0, 1.0) == (6.0, 7.0, "dog")  # three windows: a hop at their middle
    assert present((0.0, 6.0, "dog"), 3.0, 1.0) == (1.0, 3.5, "dog")  # from 0: between 0 and 2 s
    audio = _scenes(tmp_path)
    cfg, rows = _detections(tiny_model, tmp_path, audio, -1.0)  # every window fires
    assert rows
    inner = _tsv(tmp_path / "inner.tsv", [(f, s + 1.0, e - 1.0, label) for f, s, e, label in rows])
    for timing, f1 in (("reported", 0.0), ("centre", 1.0)):
        out = tmp_path / f"{timing}.json"
        done = run_cli("evaluate", "--config", str(cfg), "--audio", str(audio), "--labels", str(inner),
                       "--collar", "0.5", "--timing", timing, "--json", str(out))
        assert done.returncode == 0, done.stderr
        assert f"detections timed as {timing}" in done.stdout
        report = json.loads(out.read_text())
        assert report["timing"] == timing and report["per_label"]["dog"]["f1"] == pytest.approx(f1), timing
