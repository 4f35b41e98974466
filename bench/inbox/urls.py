"""The bench's urlconf: bench.admin's (the project's URLs plus a bare view) and the same bare view behind the admin.

`admin_view` adds only the admin's gate — active staff check, CSRF, never-cache headers — and none of its chrome,
so "inbox minus bare admin view" is what the inbox itself costs. The admin index is no floor here: it may become a
dashboard.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from bench.admin.urls import bare_view
from bench.admin.urls import urlpatterns as bench_admin_urlpatterns

BARE_ADMIN_PATH = "bench/bare-admin/"

urlpatterns = [
    path(BARE_ADMIN_PATH, admin.site.admin_view(bare_view), name="bench-bare-admin"),
    *bench_admin_urlpatterns,
]
