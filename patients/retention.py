"""The clinic's retention policy (LGPD), enforced nightly by `patients.tasks.retention_enforce_all`.

Per clinic: message texts older than `retention_message_text_months`, media files older than
`retention_media_months` (the file and the reference; the message row stays, shown to staff as "media removed"),
raw provider events older than `retention_raw_events_days` (the payload; the row stays for its dedupe key and
counts). Empty month settings keep everything. Appointment records are never touched.

Each pass is idempotent (already-erased rows are not selected again) and batched by primary key, so a clinic with
millions of messages is worked through in short transactions. Ages count from the message's creation
(`created_at`) and the event's arrival (`received_at`).
"""

from __future__ import annotations

import calendar
import datetime
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from django.db import transaction
from django.db.models import Case, F, QuerySet, TextField, Value, When

from cecilia.models import Clinic

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
# What staff read in the conversation where a text or a file was erased by the policy.
# Fixed Portuguese, not a translation: stored in the row, and recognised by the next run (idempotency).
TEXT_REMOVED = "[texto removido pela política de retenção]"
MEDIA_REMOVED = "[mídia removida]"


@dataclass
class RetentionCounts:
    texts: int = 0
    media: int = 0
    raw_events: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def retention_cutoffs(*, clinic: Clinic, now: datetime.datetime) -> dict[str, datetime.datetime | None]:
    """The instants before which each kind of data goes, or None when the clinic keeps it.

    Months are calendar months in the clinic's time zone (31 March minus one month is 28/29 February).
    """
    local = now.astimezone(clinic.tz)

    def months_ago(months: int | None) -> datetime.datetime | None:
        return _months_before(local, months) if months else None

    return {
        "texts": months_ago(clinic.retention_message_text_months),
        "media": months_ago(clinic.retention_media_months),
        "raw_events": (
            now - datetime.timedelta(days=clinic.retention_raw_events_days)
            if clinic.retention_raw_events_days
            else None
        ),
    }


def _months_before(moment: datetime.datetime, months: int) -> datetime.datetime:
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def retention_enforce(*, clinic: Clinic, now: datetime.datetime, batch_size: int = BATCH_SIZE) -> RetentionCounts:
    """Erase what `clinic`'s policy says is too old at `now`; returns how many rows of each kind were erased."""
    cutoffs = retention_cutoffs(clinic=clinic, now=now)
    counts = RetentionCounts()
    if cutoffs["texts"] is not None:
        counts.texts = _texts_erase(clinic.pk, cutoffs["texts"], batch_size)
    if cutoffs["media"] is not None:
        counts.media = _media_erase(clinic.pk, cutoffs["media"], batch_size)
    if cutoffs["raw_events"] is not None:
        counts.raw_events = _events_erase(clinic.pk, cutoffs["raw_events"], batch_size)
    logger.info("retention clinic %s: %s", clinic.pk, counts.as_dict())
    return counts


def _batches(queryset: QuerySet, batch_size: int) -> Iterator[list[int]]:
    """Primary keys of `queryset` in ascending batches; each batch is re-filtered when updated (idempotent)."""
    last = 0
    while True:
        ids = list(queryset.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return
        yield ids
        last = ids[-1]


def _texts_erase(clinic_id: int, before: datetime.datetime, batch_size: int) -> int:
    from conversations.models import Message

    # A media message keeps its placeholder; only real texts are replaced (and never twice).
    old = (
        Message.objects.filter(clinic_id=clinic_id, created_at__lt=before)
        .exclude(text="")
        .exclude(text__in=[TEXT_REMOVED, MEDIA_REMOVED])
    )
    total = 0
    for ids in _batches(old, batch_size):
        with transaction.atomic():
            total += old.filter(pk__in=ids).update(text=TEXT_REMOVED, template={}, buttons=[])
    return total


def _media_erase(clinic_id: int, before: datetime.datetime, batch_size: int) -> int:
    from conversations.models import Message

    old = Message.objects.filter(clinic_id=clinic_id, created_at__lt=before).exclude(media="")
    total = 0
    for ids in _batches(old, batch_size):
        with transaction.atomic():
            for message in Message.objects.filter(pk__in=ids).select_for_update(skip_locked=True).only("pk", "media"):
                # The file first: a crash after it leaves a reference to a missing file, which the next run clears.
                message.media.delete(save=False)
            # A caption, when there was one, counts as text: erased with the text policy, not here.
            total += (
                Message.objects.filter(pk__in=ids).exclude(media="").update(media="", text=_media_placeholder_text())
            )
    return total


def _media_placeholder_text() -> Case:
    # The caption stays when there is one; an empty text becomes the placeholder staff read.
    return Case(When(text="", then=Value(MEDIA_REMOVED)), default=F("text"), output_field=TextField())


def _events_erase(clinic_id: int, before: datetime.datetime, batch_size: int) -> int:
    from conversations.models import InboundEvent

    # Unprocessed events are left for the worker (a backlog after an outage is not data to drop).
    old = InboundEvent.objects.filter(clinic_id=clinic_id, received_at__lt=before, processed_at__isnull=False).exclude(
        payload={}
    )
    total = 0
    for ids in _batches(old, batch_size):
        with transaction.atomic():
            total += old.filter(pk__in=ids).update(payload={}, error="")
    return total


def retention_enforce_all(*, now: datetime.datetime) -> dict[str, int]:
    """Every clinic's policy at `now`; one failing clinic is logged and does not stop the others."""
    totals = RetentionCounts()
    for clinic in Clinic.objects.order_by("pk"):
        try:
            counts = retention_enforce(clinic=clinic, now=now)
        except Exception as exc:  # the next clinic's policy still runs
            logger.error("retention failed for clinic %s (%s)", clinic.pk, type(exc).__name__)
            continue
        totals.texts += counts.texts
        totals.media += counts.media
        totals.raw_events += counts.raw_events
    return totals.as_dict()
