"""Websocket routes. The live inbox (conversations.consumers) registers here when it lands."""

websocket_urlpatterns: list = []
