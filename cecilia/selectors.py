"""Reads about clinics and staff that other apps and the admin share."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from cecilia.models import StaffMembership
from cecilia.roles import role_allows

_CACHE_ATTR = "_cecilia_clinic_roles"


def clinic_roles_for_user(user: AbstractBaseUser | AnonymousUser) -> dict[int, str] | None:
    """The user's role at each clinic they work at (clinic id → role); None means every clinic (superusers).

    Cached on the user object, which Django builds once per request, so a page pays one query for it.
    """
    if not user.is_authenticated or not user.is_active:
        return {}
    if user.is_superuser:
        return None
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is None:
        cached = dict(StaffMembership.objects.filter(user=user).values_list("clinic_id", "role"))
        setattr(user, _CACHE_ATTR, cached)
    return cached


def clinic_ids_for_user(user: AbstractBaseUser | AnonymousUser) -> frozenset[int] | None:
    """The ids of the clinics this user works at, whatever the role; None means every clinic (superusers)."""
    roles = clinic_roles_for_user(user)
    return None if roles is None else frozenset(roles)


def clinic_ids_allowing(
    user: AbstractBaseUser | AnonymousUser, action: str, app_label: str, model_name: str
) -> frozenset[int] | None:
    """The clinics where the user's role there allows `action` on the model; None means every clinic.

    Django's permissions are global (a user in both groups holds both sets); this is where they become per clinic:
    a receptionist of A who manages B may change B's settings, never A's.
    """
    roles = clinic_roles_for_user(user)
    if roles is None:
        return None
    return frozenset(cid for cid, role in roles.items() if role_allows(role, action, app_label, model_name))
