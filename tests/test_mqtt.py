"""The MQTT sink against a real Mosquitto broker on loopback, including a broker that starts late."""

import json
import shutil
import socket
import subprocess
import threading
import time

import pytest
from helpers import event_record, free_port, run_cli, write_config, write_tone_scene

from streamdetect.sinks.mqtt import MqttOptions, MqttSink
from streamdetect.util.names import safe_name


def start_broker(tmp_path, port):
    if shutil.which("mosquitto") is None and not shutil.os.path.exists("/usr/sbin/mosquitto"):
        pytest.fail("mosquitto not found: run `bash tools/setup.sh --dev` (Debian package mosquitto)")
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
        self.client.loop_stop()
        self.client.disconnect()


def rec(phase, stream="garden mic", label="dog/bark"):
    return event_record(phase, label=label, start_s=1.0, end_s=4.0 if phase == "end" else None, peak_score=0.4,
                        peak_time_s=2.5, stream=stream, time="t")


def test_topic_parts_are_safe():
    assert not set("/+# ") & set(safe_name("garden mic/+#")) and safe_name("garden mic/+#") != safe_name("garden_mic")
    assert safe_name("dog/bark").startswith("dog_bark-") and safe_name("dog") == "dog"


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
    assert by_topic["streamdetect/yard.wav/dog"] == ["ON", "OFF"]
    events = [json.loads(p) for p in by_topic["streamdetect/yard.wav/dog/event"]]
    assert [e["phase"] for e in events] == ["start", "end"] and events[1]["end_s"] == 4.0
    config = json.loads(by_topic["homeassistant/binary_sensor/streamdetect_yard.wav_dog/config"][0])
    assert config["state_topic"] == "streamdetect/yard.wav/dog" and config["device_class"] == "sound"


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
    states = [p for t, p, _ in messages if t == f"streamdetect/{safe_name('garden mic')}/{safe_name('dog/bark')}"]
    assert states[-1] == "OFF"  # the retained state after reconnecting is the latest one
    assert [json.loads(p)["phase"] for t, p, _ in messages if t.endswith("/event")] == ["start", "end"]
