import pytest

from streamdetect.pipeline.events import EventRules, EventTracker, LabelScore, State, WindowScore
from streamdetect.util.times import iso_of


def wall(k: int) -> float:
    """The wall time (epoch seconds) the caller gives window ``k``; records carry it in ISO form."""
    return 1_780_000_000.0 + k


def run(rules, scores, vetoes=None, window_s=3.0, hop_s=1.0):
    tracker = EventTracker("bird", rules, stream="s")
    records = []
    for k, score in enumerate(scores):
        veto = (vetoes or {}).get(k)
        ws = WindowScore(k * hop_s, k * hop_s + window_s, score, veto, (LabelScore("bird", score),), wall(k))
        records += tracker.update(ws)
    records += tracker.finish(wall(len(scores)))
    return records


def test_fires_on_first_window_above_threshold_and_ends_with_full_extent():
    records = run(EventRules(threshold=0.5, hysteresis=0.0, cooldown_s=0.0), [0.1, 0.6, 0.9, 0.7, 0.2, 0.1])
    start, end = records
    assert (start.phase, start.start_s, start.end_s, start.time) == ("start", 1.0, None, iso_of(wall(1)))
    assert (end.phase, end.start_s, end.end_s) == ("end", 1.0, 6.0)  # window 3 ends at 6 s
    assert end.peak_score == 0.9 and end.peak_time_s == 3.5 and end.id == start.id
    assert end.top[0].label == "bird" and end.stream == "s"


def test_min_windows_needs_consecutive_windows():
    rules = EventRules(threshold=0.5, min_windows=3, hysteresis=0.0, cooldown_s=0.0)
    assert run(rules, [0.6, 0.6, 0.1, 0.6, 0.6, 0.1]) == []
    start, end = run(rules, [0.1, 0.6, 0.6, 0.6, 0.1])
    assert start.start_s == 1.0 and start.time == iso_of(wall(3))  # fires when the third window arrives


def test_hysteresis_keeps_event_active_until_score_drops_below_threshold_minus_hysteresis():
    rules = EventRules(threshold=0.5, hysteresis=0.1, cooldown_s=0.0)
    records = run(rules, [0.6, 0.45, 0.42, 0.39, 0.6])
    assert [r.phase for r in records] == ["start", "end", "start", "end"]
    assert records[1].end_s == 5.0  # windows 0-2 stayed above 0.4


def test_cooldown_blocks_refiring_and_events_never_overlap():
    rules = EventRules(threshold=0.5, hysteresis=0.0, cooldown_s=2.0)
    records = run(rules, [0.6, 0.1, 0.6, 0.6, 0.6, 0.1, 0.1, 0.1, 0.6, 0.1])
    starts = [r for r in records if r.phase == "start"]
    ends = [r for r in records if r.phase == "end"]
    # window 1 (ends 4 s) closes the first event, so nothing may fire before windows ending at 6 s: window 3
    assert [s.start_s for s in starts] == [0.0, 3.0, 8.0]
    for prev_end, nxt in zip(ends, starts[1:], strict=False):
        assert nxt.start_s >= prev_end.end_s


def test_no_cooldown_still_never_overlaps():
    records = run(EventRules(threshold=0.5, hysteresis=0.0, cooldown_s=0.0), [0.6, 0.1, 0.6, 0.1])
    assert [(r.phase, r.start_s, r.end_s) for r in records] == [
        ("start", 0.0, None), ("end", 0.0, 3.0), ("start", 3.0, None), ("end", 3.0, 5.0)]


def test_negative_prompt_vetoes_firing_and_ends_an_event():
    rules = EventRules(threshold=0.5, hysteresis=0.0, cooldown_s=0.0)
    assert run(rules, [0.9, 0.9], vetoes={0: "wind", 1: "wind"}) == []
    records = run(rules, [0.9, 0.9, 0.9], vetoes={1: "wind"})
    assert [(r.phase, r.end_s) for r in records[:2]] == [("start", None), ("end", 3.0)]


def test_finish_closes_active_event_and_reset_starts_over():
    tracker = EventTracker("x", EventRules(threshold=0.0))
    tracker.update(WindowScore(0, 3, 0.5, None, (), wall(0)))
    (end,) = tracker.finish(wall(5))
    assert end.phase == "end" and end.end_s == 3 and end.time == iso_of(wall(5))
    assert tracker.finish(wall(6)) == []
    tracker.reset()
    assert tracker.update(WindowScore(0, 3, 0.5, None, (), wall(7)))[0].phase == "start"


@pytest.mark.parametrize("scores", [[0.9] * 5, [0.0] * 5, [0.9, 0.0] * 4])
def test_every_start_has_exactly_one_end(scores):
    records = run(EventRules(threshold=0.5), scores)
    phases = [r.phase for r in records]
    assert phases.count("start") == phases.count("end")
    assert all(a != b for a, b in zip(phases, phases[1:], strict=False))


def test_the_tracker_names_its_state_at_every_step():
    """idle -> arming (a run shorter than min_windows) -> active (start emitted) -> cooldown (ended by a low
    window) -> idle once a window ends past the cooldown; a run broken while arming falls back to idle."""
    tracker = EventTracker("bird", EventRules(threshold=0.5, hysteresis=0.0, min_windows=2, cooldown_s=2.0))
    seen = []
    for k, score in enumerate([0.1, 0.9, 0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.9]):
        records = tracker.update(WindowScore(k, k + 1.0, score, None, (), wall(k)))
        seen.append((tracker.state, [r.phase for r in records]))
    assert seen == [
        (State.IDLE, []), (State.ARMING, []), (State.IDLE, []),  # one window above: not yet, then broken
        (State.ARMING, []), (State.ACTIVE, ["start"]), (State.ACTIVE, []),
        (State.COOLDOWN, ["end"]),  # window 6 (ends 7 s) ends it: nothing may start before windows ending at 9 s
        (State.COOLDOWN, []), (State.ARMING, []),  # window 8 ends at 9 s: the cooldown is over, a run begins
        (State.IDLE, []), (State.IDLE, []), (State.ARMING, []),
    ]
    assert tracker.finish(wall(12)) == [] and tracker.state is State.IDLE  # a run still arming opens nothing
    tracker.update(WindowScore(12, 13.0, 0.9, None, (), wall(12)))
    tracker.update(WindowScore(13, 14.0, 0.9, None, (), wall(13)))
    assert tracker.state is State.ACTIVE
    (end,) = tracker.finish(wall(14))
    assert end.phase == "end" and tracker.state is State.IDLE  # closed from outside: no cooldown
