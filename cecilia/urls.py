"""URL wiring: the admin (the back-office), the health probes, and the provider webhooks as they land."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("health/", include("cecilia.observability.urls")),
    path("webhooks/whatsapp/", include("conversations.urls")),
    path(settings.ADMIN_URL, admin.site.urls),
]
