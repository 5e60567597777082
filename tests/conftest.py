import os

from hypothesis import HealthCheck, settings

# Derandomized in CI so a red run reproduces; "dev" is quicker for local loops.
settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=150, print_blob=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=40)
settings.load_profile(os.environ.get("GOOSE_HYPOTHESIS_PROFILE", "ci"))


# Cost markers (tests/README.md): every test gets exactly one of fast, tiny_model,
# real_wheel and gpu; slow is added on top for statistical or long-running tests.
REAL_WHEEL_FILES = {"test_smollm2.py", "test_gemma3_270m.py"}
REAL_WHEEL_TESTS = {"test_real_model_tutorial_runs", "test_sampling_tutorial_runs", "test_predict_tutorial_runs",
                    "test_external_drafter_tutorial_runs"}


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        name = getattr(item, "originalname", None) or item.name
        if item.get_closest_marker("gpu"):
            continue
        if item.path.name in REAL_WHEEL_FILES or name in REAL_WHEEL_TESTS:
            item.add_marker(pytest.mark.real_wheel)
            item.add_marker(pytest.mark.slow)
        elif item.get_closest_marker("model"):
            item.add_marker(pytest.mark.tiny_model)
        elif not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.fast)
