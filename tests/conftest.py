"""Shared pytest configuration: the Hypothesis profiles.

The suite is deterministic by default (profile ``ci``: ``derandomize``, each property test's examples derived
from the test itself), so a clean clone's run (``.ci/run``, the README's test command) is reproducible and
cannot fail on an example drawn for the first time.  ``SHOALS_HYPOTHESIS_PROFILE=explore`` draws fresh random
examples at every run: use it while working on a property, and pin any failing case with ``@example``.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("SHOALS_HYPOTHESIS_PROFILE", "ci"))
