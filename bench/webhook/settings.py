"""The bench server's settings: the product's own (`cecilia.settings`, DEBUG and everything else from the environment
the bench sets), with one change: the bench's urlconf, which adds a bare view next to the project's URLs."""

from cecilia.settings import *  # noqa: F403

ROOT_URLCONF = "bench.webhook.urls"
