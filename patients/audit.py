"""The only writer of the audit trail (AuditEntry) and the access log (PatientAccess).

Who calls what:
* staff edits in the admin: `patients.admin_audit.AuditedAdminMixin` (create/update/delete with before and after);
* staff appointment actions (book, reschedule, cancel, confirm…) from the form, the list actions and the agenda:
  `scheduling.services`, which knows whether the actor is staff. The patient's and Cecilia's own changes are not
  staff actions and are not audited here (their history is `AppointmentChange`);
* pages that show a patient's data: `patient_access_record`, one row per page view.

Values kept in `changes` are what staff saw on the form (display strings for choices and relations), never secrets:
encrypted fields and anything named like a token, key, secret or password are left out.
"""

from __future__ import annotations

import datetime
import decimal
import logging
import re
import uuid
from collections.abc import Iterable
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction

from cecilia.fields import EncryptedTextField
from patients.audit_models import AccessKind, AuditAction, AuditEntry, PatientAccess

logger = logging.getLogger(__name__)

_SECRET_NAME = re.compile(r"token|key|secret|password|passwd", re.IGNORECASE)
_REPR_MAX = AuditEntry._meta.get_field("object_repr").max_length or 200
_LABEL_MAX = AuditEntry._meta.get_field("actor_label").max_length or 150


def _user_label(user: Any) -> str:
    return user.get_username()[:_LABEL_MAX] if user is not None else ""


def audit_record(
    *,
    actor: Any,
    clinic_id: int,
    action: AuditAction,
    obj: models.Model,
    patient_id: int | None,
    changes: dict | None = None,
    action_name: str = "",
) -> AuditEntry:
    """Write one audit entry for `obj` (already saved, or just deleted: its pk is read before deletion by callers).

    `actor` is the staff User, or None for Cecilia herself; its login name is kept in `actor_label` so the entry
    still says who after the user is deleted. `changes` is `{"field": [before, after]}` (see `audit_changes`).
    Runs inside the caller's transaction: a change that rolls back leaves no entry.
    """
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEntry.objects.create(
        clinic_id=clinic_id,
        actor=user,
        actor_label=_user_label(user),
        action=action,
        action_name=action_name[:60],
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=True),
        object_id=str(obj.pk),
        object_repr=str(obj)[:_REPR_MAX],
        patient_id=patient_id,
        changes=changes or {},
    )


def _is_secret(field: models.Field) -> bool:
    return isinstance(field, EncryptedTextField) or bool(_SECRET_NAME.search(field.name))


def _json_value(obj: models.Model, field: models.Field) -> Any:
    """The field's value as staff read it, JSON-safe."""
    if field.is_relation:
        related = getattr(obj, field.name, None)
        return str(related) if related is not None else None
    value = getattr(obj, field.attname)
    if value is None:
        return None
    if field.choices:
        return str(getattr(obj, f"get_{field.name}_display")())
    if isinstance(value, datetime.datetime):
        tz = getattr(getattr(obj, "clinic", None), "tz", None)
        return (value.astimezone(tz) if tz is not None and value.tzinfo else value).isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | datetime.timedelta):
        return str(value)
    if isinstance(value, bool | int | float | str | list | dict):
        return value
    return str(value)


def audit_snapshot(obj: models.Model, fields: Iterable[str] | None = None) -> dict:
    """`obj`'s fields as `{"name": value}`, JSON-safe: display strings for choices and relations, ISO dates
    (datetimes in the row's clinic time zone when it has one).

    `fields`: the names to keep (default: every editable concrete field except the primary key and automatic
    timestamps). Secrets are never included, even when named: encrypted fields and names like token/key/secret.
    """
    wanted = set(fields) if fields is not None else None
    snapshot: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if field.primary_key or _is_secret(field):
            continue
        if wanted is not None:
            if field.name not in wanted:
                continue
        elif not field.editable or getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            continue
        snapshot[field.name] = _json_value(obj, field)
    return snapshot


def audit_changes(before: dict, after: dict) -> dict:
    """`{"field": [before, after]}` for the fields whose value differs; a field missing on one side counts as None
    (so a creation is `audit_changes({}, snapshot)` and a deletion `audit_changes(snapshot, {})`)."""
    names = list(after) + [name for name in before if name not in after]
    changes: dict[str, list[Any]] = {}
    for name in names:
        old, new = before.get(name), after.get(name)
        if old != new and not (old in (None, "") and new in (None, "")):
            changes[name] = [old, new]
    return changes


def patient_access_record(*, user: Any, clinic_id: int, patient_id: int, kind: AccessKind) -> None:
    """Log that `user` opened `patient_id`'s data (`kind`): one row per page view.

    Never breaks the page it is called from: a failure is logged (its type only, never the data) and the page goes
    on. Runs in its own savepoint so a failed insert does not poison the caller's transaction.
    """
    try:
        with transaction.atomic():
            PatientAccess.objects.create(
                clinic_id=clinic_id,
                patient_id=patient_id,
                user=user if getattr(user, "is_authenticated", False) else None,
                user_label=_user_label(user if getattr(user, "is_authenticated", False) else None),
                kind=kind,
            )
    except Exception as exc:  # any failure: the access log must never cost staff the page
        logger.error("patient access not logged (%s, kind %s)", type(exc).__name__, kind)
