"""MQTT: an ON/OFF state topic per stream and label, a JSON event topic, an availability topic, QoS 1, and
optional Home Assistant discovery.

paho-mqtt runs its own network thread, reconnects with back-off after the broker goes away, and keeps QoS 1
messages queued meanwhile, so a broker restart loses nothing. Topics (each name through ``safe_id``):
``<prefix>/<stream>/<label>`` (retained ON/OFF), ``<prefix>/<stream>/<label>/event`` (the record as JSON) and
``<prefix>/status`` (retained ``online``; the broker's last will sets ``offline`` when the daemon dies). With
the config's ``site.name``, every topic has the site after the prefix: ``<prefix>/<site>/<stream>/<label>``.

Why the sink keeps the catalog and each entity's state: after a SIGKILL during an event the retained ON stays
on the broker, and a broker restarted without persistence forgets every retained message. So on each
(re)connect, on Home Assistant's birth message and on each catalog change the sink republishes what it knows:
the discovery config of every stream x label, and the current state of each (OFF unless an event is active
in this run, which is right after a restart). Entities of labels that are gone (a reload, or a config changed
between two runs) are cleared with empty retained messages: the sink subscribes to its own discovery topics
and clears those the catalog no longer has.

A broker that accepts the TCP connection and never answers it (CONNACK) is an outage like one that is down: each
connection attempt has a whole deadline, ``connect_timeout_s`` (``ConnackDeadline``), after which paho reconnects
with its back-off; the outage is logged once, and its end once (``OutageLog``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

from pydantic import Field

from streamdetect.pipeline.events import Catalog, EventRecord
from streamdetect.sinks.base import Sink, SinkContext, SinkError, SinkOptions
from streamdetect.util.names import safe_id
from streamdetect.util.ratelimit import OutageLog

log = logging.getLogger(__name__)
ONLINE, OFFLINE = "online", "offline"


class MqttOptions(SinkOptions):
    host: str = Field("localhost", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    prefix: str = Field("streamdetect", min_length=1, description="first topic level; also names this daemon "
                        "(availability topic, Home Assistant node id): give two daemons on one broker two prefixes")
    qos: int = Field(1, ge=0, le=2)
    client_id: str | None = None
    username: str | None = None
    password_env: str | None = Field(None, description="environment variable holding the password")
    tls: bool = False
    ca_certs: str | None = Field(None, description="CA bundle for TLS (default: the system's)")
    ha_discovery: bool = Field(False, description="announce each stream/label as a Home Assistant binary_sensor")
    discovery_prefix: str = Field("homeassistant", min_length=1, description="Home Assistant's discovery prefix; "
                                  "its birth message on <discovery_prefix>/status makes the sink announce again")
    max_reconnect_delay_s: int = Field(60, ge=1, le=3600)
    connect_timeout_s: float = Field(10.0, gt=0, le=300, description="deadline of one connection attempt, from TCP "
                                     "connect to the broker's answer (CONNACK); then it is retried with back-off")


class ConnackDeadline:
    """A deadline for one connection attempt of a paho client, up to the broker's CONNACK.

    paho bounds the TCP connect and the TLS handshake (``connect_timeout``) but then waits for the CONNACK as
    long as the keepalive (60 s), and says nothing meanwhile. So each attempt (paho's ``on_pre_connect``) starts
    a timer; when it expires before ``on_connect``, the socket is shut down under paho, whose network thread
    sees the connection lost and reconnects with its back-off. ``overdue`` says that the last attempt ended so.
    """

    def __init__(self, client: Any, timeout_s: float):
        self.client, self.timeout_s = client, timeout_s
        self.overdue = False
        self._attempt = 0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def started(self) -> None:
        with self._lock:
            self._cancel()
            self._attempt += 1
            self.overdue = False
            self._timer = threading.Timer(self.timeout_s, self._expire, args=(self._attempt,))
            self._timer.daemon = True
            self._timer.start()

    def stop(self) -> None:
        """The attempt ended (answered, refused or failed to connect), or the client is closing."""
        with self._lock:
            self._cancel()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, attempt: int) -> None:
        with self._lock:
            if attempt != self._attempt or self._timer is None:
                return  # answered meanwhile, or a later attempt
            self._timer = None
            self.overdue = True
        sock = self.client.socket()
        if sock is not None:
            try:  # the plain socket's shutdown, also under TLS: the SSL layer stays paho's to close
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass  # already gone: paho has noticed


class MqttSink(Sink[MqttOptions]):
    Options = MqttOptions

    def __init__(self, options: MqttOptions, site: str = ""):
        super().__init__(options)
        try:
            import paho.mqtt.client as mqtt
        except ImportError as e:
            raise SinkError("the mqtt sink needs paho-mqtt: pip install 'streamdetect[mqtt]'") from e
        # Many stations on one broker (config ``site.name``): <prefix>/<site>/... and a node of their own, so
        # one station's last will and clean-up never touch another's entities.
        self.site = site
        self.root = f"{options.prefix}/{safe_id(site)}" if site else options.prefix
        self.node = safe_id(options.prefix, site) if site else safe_id(options.prefix)
        self.availability_topic = f"{self.root}/status"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=options.client_id or "")
        if options.username:
            password = os.environ.get(options.password_env) if options.password_env else None
            if options.password_env and not password:
                raise SinkError(f"mqtt: environment variable {options.password_env} (password_env) is not set")
            self.client.username_pw_set(options.username, password)
        if options.tls:
            self.client.tls_set(ca_certs=options.ca_certs)
        self.client.reconnect_delay_set(min_delay=1, max_delay=options.max_reconnect_delay_s)
        self.client.connect_timeout = options.connect_timeout_s  # paho's own: TCP connect and TLS handshake
        self._connack = ConnackDeadline(self.client, options.connect_timeout_s)  # the rest: up to the CONNACK
        self._away = OutageLog(log, logging.WARNING)  # one line when the broker goes away, one when it is back
        # The broker publishes this for us if the connection dies without a DISCONNECT (SIGKILL, power, network).
        self.client.will_set(self.availability_topic, OFFLINE, qos=max(options.qos, 1), retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_pre_connect = lambda _client, _userdata: self._connack.started()
        self.client.on_connect_fail = self._on_connect_fail
        self._catalog: Catalog | None = None  # None until the detector names its streams
        self._seen: set[tuple[str, str]] = set()  # pairs met in records outside the catalog
        self._state: dict[tuple[str, str], str] = {}  # ON while an event is active in this run
        self._retained: dict[str, str] = {}  # object id -> state topic of our configs found on the broker
        self._closing = False
        self._unacked: set[int] = set()  # message ids not yet acknowledged by the broker (QoS 1/2)
        self._acked_early: set[int] = set()  # acknowledged before publish() returned their id to us
        self._lock = threading.Lock()  # never held while calling into paho: paho calls back under its own locks
        self.client.connect_async(options.host, options.port)
        self.client.loop_start()

    @classmethod
    def create(cls, options: MqttOptions, context: SinkContext) -> MqttSink:
        return cls(options, context.site_name)

    # ----------------------------------------------------------------------------------------- topics, ids
    def state_topic(self, stream: str, label: str) -> str:
        return f"{self.root}/{safe_id(stream)}/{safe_id(label)}"

    def config_topic(self, stream: str, label: str) -> str:
        return f"{self.options.discovery_prefix}/binary_sensor/{self.node}/{safe_id(stream, label)}/config"

    def discovery_config(self, stream: str, label: str) -> dict:
        """The binary_sensor's discovery payload: names as configured (Home Assistant prefixes the entity's
        name with the device's, so the label alone, and the stream as the device), ids through ``safe_id``."""
        base = self.state_topic(stream, label)
        return {
            "name": label,
            "unique_id": f"{self.node}_{safe_id(stream, label)}",
            "state_topic": base,
            "payload_on": "ON",
            "payload_off": "OFF",
            "availability_topic": self.availability_topic,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device_class": "sound",
            "json_attributes_topic": f"{base}/event",
            "device": {"identifiers": [f"{self.node}_{safe_id(stream)}"],
                       "name": f"{self.site} {stream}" if self.site else stream,
                       "manufacturer": "streamdetect", "model": "streamdetect sound-event detector"},
            "origin": {"name": "streamdetect"},
        }

    # ------------------------------------------------------------------------------------- sink interface
    def catalog_changed(self, catalog: Catalog) -> None:
        with self._lock:
            old, self._catalog = self._catalog, catalog
        for stream, label in sorted(old.pairs() - catalog.pairs()) if old is not None else ():
            self._clear(self.config_topic(stream, label), self.state_topic(stream, label))
        self._announce_all()

    def emit(self, record: EventRecord) -> None:
        pair = (record.stream, record.label)
        state = "ON" if record.phase == "start" else "OFF"
        with self._lock:
            self._state[pair] = state
            known = self._catalog is not None and pair in self._catalog.pairs() or pair in self._seen
            if not known and not record.interrupted:  # a stream opened without a catalog (tools, tests)
                self._seen.add(pair)
        base = self.state_topic(*pair)
        if self.options.ha_discovery and not known and not record.interrupted:
            self._publish(self.config_topic(*pair), json.dumps(self.discovery_config(*pair)), retain=True)
        self._publish(base, state, retain=True)
        self._publish(f"{base}/event", json.dumps(record.to_dict()), retain=False)

    def close(self, timeout_s: float = 10.0) -> None:
        """Say ``offline`` (a clean stop sends no last will), wait (bounded) for queued messages to reach the
        broker, then disconnect."""
        self._publish(self.availability_topic, OFFLINE, retain=True)
        deadline = time.monotonic() + timeout_s
        while self._unacked and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._unacked:
            log.error("mqtt: %d messages not delivered to %s:%d before shutdown", len(self._unacked),
                      self.options.host, self.options.port)
        self._closing = True
        self._connack.stop()
        self.client.disconnect()
        self.client.loop_stop()

    # ----------------------------------------------------------------------------------- paho callbacks
    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _properties: Any = None) -> None:
        self._connack.stop()
        if reason_code.is_failure:
            log.error("mqtt: %s:%d refused the connection (%s)", self.options.host, self.options.port, reason_code)
            return
        log.info("mqtt connected to %s:%d", self.options.host, self.options.port)
        self._away.recovered("mqtt: %s:%d answers again", self.options.host, self.options.port)
        self._publish(self.availability_topic, ONLINE, retain=True)
        if self.options.ha_discovery:
            prefix = self.options.discovery_prefix
            client.subscribe([(f"{prefix}/status", 1), (f"{prefix}/binary_sensor/{self.node}/+/config", 1)])
        self._announce_all()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any,
                       _properties: Any = None) -> None:
        if self._closing:
            log.info("mqtt disconnected from %s:%d", self.options.host, self.options.port)
        elif self._connack.overdue:
            self._away.failed("mqtt: %s:%d took the connection but sent no CONNACK within %g s (connect_timeout_s); "
                              "reconnecting with back-off (logged again when it answers)", self.options.host,
                              self.options.port, self.options.connect_timeout_s)
        else:
            self._away.failed("mqtt lost %s:%d (%s); reconnecting (logged again when it answers)", self.options.host,
                              self.options.port, reason_code)

    def _on_connect_fail(self, _client: Any, _userdata: Any) -> None:
        self._connack.stop()
        self._away.failed("mqtt: cannot connect to %s:%d; retrying with back-off (logged again when it answers)",
                          self.options.host, self.options.port)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        prefix = self.options.discovery_prefix
        if message.topic == f"{prefix}/status":
            if message.payload == ONLINE.encode():  # Home Assistant (re)started: it needs the configs again
                self._announce_all()
            return
        object_id = message.topic.split("/")[-2]
        with self._lock:
            if not message.payload:
                self._retained.pop(object_id, None)
                return
            try:
                topic = json.loads(message.payload).get("state_topic", "")
            except (ValueError, AttributeError):
                topic = ""
            self._retained[object_id] = topic
        self._sweep()

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, *_rest: Any) -> None:
        with self._lock:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._acked_early.add(mid)

    # ------------------------------------------------------------------------------------------- helpers
    def _announce_all(self) -> None:
        """Discovery configs and current states of every known pair; then clear our configs that are gone."""
        with self._lock:
            pairs = (self._catalog.pairs() if self._catalog is not None else set()) | self._seen
            states = {pair: self._state.get(pair, "OFF") for pair in pairs}
        for pair in sorted(pairs):
            if self.options.ha_discovery:
                self._publish(self.config_topic(*pair), json.dumps(self.discovery_config(*pair)), retain=True)
            self._publish(self.state_topic(*pair), states[pair], retain=True)
        self._sweep()

    def _sweep(self) -> None:
        """Clear discovery configs of ours on the broker that no known pair has (labels removed meanwhile)."""
        with self._lock:
            if self._catalog is None:  # before the catalog, every config would look stale
                return
            wanted = {safe_id(*pair) for pair in self._catalog.pairs() | self._seen}
            stale = {oid: topic for oid, topic in self._retained.items() if oid not in wanted}
            for oid in stale:
                del self._retained[oid]
        for oid, state_topic in sorted(stale.items()):
            log.info("mqtt: clearing the Home Assistant entity %s (its label or stream is no longer configured)",
                     oid)
            ours = state_topic.startswith(f"{self.root}/")
            self._clear(f"{self.options.discovery_prefix}/binary_sensor/{self.node}/{oid}/config",
                        state_topic if ours else None)

    def _clear(self, config_topic: str, state_topic: str | None) -> None:
        """An empty retained message deletes the retained one: Home Assistant removes the entity."""
        if self.options.ha_discovery:
            self._publish(config_topic, "", retain=True)
        if state_topic:
            self._publish(state_topic, "", retain=True)

    def _publish(self, topic: str, payload: str, retain: bool) -> None:
        # Without a connection paho still queues QoS 1/2 messages and sends them once it reconnects.
        info = self.client.publish(topic, payload, qos=self.options.qos, retain=retain)
        if self.options.qos > 0:
            with self._lock:
                if info.mid in self._acked_early:
                    self._acked_early.discard(info.mid)
                else:
                    self._unacked.add(info.mid)
