"""Event sinks, chosen by ``type`` in the config; third parties register more under ``streamdetect.sinks``.

The registry table itself is ``streamdetect.plugins.SINKS``; it is re-exported here for the import path plugins use.
"""

from streamdetect.plugins import SINKS

__all__ = ["SINKS"]
