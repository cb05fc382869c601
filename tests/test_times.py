"""The one ISO/epoch pair (``util.times``): times without an offset are UTC, and a formatted time parses back."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streamdetect.store import parse_when
from streamdetect.util.times import datetime_of, epoch_of, iso_of


def test_iso_and_epoch_round_trip_and_a_naive_time_is_utc():
    assert iso_of(1_700_000_000.25) == "2023-11-14T22:13:20.250+00:00"
    assert iso_of(1_700_000_000.25, "seconds") == "2023-11-14T22:13:20+00:00"
    assert epoch_of(iso_of(1_700_000_000.25)) == 1_700_000_000.25
    assert epoch_of("2023-11-14T22:13:20") == epoch_of("2023-11-14T23:13:20+01:00") == 1_700_000_000.0
    assert datetime_of("2023-11-14T22:13:20").utcoffset() == timedelta(0)
    with pytest.raises(ValueError):
        datetime_of("yesterday")


def test_parse_when_gives_the_stored_form():
    assert parse_when("2023-11-14T23:13:20+01:00") == "2023-11-14T22:13:20.000+00:00"
    assert parse_when("2023-11-14T22:13:20") == "2023-11-14T22:13:20.000+00:00"
    with pytest.raises(ValueError, match="neither an ISO-8601 time nor an age"):
        parse_when("soon")
