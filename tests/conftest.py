"""Test-wide settings.

Under CI (``CI=true``) hypothesis runs derandomized, so a submission's result does not depend
on which examples a run happens to draw; locally it explores new examples every run.
"""

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI", "").lower() in ("1", "true") else "dev")


@pytest.fixture(scope="session", autouse=True)
def _threads_independent_of_load():
    """``n_threads="auto"`` follows the idle cores, and thread counts change float rounding.

    Tests check behaviour, not the machine's load: here "auto" sees every core idle, so it
    means torch's own setting (what tests and benchmarks pin), on a busy CI machine too.
    ``tests/test_runtime_threads.py`` checks the real measurement.
    """
    import metaprune.runtime.threads

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metaprune.runtime.threads, "idle_cores", metaprune.runtime.threads.available_cores)
        yield
