"""Writes about clinics and their staff."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db import transaction

from cecilia.models import Clinic, StaffMembership, StaffRole
from cecilia.roles import MANAGEMENT_GROUP, RECEPTION_GROUP

_ROLE_GROUPS = {StaffRole.RECEPTIONIST: RECEPTION_GROUP, StaffRole.MANAGER: MANAGEMENT_GROUP}


@transaction.atomic
def staff_access_sync(*, user_id: int) -> None:
    """Align a user's admin access with their memberships: staff flag and the role groups they hold anywhere.

    Permissions are global in Django while memberships are per clinic; rows stay scoped to the user's clinics by
    the admin, so holding a group means "may do this in my clinics".
    """
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.select_for_update().get(pk=user_id)
    roles = set(StaffMembership.objects.filter(user=user).values_list("role", flat=True))
    role_groups = Group.objects.filter(name__in=_ROLE_GROUPS.values())
    wanted = [g for g in role_groups if g.name in {_ROLE_GROUPS[StaffRole(r)] for r in roles}]
    user.groups.remove(*[g for g in role_groups if g not in wanted])
    user.groups.add(*wanted)
    if roles and not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])


@transaction.atomic
def staff_membership_set(*, user_id: int, clinic: Clinic, role: StaffRole) -> StaffMembership:
    """Give a user a role at a clinic (creating or changing the membership) and sync their access."""
    membership, _ = StaffMembership.objects.update_or_create(user_id=user_id, clinic=clinic, defaults={"role": role})
    staff_access_sync(user_id=user_id)
    return membership
