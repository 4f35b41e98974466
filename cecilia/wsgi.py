"""WSGI entry point (the ASGI one in asgi.py is what production runs, for the live inbox's websockets)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cecilia.settings")

application = get_wsgi_application()
