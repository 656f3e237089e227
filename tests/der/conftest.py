"""Shared fixtures of the DER tests: real weather from pvlib's TMY file, and the summer/winter
weather fixtures (helpers are in ``der_helpers``)."""

from __future__ import annotations

import pytest

from transactive.der import Weather, weather_between


@pytest.fixture(scope="session")
def summer() -> Weather:
    """Two July days at Greensboro, NC (TMY3 shipped with pvlib), 15-minute intervals."""
    return weather_between("2024-07-15T04:00Z", "2024-07-17T04:00Z")


@pytest.fixture(scope="session")
def winter() -> Weather:
    """Two January days at Greensboro, 15-minute intervals."""
    return weather_between("2024-01-10T05:00Z", "2024-01-12T05:00Z")
