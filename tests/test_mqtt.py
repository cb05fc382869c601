"""The MQTT sink against a real Mosquitto broker on loopback: a broker that starts late, availability and its
last will under SIGKILL, Home Assistant discovery (start-up, birth message, removed labels) and valid ids."""

import json
import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fakes import TcpProxy
from helpers import event_record, free_port, run_cli, write_config, write_tone_scene

from streamdetect.sinks.mqtt import MqttOptions, MqttSink
from streamdetect.util.names import safe_id

HA_ID = re.compile(r"^[a-zA-Z0-9_-]+$")  # Home Assistant's rule for node and object ids


def start_broker(tmp_path, port):
    if shutil.which("mosquitto") is None and not shutil.os.path.exists("/usr/sbin/mosquitto"):
        pytest.fail("mosquitto not found: run `bash scripts/setup.sh --dev` (Debian package mosquitto)")
    conf = tmp_path / f"mosquitto-{port}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("mosquitto did not start")


class Subscriber:
    def __init__(self, port, topics=("#",)):
        import paho.mqtt.client as mqtt

        self.messages, self.ready = [], threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p=None: ([c.subscribe(t, qos=1) for t in topics],
                                                              self.ready.set())
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload.decode(), m.retain))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)
        time.sleep(0.2)

    def wait_for(self, n, timeout=15):
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages

    def stop(self):
        self.client.disconnect()  # first: the network thread then ends at once, not at its next 1 s poll
        self.client.loop_stop()


def rec(phase, stream="garden mic", label="dog/bark"):
    return event_record(phase, label=label, start_s=1.0, end_s=4.0 if phase == "end" else None, peak_score=0.4,
                        peak_time_s=2.5, stream=stream, time="t")


def test_ids_are_valid_for_home_assistant_and_never_collide():
    # the names of the issue: 7 distinct labels made 4 topics, two stream/label pairs shared one entity
    labels = ["glass breaking", "glass/breaking", "glass_breaking", "🐶", "🐱", "door.bell", "door_bell"]
    ids = [safe_id(x) for x in labels]
    assert all(HA_ID.match(i) for i in ids) and len(set(ids)) == len(labels)
    assert safe_id("glass_breaking") == "glass_breaking" and safe_id("door.bell").startswith("door_bell-")
    pairs = [("a", "b_c"), ("a_b", "c"), ("cam1.local", "door.bell"), ("cam1_local", "door_bell")]
    objects = [safe_id(*p) for p in pairs]
    assert all(HA_ID.match(o) for o in objects) and len(set(objects)) == len(pairs)
    sink = MqttSink(MqttOptions(host="127.0.0.1", port=free_port(), ha_discovery=True))
    try:
        config = sink.discovery_config("cam1.local", "door.bell")
        topic = sink.config_topic("cam1.local", "door.bell")
        documented = re.search(r"```json\n(.*?)```", (Path(__file__).parent.parent / "docs/sinks/mqtt.md").read_text(),
                               re.S).group(1)
        assert sink.discovery_config("garden mic", "dog barking") == json.loads(documented)
    finally:
        sink.client.loop_stop()
    _, component, node, object_id, _ = topic.split("/")
    assert component == "binary_sensor" and HA_ID.match(node) and HA_ID.match(object_id)
    assert HA_ID.match(config["unique_id"]) and config["availability_topic"] == "streamdetect/status"
    # names as configured, and the stream only once (Home Assistant puts the device's name in front)
    assert config["name"] == "door.bell" and config["device"]["name"] == "cam1.local"


def test_cli_run_publishes_states_events_and_discovery(tiny_model, tmp_path):
    port = free_port()
    broker = start_broker(tmp_path, port)
    try:
        sub = Subscriber(port)
        wav = write_tone_scene(tmp_path / "yard.wav", seconds=4.0)
        cfg = write_config(tmp_path / "c.yaml", tiny_model,
                           [{"label": "dog", "prompts": ["a dog barking"], "threshold": -1.0}],
                           sinks=[{"type": "mqtt", "host": "127.0.0.1", "port": port, "ha_discovery": True}])
        result = run_cli("run", "--config", str(cfg), "--input", str(wav))
        assert result.returncode == 0, result.stderr
        messages = sub.wait_for(5)
        sub.stop()
    finally:
        broker.kill()
    by_topic = {}
    for topic, payload, _ in messages:
        by_topic.setdefault(topic, []).append(payload)
    state = f"streamdetect/{safe_id('yard.wav')}/dog"
    assert by_topic[state] == ["OFF", "ON", "OFF"]  # announced OFF at start-up, then the event
    events = [json.loads(p) for p in by_topic[f"{state}/event"]]
    assert [e["phase"] for e in events] == ["start", "end"] and events[1]["end_s"] == 4.0
    config = json.loads(by_topic[f"homeassistant/binary_sensor/streamdetect/{safe_id('yard.wav', 'dog')}/config"][0])
    assert config["state_topic"] == state and config["device_class"] == "sound"
    assert by_topic["streamdetect/status"] == ["online", "offline"]  # a clean stop says offline itself
    assert "reconnecting" not in result.stderr and "mqtt disconnected from" in result.stderr


