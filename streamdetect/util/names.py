"""The rules that turn a stream or label name into a harmless file name (``safe_name``) or an MQTT topic level
and Home Assistant id (``safe_id``: the same rule without dots).

Stream and label names are free text ("glass breaking", "Küche", "cam/front", "🐶"). Wherever one becomes part
of a path or a topic it goes through one of these, so that every place maps a name the same way and two
different names can never end up in one folder or on one topic (earlier, each place had its own rule, and the
embedding log put streams "a b" and "a_b" into the same folder).
"""

from __future__ import annotations

import hashlib
import json
import re

MAX_CHARS = 64  # of the readable part; with the hash the result stays far below any file system's NAME_MAX
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]+")  # Home Assistant's class for object and node ids: no dots


def name_hash(text: str) -> str:
    """The short, stable digest ``safe_name`` appends: the first 6 hex digits of the SHA-1 of the UTF-8 text.

    SHA-1 and 6 digits because that is what the clips sink always appended to its folder and file names, so
    clips saved before this helper existed keep their names; it is an identifier, not a security measure.
    """
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:6]


def safe_name(text: str) -> str:
    """``text`` as a file name or topic level: only ``[A-Za-z0-9._-]``, no leading dot, at most ``MAX_CHARS``
    plus a hash.

    The rule: every run of other characters becomes one ``_``, leading dots are dropped, the result is cut to
    ``MAX_CHARS``, and an empty result becomes ``_``. If that changed anything at all, ``-`` and
    ``name_hash(text)`` are appended. So:

    - a name that is already safe is used unchanged ("dog_barking" -> "dog_barking", "yard.wav" ->
      "yard.wav"): existing folders, clip names and topics of such names stay what they were. Dots are
      allowed because a file run's stream is named after its file: "yard.wav" was and stays
      ``<prefix>/yard.wav/dog`` in MQTT and ``..._yard.wav_...`` in clip names;
    - a changed name always carries the hash of the original, so distinct inputs do not collide even when
      their readable parts are equal: "a b" -> "a_b-<hash>" differs from "a_b"; "glass/breaking" and
      "glass breaking" get different hashes; emoji-only or empty names get "_-<hash>";
    - the result can never be "", "." or "..", contains no path separator, never starts with a dot, and is a
      valid MQTT topic level (no "/", "+", "#", spaces). A Home Assistant id allows no dots: the MQTT sink
      uses ``safe_id`` below, the same rule with dots counted as unsafe.

    This is the rule the clips sink always had, so clip folders and names are as before (file names may keep
    their dots: "yard.wav" stays readable in a clip's name). The embedding log used to drop the information
    instead ("garden mic" was folder "garden_mic", like "garden_mic"); for such changed names it now carries
    the hash. The refinement store hashed every name;
    it still finds folders it made that way.

    Only a safe name that itself ends in ``-`` and six hex digits could in theory equal another name's result;
    nobody names an event like that by accident.
    """
    clean = _UNSAFE.sub("_", text).lstrip(".")[:MAX_CHARS] or "_"
    return clean if clean == text else f"{clean}-{name_hash(text)}"


def safe_id(*parts: str) -> str:
    """``parts`` as one identifier of ``[A-Za-z0-9_-]`` only: an MQTT topic level, a Home Assistant
    ``object_id``/``node_id``/``unique_id`` (HA accepts no other characters there, so no dots, unlike
    ``safe_name``).

    One part: the same rule as ``safe_name`` with ``.`` counted as unsafe too: unchanged if already made of
    those characters ("dog_barking" -> "dog_barking"), otherwise every run of other characters becomes ``_``
    and ``-`` plus ``name_hash(part)`` is appended ("yard.wav" -> "yard_wav-<hash>", "door.bell" ->
    "door_bell-<hash>", "glass breaking" and "glass/breaking" get different hashes, "🐶" -> "_-<hash>").

    Several parts (a stream and a label): their readable forms joined by ``_``, always followed by ``-`` and
    the hash of the parts as one JSON list. Joining alone is ambiguous (stream "a" with label "b_c" and stream
    "a_b" with label "c" both read "a_b_c"); the hash of the list is not, so two different pairs never share
    an id (short of a 24-bit hash collision).
    """
    if len(parts) == 1:
        text = parts[0]
        clean = _UNSAFE_ID.sub("_", text)[:MAX_CHARS] or "_"
        return clean if clean == text else f"{clean}-{name_hash(text)}"
    readable = "_".join(_UNSAFE_ID.sub("_", p)[:MAX_CHARS] or "_" for p in parts)
    return f"{readable}-{name_hash(json.dumps(list(parts), ensure_ascii=False))}"


def short_id(event_id: str) -> str:
    """The eight-character event id that clip file names, notifications and ``review`` show: the first eight
    letters and digits of the record's id (``"0"`` for an id without any), so every place names an event alike."""
    return re.sub("[^0-9A-Za-z]", "", event_id)[:8] or "0"
