"""`calendar_alerts`: the admin's warning when Google Calendar stopped working for a clinic (templates/admin/base_site).

Availability fails safe when a calendar cannot be read (no slot is offered from it), so a silent failure would look
like a fully booked professional: staff must see it. Shown to the clinic's staff on every admin page while the
clinic's Google access is refused or failing, or a professional's calendar cannot be read. Lazy like channel_alerts:
two small queries, only on pages that draw the banner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import SimpleLazyObject

from cecilia.roles import role_allows
from cecilia.selectors import clinic_roles_for_user
from integrations.models import AccountState, CalendarAccount, ProfessionalSync

MAX_ALERTS = 10


@dataclass(frozen=True)
class CalendarAlert:
    clinic_name: str
    problem: str  # the account's state in words, or the professional whose calendar cannot be read
    professional: str  # "" for the clinic's whole account
    fix_url: str  # "" when the user may not fix it (receptionists are told to ask a manager)


def calendar_alerts_for(user: Any) -> list[CalendarAlert]:
    if user is None or not user.is_authenticated or not user.is_staff:
        return []
    roles = clinic_roles_for_user(user)  # None: every clinic (superusers)
    if roles is not None and not roles:
        return []
    accounts = CalendarAccount.objects.filter(state__in=[AccountState.REVOKED, AccountState.FAILING]).select_related(
        "clinic"
    )
    syncs = (
        ProfessionalSync.objects.exclude(last_error="")
        .filter(professional__active=True)
        .exclude(professional__google_calendar_id="")
        .select_related("clinic", "professional")
    )
    if roles is not None:
        accounts, syncs = accounts.filter(clinic_id__in=roles), syncs.filter(clinic_id__in=roles)

    def may_fix(clinic_id: int) -> bool:
        return roles is None or role_allows(roles[clinic_id], "change", "integrations", "calendaraccount")

    alerts = []
    for account in accounts.order_by("clinic__name")[:MAX_ALERTS]:
        url = (
            reverse("admin:integrations_calendaraccount_change", args=[account.pk])
            if may_fix(account.clinic_id)
            else ""
        )
        alerts.append(CalendarAlert(account.clinic.name, account.get_state_display(), "", url))
    failing_clinics = {alert.clinic_name for alert in alerts}
    for sync in syncs.order_by("clinic__name", "professional__name")[: MAX_ALERTS - len(alerts)]:
        if sync.clinic.name in failing_clinics:
            continue  # the account's alert already explains it
        url = (
            reverse("admin:scheduling_professional_change", args=[sync.professional_id])
            if roles is None or role_allows(roles[sync.clinic_id], "change", "scheduling", "professional")
            else ""
        )
        alerts.append(CalendarAlert(sync.clinic.name, sync.last_error, sync.professional.name, url))
    return alerts


def calendar_alerts(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    return {"calendar_alerts": SimpleLazyObject(lambda: calendar_alerts_for(user))}
