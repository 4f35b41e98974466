"""Settings of the Celery worker processes the fault tests start: the test settings, with a broker visibility timeout
the test can shorten (so a killed worker's unacknowledged task comes back within seconds, as it would after an hour),
and the unacked-message sweep every second instead of every 100."""

import os

from cecilia.settings_test import *  # noqa: F403
from cecilia.settings_test import CELERY_BROKER_TRANSPORT_OPTIONS

CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,
    "visibility_timeout": int(os.environ.get("TEST_BROKER_VISIBILITY_TIMEOUT", "3600")),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