def test_messages_wait_for_a_broker_that_comes_up_late(tmp_path):
    port = free_port()
    sink = MqttSink(MqttOptions(host="127.0.0.1", port=port, max_reconnect_delay_s=1))
    sink.emit(rec("start"))  # no broker yet: queued by the client
    sink.emit(rec("end"))
    time.sleep(1.0)
    broker = start_broker(tmp_path, port)
    try:
        sub = Subscriber(port, topics=("streamdetect/#",))
        sink.close(timeout_s=20)
        messages = sub.wait_for(4)
        sub.stop()
    finally:
        broker.kill()
    states = [p for t, p, _ in messages if t == f"streamdetect/{safe_id('garden mic')}/{safe_id('dog/bark')}"]
    assert states[-1] == "OFF"  # the retained state after reconnecting is the latest one
    assert [json.loads(p)["phase"] for t, p, _ in messages if t.endswith("/event")] == ["start", "end"]



def test_a_broker_that_never_answers_the_connection_is_an_outage_within_the_deadline(tmp_path, caplog):
    """paho waits for a CONNACK as long as the keepalive (60 s), silently; the sink gives it connect_timeout_s."""
    port = free_port()
    broker = start_broker(tmp_path, port)
    proxy = TcpProxy(port, mode="stall")  # the broker gets the CONNECT; its CONNACK is held back
    try:
        sub = Subscriber(port, topics=("streamdetect/#",))
        caplog.set_level(logging.INFO, logger="streamdetect.sinks.mqtt")
        started = time.monotonic()
        sink = MqttSink(MqttOptions(host="127.0.0.1", port=proxy.port, connect_timeout_s=0.3,
                                    max_reconnect_delay_s=1))
        sink.emit(rec("start"))  # queued by paho meanwhile (QoS 1)
        sink.emit(rec("end"))

        def outage_lines():
            return [r for r in caplog.records if "no CONNACK" in r.getMessage()]

        while not outage_lines() and time.monotonic() - started < 20:
            time.sleep(0.02)
        # noticed after the 0.3 s deadline, not paho's 60 s keepalive (the bound leaves room for a busy machine)
        assert outage_lines() and time.monotonic() - started < 10
        while sink._away.failures < 2 and time.monotonic() - started < 30:  # a second attempt (1 s back-off)
            time.sleep(0.02)
        assert sink._away.failures >= 2 and len(outage_lines()) == 1  # logged once per outage
        proxy.set("pass")
        sink.close(timeout_s=5)
        messages = sub.wait_for(4, timeout=5)
        sub.stop()
    finally:
        proxy.stop()
        broker.kill()
    phases = [json.loads(p)["phase"] for t, p, _ in messages if t.endswith("/event")]
    # QoS 1 is at least once: the broker may have taken a PUBLISH during a stalled attempt and gets it again (DUP)
    # after the CONNACK; what matters is that both arrive, in order
    assert list(dict.fromkeys(phases)) == ["start", "end"], phases
    assert any("answers again (after" in r.getMessage() for r in caplog.records)


def retained(port, topics=("#",)):
    """What a client connecting now gets: the broker's retained messages (what Home Assistant sees on start)."""
    sub = Subscriber(port, topics)
    time.sleep(0.5)
    sub.stop()
    return {t: p for t, p, r in sub.messages if r}


