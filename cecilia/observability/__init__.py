"""Observability: JSON logs with a correlation id and masking, the health endpoints, and Celery id propagation.

Importing the package connects the Celery signals that carry the correlation id into tasks. Every Django process
imports it while configuring logging (settings.LOGGING names `cecilia.observability.logging`), web and worker alike,
so propagation does not depend on any other module remembering to import it.
"""

from cecilia.observability import celery as _celery_signals  # noqa: F401  (connects on import)
