"""The bench's urlconf: the project's URLs plus one bare view, the floor any request by a logged-in user pays.

The bare view does nothing, but its request runs the whole middleware stack (session, user, clinic time zone), so
"changelist minus bare view" is what the admin itself costs.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from cecilia.urls import urlpatterns as project_urlpatterns

BARE_PATH = "bench/bare/"


def bare_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path(BARE_PATH, bare_view, name="bench-bare"), *project_urlpatterns]
