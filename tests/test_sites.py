"""Many stations, one broker: a site name in every record and topic, and event ids unique across stations."""

from __future__ import annotations

import json
import re

from helpers import (
    FakeEncoder,
    collecting_sink,
    file_windows,
    free_port,
    immediate_event,
    make_config,
    split_threshold,
    write_tone_scene,
)
from test_mqtt import Subscriber, start_broker

from streamdetect.daemon.build import build_detector
from streamdetect.model.manifest import ModelBundle
from streamdetect.sinks.base import SinkContext, SinkSet
from streamdetect.sinks.mqtt import MqttOptions, MqttSink


def station(tiny_model, site, port, threshold):
    sink = MqttSink.create(MqttOptions(host="127.0.0.1", port=port, ha_discovery=True), SinkContext(site_name=site or ""))
    config = make_config(tiny_model, [immediate_event("tone", threshold=threshold)], site={"name": site})
    detector = build_detector(config, ModelBundle.load(tiny_model), SinkSet([("mqtt", sink)]),
                              encoder=FakeEncoder.for_model(tiny_model))
    return detector, sink


def test_two_stations_fan_in_through_one_broker_with_their_site_in_topics_and_records(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "scene.wav", seconds=10.0)
    windows = file_windows(wav)
    probe, _ = station(tiny_model, None, free_port(), 0.0)
    threshold = split_threshold(probe.scores(windows).event[:, 0])
    port = free_port()
    broker = start_broker(tmp_path, port)
    try:
        sub = Subscriber(port)
        sinks = []
        for site in ("north", "south"):
            detector, sink = station(tiny_model, site, port, threshold)
            stream = detector.open_stream("mic", live=False)
            detector.analyse([(stream, w) for w in windows])
            detector.end_stream(stream)
            sinks.append(sink)
        for sink in sinks:
            sink.close(timeout_s=20)
        messages = sub.wait_for(12)
        sub.stop()
    finally:
        broker.kill()
    events = [(t, json.loads(p)) for t, p, _ in messages if t.endswith("/event")]
    assert {t.split("/")[1] for t, _ in events} == {"north", "south"}
    assert all(t.startswith(f"streamdetect/{e['site']}/mic/tone") for t, e in events)
    starts = [e for _, e in events if e["phase"] == "start"]
    assert len(starts) >= 2 and len({e["id"] for e in starts}) == len(starts)  # uuid4: unique across stations
    configs = [json.loads(p) for t, p, _ in messages if t.startswith("homeassistant/") and p]
    discovery = {c["unique_id"] for c in configs}
    # one entity per station, each with its own availability topic (one station's last will is not the other's)
    assert len(discovery) == 2 and all(re.match(r"^[a-zA-Z0-9_-]+$", u) for u in discovery)
    assert {c["availability_topic"] for c in configs} == {"streamdetect/north/status", "streamdetect/south/status"}
    assert {c["device"]["name"] for c in configs} == {"north mic", "south mic"}
    assert not any(t.startswith("homeassistant/") and not p for t, p, _ in messages)  # neither cleared the other


def test_a_station_without_a_site_writes_the_records_it_always_wrote(tiny_model, tmp_path):
    windows = file_windows(write_tone_scene(tmp_path / "scene.wav", seconds=8.0))
    for site in (None, "north"):
        config = make_config(tiny_model, [immediate_event("tone", threshold=-1.0)], site={"name": site} if site else {})
        sink = collecting_sink()
        detector = build_detector(config, ModelBundle.load(tiny_model), SinkSet([("c", sink)]),
                                  encoder=FakeEncoder.for_model(tiny_model))
        stream = detector.open_stream("mic", live=False)
        detector.analyse([(stream, w) for w in windows])
        detector.end_stream(stream)
        assert [r.phase for r in sink.records] == ["start", "end"]
        for record in sink.records:
            assert record.to_dict().get("site") == site and ("site" in record.to_dict()) == (site is not None)