def test_sigkill_leaves_offline_and_the_restart_corrects_state_store_and_entities(tiny_model, tmp_path):
    """SIGKILL during an event: the last will says offline; the restart says online, sets the stuck ON to OFF,
    closes the store's open events as interrupted, and clears the entity of a label removed meanwhile."""
    port = free_port()
    broker = start_broker(tmp_path, port)
    stream, fires, removed, never = "cam1.local", "door.bell", "glass breaking", "quiet one"
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "long.wav", (0.1 * rng.standard_normal(120 * 48_000)).astype(np.float32), 48_000)
    db = tmp_path / "events.db"
    sinks = [{"type": "mqtt", "host": "127.0.0.1", "port": port, "ha_discovery": True},
             {"type": "sqlite", "path": str(db)}]
    events = [{"label": fires, "prompts": ["a bell"], "threshold": -1.0},
              {"label": removed, "prompts": ["glass"], "threshold": -1.0},
              {"label": never, "prompts": ["silence"], "threshold": 1.0}]
    # -re: ffmpeg delivers the file in real time, so the daemon is still running (event active) when killed
    source = {"type": "ffmpeg", "name": stream, "url": str(tmp_path / "long.wav"), "live": False,
              "input_args": ["-re"]}
    cfg = write_config(tmp_path / "one.yaml", tiny_model, events, sinks, sources=[source])
    sub = Subscriber(port)
    daemon = subprocess.Popen([sys.executable, "-m", "streamdetect", "run", "--config", str(cfg)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        config_topics = {f"homeassistant/binary_sensor/streamdetect/{safe_id(stream, x)}/config": x
                         for x in (fires, removed, never)}
        on = f"streamdetect/{safe_id(stream)}/{safe_id(fires)}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and daemon.poll() is None:
            got = {t: p for t, p, _ in sub.messages}
            if set(config_topics) <= set(got) and got.get(on) == "ON" and db.is_file():
                break
            time.sleep(0.1)
        assert daemon.poll() is None, daemon.communicate()[1].decode()[-3000:]
        # every stream x label announced at start-up, the one that never fires too, all with availability
        for topic in config_topics:
            config = json.loads(next(p for t, p, _ in sub.messages if t == topic))
            assert config["availability_topic"] == "streamdetect/status" and HA_ID.match(topic.split("/")[3])
        # Home Assistant's birth message: everything is announced again
        before = sum(t in config_topics for t, _, _ in sub.messages)
        sub.client.publish("homeassistant/status", "online", qos=1)
        deadline = time.monotonic() + 20
        while sum(t in config_topics for t, _, _ in sub.messages) < before + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum(t in config_topics for t, _, _ in sub.messages) >= before + 3
        for _ in range(100):  # the start rows are in the store
            with sqlite3.connect(db, timeout=5) as c:
                if c.execute("SELECT count(*) FROM records WHERE phase = 'start'").fetchone()[0] == 2:
                    break
            time.sleep(0.1)
        os.killpg(daemon.pid, signal.SIGKILL)  # the daemon and its ffmpeg, as systemd kills a unit's group
        daemon.wait(30)
        deadline = time.monotonic() + 20
        while ("streamdetect/status", "offline", False) not in sub.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        sub.stop()
        assert ("streamdetect/status", "offline", False) in sub.messages  # the broker sent the last will
        stuck = retained(port)
        assert stuck["streamdetect/status"] == "offline" and stuck[on] == "ON"

        # Restart without the removed label, on a short quiet file under the same stream name.
        sf.write(tmp_path / "short.wav", np.zeros(2 * 48_000, np.float32), 48_000)
        events2 = [{**events[0], "threshold": 1.0}, events[2]]  # nothing fires in this run
        cfg2 = write_config(tmp_path / "two.yaml", tiny_model, events2, sinks,
                            sources=[{"type": "file", "name": stream, "path": str(tmp_path / "short.wav")}])
        result = run_cli("run", "--config", str(cfg2))
        assert result.returncode == 0, result.stderr
        assert "left open by a crash; closed as interrupted" in result.stderr
        assert "reconnecting" not in result.stderr
        after = retained(port)
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(30)
        broker.kill()
    assert after[on] == "OFF" and after["streamdetect/status"] == "offline"
    gone = f"homeassistant/binary_sensor/streamdetect/{safe_id(stream, removed)}/config"
    assert gone not in after and f"streamdetect/{safe_id(stream)}/{safe_id(removed)}" not in after
    assert json.loads(after[f"homeassistant/binary_sensor/streamdetect/{safe_id(stream, fires)}/config"])
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT label, phase, interrupted FROM records ORDER BY label, phase").fetchall()
    assert rows == [(fires, "end", 1), (fires, "start", 0), (removed, "end", 1), (removed, "start", 0)]
