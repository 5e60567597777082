import os

from hypothesis import HealthCheck, settings

# Derandomized in CI so a red run reproduces; "dev" is quicker for local loops.
settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=150, print_blob=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=40)
settings.load_profile(os.environ.get("GOOSE_HYPOTHESIS_PROFILE", "ci"))
