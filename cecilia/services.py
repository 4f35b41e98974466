"""Writes about clinics and their staff."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db import transaction

from cecilia.models import Clinic, StaffMembership, StaffRole
from cecilia.roles import ROLE_GROUPS


@transaction.atomic
def staff_access_sync(*, user_id: int) -> None:
    """Align a user's admin access with their memberships: staff flag and the role groups they hold anywhere.

    Groups are global in Django while roles are per clinic: the groups give the union of a person's roles, and the
    admin narrows every row and every action to what the role *at that row's clinic* allows (cecilia.admin_scoping).
    """
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.select_for_update().get(pk=user_id)
    roles = set(StaffMembership.objects.filter(user=user).values_list("role", flat=True))
    role_groups = Group.objects.filter(name__in=ROLE_GROUPS.values())
    wanted = [g for g in role_groups if g.name in {ROLE_GROUPS[r] for r in roles}]
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
