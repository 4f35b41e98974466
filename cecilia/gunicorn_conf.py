"""gunicorn's settings for the web process in production: `gunicorn -c python:cecilia.gunicorn_conf cecilia.wsgi`.

HTTP (admin, webhooks, health) is served through WSGI by a fixed set of threads: sync Django views run there without
the thread hop ASGI adds per request, and persistent database connections are safe (one per thread, reused). On two
cores this serves the webhook 4–6× faster than one daphne process (docs/benchmarks.md, bench/webhook). Websockets,
when the live inbox lands, are daphne's (`cecilia.asgi`), routed by the proxy on `/ws/`.

Every value can be overridden with gunicorn's own GUNICORN_CMD_ARGS or the variables below.
"""

from __future__ import annotations

import multiprocessing
import os

# All interfaces by default: in a container the proxy reaches gunicorn from outside; WEB_BIND narrows it.
bind = f"{os.environ.get('WEB_BIND', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104
worker_class = "gthread"
# One process per core: each has its own GIL; threads overlap the database and Redis round trips.
workers = int(os.environ.get("WEB_WORKERS", multiprocessing.cpu_count()))
threads = int(os.environ.get("WEB_THREADS", "4"))
# A fixed set of threads: each keeps its database connection between requests (settings' default, 0, suits daphne,
# which would leave one behind per request). Set before the workers load Django; DB_CONN_MAX_AGE still wins.
os.environ.setdefault("DB_CONN_MAX_AGE", "60")
# A webhook answers in milliseconds; a request still running after this is stuck: the worker is replaced.
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
# Cecilia logs every request itself, masked (cecilia.access); gunicorn's access log would print raw query strings.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Heartbeat files in memory, as gunicorn's docs advise: a container's /tmp can be a slow overlay filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
# The TLS proxy in front sets X-Forwarded-Proto (read by Django's SECURE_PROXY_SSL_HEADER); trust it from here.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
