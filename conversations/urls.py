from django.urls import path, re_path

from conversations.webhooks import EvolutionWebhook, MetaWebhook

urlpatterns = [
    path("evolution/", EvolutionWebhook.as_view(), name="webhook-evolution"),
    # Evolution's "webhook by events" appends /<event-name>; a trailing slash in the configured URL doubles it.
    re_path(r"^evolution/+(?P<suffix>[a-z0-9-]+)/?$", EvolutionWebhook.as_view(), name="webhook-evolution-event"),
    path("meta/", MetaWebhook.as_view(), name="webhook-meta"),
]
