"""Test-wide settings.

Under CI (``CI=true``) hypothesis runs derandomized, so a submission's result does not depend
on which examples a run happens to draw; locally it explores new examples every run.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI", "").lower() in ("1", "true") else "dev")
