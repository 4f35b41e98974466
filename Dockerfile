# Cecilia's image: one image, three processes (web, worker, beat) chosen by the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

RUN useradd --system --create-home --home-dir /home/cecilia cecilia \
    && mkdir -p /var/lib/cecilia/static /var/lib/cecilia/media \
    && chown -R cecilia:cecilia /var/lib/cecilia

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# collectstatic needs settings to load; these values exist only for this build step.
RUN DEBUG=0 SECRET_KEY=build-only ALLOWED_HOSTS=build DATABASE_URL=postgres://build@localhost/build \
    REDIS_URL=redis://localhost:6379/0 STATIC_ROOT=/var/lib/cecilia/static \
    FIELD_ENCRYPTION_KEYS=YnVpbGQtb25seS1rZXktbm90LWZvci1ydW50aW1lMDA= \
    python manage.py collectstatic --noinput

USER cecilia
EXPOSE 8000
# HTTP through gunicorn's threads (cecilia/gunicorn_conf.py: one worker per core, WEB_WORKERS / WEB_THREADS).
CMD ["gunicorn", "-c", "python:cecilia.gunicorn_conf", "cecilia.wsgi:application"]
