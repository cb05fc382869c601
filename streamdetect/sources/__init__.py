"""Audio sources, chosen by ``type`` in the config; third parties register more under ``streamdetect.sources``.

The registry table itself is ``streamdetect.plugins.SOURCES``; it is re-exported here for the import path plugins use.
"""

from streamdetect.plugins import SOURCES

__all__ = ["SOURCES"]
