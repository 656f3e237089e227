"""Shared test settings."""

import os

from hypothesis import HealthCheck, settings

# Deterministic examples: the same cases run on every machine, so CI never turns red by
# chance; run with HYPOTHESIS_PROFILE=explore to search new random cases locally.
settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "explore", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
