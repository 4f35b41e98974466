"""Websocket routes, served by cecilia.asgi behind the session auth and the allowed-hosts origin check."""

from django.urls import path

from conversations.consumers import InboxConsumer

websocket_urlpatterns: list = [
    path("ws/inbox/", InboxConsumer.as_asgi()),
]
