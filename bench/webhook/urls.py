"""The bench server's urlconf: the project's URLs plus one bare view, the floor of a request on the same server.

The bare view takes the same POST as the webhook (same body, same headers) and answers "ok" without reading it: the
request still crosses daphne, the ASGI handler, the whole middleware stack and the hop into a worker thread that every
sync view pays, so "webhook minus bare view" is what verifying, storing and enqueueing costs.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from cecilia.urls import urlpatterns as project_urlpatterns

BARE_PATH = "bench-bare/"


@csrf_exempt
def bare_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path(BARE_PATH, bare_view, name="bench-bare"), *project_urlpatterns]
