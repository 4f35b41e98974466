"""Health probes, mounted at /health/ by cecilia/urls.py: /health/live and /health/ready."""

from django.urls import path

from cecilia.observability import health

urlpatterns = [
    path("live", health.live, name="health-live"),
    path("ready", health.ready, name="health-ready"),
]
