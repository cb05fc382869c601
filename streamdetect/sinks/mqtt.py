"""MQTT: an ON/OFF state topic per stream and label, a JSON event topic, QoS 1, optional Home Assistant discovery.

paho-mqtt runs its own network thread, reconnects with back-off after the broker goes away, and keeps QoS 1
messages queued meanwhile, so a broker restart loses nothing. Topics:
``<prefix>/<stream>/<label>`` (retained ON/OFF) and ``<prefix>/<stream>/<label>/event`` (the record as JSON).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from pydantic import Field

from streamdetect.pipeline.events import EventRecord
from streamdetect.sinks.base import Sink, SinkError, SinkOptions
from streamdetect.util.names import safe_name

log = logging.getLogger(__name__)


class MqttOptions(SinkOptions):
    host: str = Field("localhost", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    prefix: str = Field("streamdetect", min_length=1)
    qos: int = Field(1, ge=0, le=2)
    client_id: str | None = None
    username: str | None = None
    password_env: str | None = Field(None, description="environment variable holding the password")
    tls: bool = False
    ca_certs: str | None = Field(None, description="CA bundle for TLS (default: the system's)")
    ha_discovery: bool = Field(False, description="announce each stream/label as a Home Assistant binary_sensor")
    discovery_prefix: str = "homeassistant"
    max_reconnect_delay_s: int = Field(60, ge=1, le=3600)


class MqttSink(Sink):
    Options = MqttOptions

    def __init__(self, options: MqttOptions):
        super().__init__(options)
        try:
            import paho.mqtt.client as mqtt
        except ImportError as e:
            raise SinkError("the mqtt sink needs paho-mqtt: pip install 'streamdetect[mqtt]'") from e
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=options.client_id or "")
        if options.username:
            password = os.environ.get(options.password_env) if options.password_env else None
            if options.password_env and not password:
                raise SinkError(f"mqtt: environment variable {options.password_env} (password_env) is not set")
            self.client.username_pw_set(options.username, password)
        if options.tls:
            self.client.tls_set(ca_certs=options.ca_certs)
        self.client.reconnect_delay_set(min_delay=1, max_delay=options.max_reconnect_delay_s)
        self.client.on_connect = lambda c, u, f, rc, p=None: log.info("mqtt connected to %s:%d (%s)",
                                                                       options.host, options.port, rc)
        self.client.on_disconnect = lambda c, u, f, rc, p=None: log.warning("mqtt disconnected (%s); reconnecting",
                                                                             rc)
        self._announced: set[tuple[str, str]] = set()
        self._unacked: set[int] = set()  # message ids not yet acknowledged by the broker (QoS 1/2)
        self._acked_early: set[int] = set()  # acknowledged before publish() returned their id to us
        self._lock = threading.Lock()  # never held while calling into paho: paho calls back under its own locks
        self.client.on_publish = self._on_publish
        self.client.connect_async(options.host, options.port)
        self.client.loop_start()

    def _on_publish(self, _client, _userdata, mid, *_rest) -> None:
        with self._lock:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._acked_early.add(mid)

    def emit(self, record: EventRecord) -> None:
        # safe_name: no '/', '+', '#' or spaces in a topic level, valid in a Home Assistant object id, and two
        # streams or labels never share a topic or an entity
        stream, label = safe_name(record.stream), safe_name(record.label)
        if record.site:  # several stations on one broker: <prefix>/<site>/<stream>/<label>, and their own entities
            stream = f"{safe_name(record.site)}/{stream}"
        base = f"{self.options.prefix}/{stream}/{label}"
        if self.options.ha_discovery and (stream, label) not in self._announced:
            self._announce(stream, label, base)
        state = "ON" if record.phase == "start" else "OFF"
        self._publish(base, state, retain=True)
        self._publish(f"{base}/event", json.dumps(record.to_dict()), retain=False)

    def _announce(self, stream: str, label: str, base: str) -> None:
        stream = stream.replace("/", "_")  # a site's stream: one level in object ids
        unique = f"streamdetect_{stream}_{label}"
        config = {
            "name": f"{label} ({stream})",
            "unique_id": unique,
            "state_topic": base,
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "sound",
            "json_attributes_topic": f"{base}/event",
            "device": {"identifiers": [f"streamdetect_{stream}"], "name": f"streamdetect {stream}",
                       "manufacturer": "streamdetect"},
        }
        self._publish(f"{self.options.discovery_prefix}/binary_sensor/{unique}/config", json.dumps(config),
                      retain=True)
        self._announced.add((stream, label))

    def _publish(self, topic: str, payload: str, retain: bool) -> None:
        # Without a connection paho still queues QoS 1/2 messages and sends them once it reconnects.
        info = self.client.publish(topic, payload, qos=self.options.qos, retain=retain)
        if self.options.qos > 0:
            with self._lock:
                if info.mid in self._acked_early:
                    self._acked_early.discard(info.mid)
                else:
                    self._unacked.add(info.mid)

    def close(self, timeout_s: float = 10.0) -> None:
        """Wait (bounded) for queued messages to reach the broker, then disconnect."""
        deadline = time.monotonic() + timeout_s
        while self._unacked and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._unacked:
            log.error("mqtt: %d messages not delivered to %s:%d before shutdown", len(self._unacked),
                      self.options.host, self.options.port)
        self.client.disconnect()
        self.client.loop_stop()
