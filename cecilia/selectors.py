"""Reads about clinics and staff that other apps and the admin share."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from cecilia.models import Clinic, StaffMembership, StaffRole

_CACHE_ATTR = "_cecilia_clinic_ids"


def clinic_ids_for_user(user: AbstractBaseUser | AnonymousUser) -> frozenset[int] | None:
    """The ids of the clinics this user works at; None means every clinic (superusers).

    Cached on the user object, which Django builds once per request, so a page pays one query for it.
    """
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    if user.is_superuser:
        return None
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is None:
        cached = frozenset(StaffMembership.objects.filter(user=user).values_list("clinic_id", flat=True))
        setattr(user, _CACHE_ATTR, cached)
    return cached


def clinics_for_user(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Clinic]:
    ids = clinic_ids_for_user(user)
    return Clinic.objects.all() if ids is None else Clinic.objects.filter(pk__in=ids)


def user_is_manager_of(user: AbstractBaseUser | AnonymousUser, clinic_id: int) -> bool:
    if user.is_superuser:
        return True
    return StaffMembership.objects.filter(user=user, clinic_id=clinic_id, role=StaffRole.MANAGER).exists()
