"""Settings of the bench's web server and Celery worker: the product's own (`cecilia.settings`, DEBUG, debounce,
typing delay and the rest from the environment the bench sets), plus the bench's tasks module, which brings the
empty task of the floor and the per-task counters (`bench/turn/tasks.py`) into the worker."""

from cecilia.settings import *  # noqa: F403
from cecilia.settings import CELERY_IMPORTS

CELERY_IMPORTS = (*CELERY_IMPORTS, "bench.turn.tasks")
