"""Request middleware of the core."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from cecilia.models import Clinic
from cecilia.selectors import clinic_ids_for_user


class ClinicTimezoneMiddleware:
    """Shows staff every date and time in their clinic's zone (Invariant 8), not the server's.

    Staff of one clinic get its zone; superusers and staff of several clinics keep settings.TIME_ZONE.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        ids = clinic_ids_for_user(user) if user is not None and user.is_authenticated else None
        if ids and len(ids) == 1:
            tz_name = Clinic.objects.filter(pk=next(iter(ids))).values_list("timezone", flat=True).first()
            if tz_name:
                timezone.activate(str(tz_name))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
