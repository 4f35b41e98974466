"""The two staff roles as Django groups, with the permissions each needs. Synced by data migrations.

Permissions say *what* a role may do; StaffMembership says *where* (which clinic's rows). Superusers are the
platform operators and see every clinic.
"""

from __future__ import annotations

from typing import Any

RECEPTION_GROUP = "Recepção"
MANAGEMENT_GROUP = "Gestão"

_ALL = ("add", "change", "delete", "view")

# app_label.model → actions. Models not named get no permission for the role.
ROLE_PERMISSIONS: dict[str, dict[str, tuple[str, ...]]] = {
    RECEPTION_GROUP: {
        "cecilia.clinic": ("view",),
        "cecilia.businesshours": ("view",),
        "cecilia.closeddate": ("view",),
        "patients.patient": ("add", "change", "view"),
        "patients.patientguardian": _ALL,
        "patients.healthplan": ("view",),
        "scheduling.professional": ("view",),
        "scheduling.service": ("view",),
        "scheduling.workinghours": ("view",),
        "scheduling.timeoff": _ALL,
        # Appointments are cancelled, never deleted: the record is kept for the clinic and the law.
        "scheduling.appointment": ("add", "change", "view"),
        "conversations.conversation": ("change", "view"),
        "conversations.message": ("add", "view"),
    },
    MANAGEMENT_GROUP: {
        "cecilia.clinic": ("change", "view"),
        "cecilia.businesshours": _ALL,
        "cecilia.closeddate": _ALL,
        "cecilia.staffmembership": _ALL,
        # To pick colleagues for memberships; changing logins (and superuser flags) stays with superusers.
        "auth.user": ("view",),
        "patients.patient": _ALL,
        "patients.patientguardian": _ALL,
        "patients.healthplan": _ALL,
        "scheduling.professional": _ALL,
        "scheduling.service": _ALL,
        "scheduling.workinghours": _ALL,
        "scheduling.timeoff": _ALL,
        "scheduling.appointment": ("add", "change", "view"),
        "conversations.conversation": ("change", "view"),
        "conversations.message": ("add", "view"),
        "conversations.inboundevent": ("view",),
    },
}


def roles_sync(apps: Any, schema_editor: Any = None) -> None:
    """Create the groups and set exactly the permissions above (a data migration calls this)."""
    from django.contrib.auth.management import create_permissions

    # On a fresh database permissions are only created after all migrations; create them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, spec in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        wanted = []
        for model_key, actions in spec.items():
            app_label, model = model_key.split(".")
            for action in actions:
                wanted.append(
                    Permission.objects.get(
                        content_type__app_label=app_label, content_type__model=model, codename=f"{action}_{model}"
                    )
                )
        group.permissions.set(wanted)
