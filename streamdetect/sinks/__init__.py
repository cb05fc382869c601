"""Event sinks, chosen by ``type`` in the config; third parties register more under ``streamdetect.sinks``."""

from streamdetect.plugins import Registry

SINKS = Registry(
    kind="sink",
    entry_point_group="streamdetect.sinks",
    builtins={
        "stdout": "streamdetect.sinks.stdout:StdoutSink",
        "jsonl": "streamdetect.sinks.jsonl:JsonlSink",
        "webhook": "streamdetect.sinks.webhook:WebhookSink",
        "sqlite": "streamdetect.sinks.sqlite:SqliteSink",
        "command": "streamdetect.sinks.command:CommandSink",
        "mqtt": "streamdetect.sinks.mqtt:MqttSink",
        "clips": "streamdetect.sinks.clips:ClipsSink",
        "apprise": "streamdetect.sinks.apprise:AppriseSink",
    },
)
