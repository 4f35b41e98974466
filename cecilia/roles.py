"""The two staff roles as Django groups, with the permissions each needs. Synced by data migrations.

Permissions say *what* a role may do; StaffMembership says *where* (which clinic's rows). Superusers are the
platform operators and see every clinic.
"""

from __future__ import annotations

from typing import Any

RECEPTION_GROUP = "Recepção"
MANAGEMENT_GROUP = "Gestão"
# StaffMembership.role → the group that carries its permissions.
ROLE_GROUPS = {"receptionist": RECEPTION_GROUP, "manager": MANAGEMENT_GROUP}

_ALL = ("add", "change", "delete", "view")
# A right that is no model's: `role_allows(role, "view", "scheduling", "satisfaction")` (no Django permission).
SATISFACTION_RESULTS = "scheduling.satisfaction"

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
        # The FAQ the assistant answers from: the front desk knows first when an answer is wrong. Entries are
        # switched off, not deleted, so deleting stays with managers.
        "conversations.faqentry": ("add", "change", "view"),
        # The desk: ready answers are the managers' to write; notes are everyone's.
        "conversations.quickreply": ("view",),
        "conversations.conversationnote": ("add", "view"),
        "patients.privacyacknowledgement": ("view",),
        # Google Calendar: see the connection, answer "moved in Google — apply it?", resend a failed push.
        "integrations.calendaraccount": ("view",),
        "integrations.calendarreconciliation": ("change", "view"),
        "integrations.calendareventlink": ("view",),
        # Reminders: the clinic's policy is the managers'; the front desk sees it, the steps and their answers.
        "scheduling.remindertemplate": ("view",),
        "scheduling.reminderrule": ("view",),
        "scheduling.reminderstep": ("view",),
        "scheduling.waitlistentry": ("add", "change", "view"),
        "scheduling.waitlistoffer": ("view",),
    },
    MANAGEMENT_GROUP: {
        "cecilia.clinic": ("change", "view"),
        "cecilia.businesshours": _ALL,
        "cecilia.closeddate": _ALL,
        "cecilia.staffmembership": _ALL,
        # To pick colleagues for memberships; changing logins (and superuser flags) stays with superusers.
        "auth.user": ("view",),
        # Export and anonymise are the patient's LGPD rights, answered by managers (patients.lgpd).
        "patients.patient": (*_ALL, "export", "anonymise"),
        "patients.patientguardian": _ALL,
        "patients.healthplan": _ALL,
        # Who changed and who opened patient data (patients.audit): read by managers, written only by Cecilia.
        "patients.auditentry": ("view",),
        "patients.patientaccess": ("view",),
        "scheduling.professional": _ALL,
        "scheduling.service": _ALL,
        "scheduling.workinghours": _ALL,
        "scheduling.timeoff": _ALL,
        "scheduling.appointment": ("add", "change", "view"),
        "conversations.conversation": ("change", "view"),
        "conversations.message": ("add", "view"),
        "conversations.inboundevent": ("view",),
        "conversations.faqentry": _ALL,
        "conversations.quickreply": _ALL,
        "conversations.conversationnote": ("add", "view"),
        "conversations.llmusage": ("view",),
        "patients.privacyacknowledgement": ("view",),
        "integrations.calendaraccount": ("add", "change", "view"),
        "integrations.calendarreconciliation": ("change", "view"),
        "integrations.calendareventlink": ("view",),
        "scheduling.remindertemplate": _ALL,
        "scheduling.reminderrule": _ALL,
        "scheduling.reminderstep": ("view",),
        "scheduling.waitlistentry": _ALL,
        "scheduling.waitlistoffer": ("view",),
        # Not a model: the patients' ratings page (scheduling.admin_outreach); managers only, per clinic.
        SATISFACTION_RESULTS: ("view",),
    },
}


def role_allows(role: str, action: str, app_label: str, model_name: str) -> bool:
    """Whether `role` (a StaffMembership.role) may `action` ("view", "add", "change", "delete") the model.

    "view" is implied by "change", as in Django.
    """
    actions = ROLE_PERMISSIONS.get(ROLE_GROUPS.get(role, ""), {}).get(f"{app_label}.{model_name}", ())
    return action in actions or (action == "view" and "change" in actions)


def permissions_create(apps: Any, schema_editor: Any = None) -> None:
    """Create every model's permissions now (a data migration needs them; Django adds them only after migrating)."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None


def roles_sync(apps: Any, schema_editor: Any = None) -> None:
    """Create the groups and give each exactly the permissions above. Idempotent.

    Runs from a data migration and after every `migrate`/`flush` (post_migrate), so the groups are back after a
    test database is emptied and new models' permissions reach the roles as soon as they exist.
    """
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, spec in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        wanted = Permission.objects.none()
        for model_key, actions in spec.items():
            app_label, model = model_key.split(".")
            wanted |= Permission.objects.filter(
                content_type__app_label=app_label,
                content_type__model=model,
                codename__in=[f"{action}_{model}" for action in actions],
            )
        group.permissions.set(wanted)
