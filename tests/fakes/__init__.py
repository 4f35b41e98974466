"""Test-only stand-ins for the outside world, reached over real sockets: a provider's REST API, a private Redis, a
Celery worker process."""
