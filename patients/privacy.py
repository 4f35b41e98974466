"""The clinic's privacy notice (LGPD): which version a patient was sent, and when they went on after it.

The first-contact turn asks `privacy_notice_due`, sends the notice with its greeting, and records it with
`privacy_notice_sent` in the same transaction as the outbound message. Each later patient message calls
`privacy_notice_acknowledged`: a patient who keeps talking after reading the notice has acknowledged it.
"""

from __future__ import annotations

import datetime
import hashlib

from cecilia.models import Clinic
from patients.models import Patient, PrivacyAcknowledgement

CHANNEL_WHATSAPP = "whatsapp"


def privacy_notice_version(clinic: Clinic) -> str:
    """A short, stable hash of the notice as the patient reads it: its text and link, whitespace-trimmed.

    A clinic with no notice has a version too (of the empty text): the first-contact greeting that says the
    assistant is automated is still recorded once; writing a notice later makes it due for everyone.
    """
    payload = f"{clinic.privacy_notice.strip()}\n{clinic.privacy_notice_url.strip()}"
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def privacy_notice_due(*, clinic: Clinic, patient: Patient) -> bool:
    """Whether the patient has not been sent the clinic's current notice yet."""
    return not PrivacyAcknowledgement.objects.filter(
        clinic=clinic, patient=patient, notice_version=privacy_notice_version(clinic)
    ).exists()


def privacy_notice_sent(
    *, clinic: Clinic, patient: Patient, at: datetime.datetime, channel: str = CHANNEL_WHATSAPP
) -> PrivacyAcknowledgement:
    """Record that the current notice was sent at `at`. Idempotent: a second call returns the first record."""
    # get_or_create re-reads after losing an insert race (two turns at once), so both callers get the one row.
    record, _ = PrivacyAcknowledgement.objects.get_or_create(
        clinic=clinic,
        patient=patient,
        notice_version=privacy_notice_version(clinic),
        defaults={"notice_sent_at": at, "channel": channel},
    )
    return record


def privacy_notice_acknowledged(*, clinic: Clinic, patient: Patient, at: datetime.datetime) -> None:
    """The patient wrote at `at`: every notice sent to them before then, not yet acknowledged, is acknowledged now.

    A message written before the notice was sent acknowledges nothing (it did not answer the notice).
    """
    PrivacyAcknowledgement.objects.filter(
        clinic=clinic, patient=patient, acknowledged_at__isnull=True, notice_sent_at__lt=at
    ).update(acknowledged_at=at)
