"""Settings for the test suite: the real settings module with development defaults for the secret key and hosts.

The database and Redis still come from DATABASE_URL / REDIS_URL (the test command sets them, starting private servers
when they are not set). Django runs tests with DEBUG off whatever this says.
"""

import os

os.environ.setdefault("DEBUG", "1")

from cecilia.settings import *  # noqa: F403

# Password hashing dominates the run time of tests that create users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOG_FORMAT = "json"
