"""WhatsApp conversations: one per patient per clinic, their messages, and the raw provider events behind them."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _

from cecilia.models import Clinic, ClinicOwnedModel
from patients.models import Patient


class ConversationOwner(models.TextChoices):
    AI = "ai", _("Assistant")
    HUMAN = "human", _("Staff")


class AttentionReason(models.TextChoices):
    NONE = "", _("—")
    EMERGENCY = "emergency", _("Emergency")
    ASKED_FOR_HUMAN = "asked_for_human", _("Asked for a person")
    FAILED_SEND = "failed_send", _("Message not delivered")
    UNANSWERED = "unanswered", _("Unanswered")
    HANDOFF = "handoff", _("Handed off by the assistant")
    STALE = "stale", _("Old messages after reconnecting")
    PATIENT_NOTE = "patient_note", _("Patient left a note")


class Conversation(ClinicOwnedModel):
    same_clinic_fields = ("patient",)

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="conversations", verbose_name=_("clinic"))
    patient = models.ForeignKey(
        Patient, on_delete=models.PROTECT, related_name="conversations", verbose_name=_("patient")
    )
    owner = models.CharField(
        _("handled by"), max_length=10, choices=ConversationOwner.choices, default=ConversationOwner.AI
    )
    # When `owner` last changed (staff took over or gave back, the assistant handed off): the assistant's idle
    # hand-back counts from here at the earliest (conversations.turns), so a take-over is not undone at once.
    owner_since = models.DateTimeField(_("handled by them since"), null=True, blank=True)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_conversations",
        verbose_name=_("assigned to"),
    )
    # The receptionist engine's working memory (the flow it is in, the slots it offered); JSONB, engine-owned.
    state = models.JSONField(_("assistant state"), default=dict, blank=True)
    handoff_summary = models.TextField(_("handoff summary"), blank=True)
    needs_attention = models.BooleanField(_("needs attention"), default=False)
    attention_reason = models.CharField(
        _("attention reason"), max_length=20, choices=AttentionReason.choices, blank=True, default=AttentionReason.NONE
    )
    last_inbound_at = models.DateTimeField(_("last message from patient"), null=True, blank=True)
    last_outbound_at = models.DateTimeField(_("last message to patient"), null=True, blank=True)
    # Patient messages staff have not seen yet: +1 per inbound message (conversations.services), 0 when a staff member
    # opens the conversation. A counter, not a COUNT over messages, so the inbox costs the same at any size.
    unread_count = models.PositiveIntegerField(_("unread"), default=0, db_default=0)
    # Staff closed it (done, nothing left to do). The next patient message opens it again.
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    # A turn runs with this lease held (conversations.turns): one turn at a time per conversation, and a worker that
    # dies mid-turn blocks the conversation only until the lease runs out.
    turn_lease_until = models.DateTimeField(_("turn running until"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        ordering = ["-last_inbound_at"]
        constraints = [
            # A patient's WhatsApp chat with the clinic is one continuous thread.
            models.UniqueConstraint(
                fields=["clinic", "patient"],
                name="conversation_one_per_patient",
                violation_error_message=_("This patient already has a conversation with the clinic."),
            ),
            models.UniqueConstraint(fields=["id", "clinic"], name="conversation_id_clinic_unique"),
            models.CheckConstraint(
                condition=Q(needs_attention=True) | Q(attention_reason=""),
                name="conversation_reason_only_when_attention",
                violation_error_message=_("A reason is only given when the conversation needs attention."),
            ),
            models.CheckConstraint(condition=Q(owner__in=ConversationOwner.values), name="conversation_owner_valid"),
        ]
        indexes = [
            models.Index(fields=["clinic", "-last_inbound_at"], name="conversation_clinic_recent_idx"),
            models.Index(fields=["clinic"], condition=Q(needs_attention=True), name="conversation_attention_idx"),
            # The inbox's "needs you" section: open conversations staff own (conversations.desk.selectors).
            models.Index(
                fields=["clinic", "-last_inbound_at"],
                condition=Q(owner="human", closed_at__isnull=True),
                name="conversation_staff_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return str(self.patient)


class TurnOutcome(models.TextChoices):
    RUNNING = "running", _("Running")
    ANSWERED = "answered", _("Answered by the assistant")
    HANDED_OFF = "handed_off", _("Handed to staff by the assistant")
    STAFF_OWNS = "staff_owns", _("Staff were handling the conversation")
    ASSISTANT_OFF = "assistant_off", _("Assistant off: left for staff")
    STALE = "stale", _("Old messages: left for staff")
    FAILED = "failed", _("Failed: left for staff")


class Turn(ClinicOwnedModel):
    """One time the assistant considered the patient's new messages: which ones (Message.turn), and what came of it.

    Every inbound patient message is handled by exactly one turn; a redelivered message or task finds it taken.
    """

    same_clinic_fields = ("conversation",)

    # Indexed with started_at instead (turn_clinic_time_idx), which serves lookups by clinic alone as well.
    clinic = models.ForeignKey(
        Clinic, on_delete=models.PROTECT, related_name="+", verbose_name=_("clinic"), db_index=False
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="turns", verbose_name=_("conversation")
    )
    outcome = models.CharField(_("outcome"), max_length=20, choices=TurnOutcome.choices, default=TurnOutcome.RUNNING)
    engine = models.CharField(_("engine"), max_length=40, blank=True)
    # For staff and operators: an exception's type, never a message text or patient data.
    error = models.CharField(_("error"), max_length=200, blank=True)
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    # When the patient was told "one moment" because the engine was slow (at most once per turn).
    holding_sent_at = models.DateTimeField(_("holding message sent at"), null=True, blank=True)

    class Meta:
        verbose_name = _("assistant turn")
        verbose_name_plural = _("assistant turns")
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["id", "clinic"], name="turn_id_clinic_unique"),
            models.CheckConstraint(condition=Q(outcome__in=TurnOutcome.values), name="turn_outcome_valid"),
            models.CheckConstraint(
                condition=Q(outcome=TurnOutcome.RUNNING, finished_at__isnull=True)
                | (~Q(outcome=TurnOutcome.RUNNING) & Q(finished_at__isnull=False)),
                name="turn_finished_when_not_running",
            ),
        ]
        indexes = [
            models.Index(fields=["started_at"], condition=Q(outcome="running"), name="turn_running_idx"),
            models.Index(fields=["clinic", "started_at"], name="turn_clinic_time_idx"),  # the dashboard's today
        ]

    def __str__(self) -> str:
        when = date_format(timezone.localtime(self.started_at), "SHORT_DATETIME_FORMAT") if self.started_at else ""
        return f"{self.get_outcome_display()} · {when}"


class MessageDirection(models.TextChoices):
    INBOUND = "in", _("Received")
    OUTBOUND = "out", _("Sent")


class MessageKind(models.TextChoices):
    TEXT = "text", _("Text")
    AUDIO = "audio", _("Audio")
    IMAGE = "image", _("Image")
    VIDEO = "video", _("Video")
    DOCUMENT = "document", _("Document")
    LOCATION = "location", _("Location")
    CONTACT = "contact", _("Contact")
    REACTION = "reaction", _("Reaction")
    OTHER = "other", _("Other")


class MessageStatus(models.TextChoices):
    RECEIVED = "received", _("Received")
    QUEUED = "queued", _("Queued")
    SENDING = "sending", _("Sending")  # claimed by one worker (conversations.outbox); never resent blindly
    SENT = "sent", _("Sent")
    DELIVERED = "delivered", _("Delivered")
    READ = "read", _("Read")
    PLAYED = "played", _("Listened")
    FAILED = "failed", _("Failed")


class MessageAuthor(models.TextChoices):
    PATIENT = "patient", _("Patient")
    AI = "ai", _("Assistant")
    STAFF = "staff", _("Staff")
    SYSTEM = "system", _("System")


class Message(ClinicOwnedModel):
    same_clinic_fields = ("conversation", "quoted", "turn", "reminder_step")

    # Indexed with created_at instead (message_clinic_time_idx), which serves lookups by clinic alone as well.
    clinic = models.ForeignKey(
        Clinic, on_delete=models.PROTECT, related_name="+", verbose_name=_("clinic"), db_index=False
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages", verbose_name=_("conversation")
    )
    direction = models.CharField(_("direction"), max_length=3, choices=MessageDirection.choices)
    kind = models.CharField(_("kind"), max_length=10, choices=MessageKind.choices, default=MessageKind.TEXT)
    text = models.TextField(_("text"), blank=True)
    media = models.FileField(_("media"), upload_to="messages/%Y/%m/", blank=True)
    media_mime_type = models.CharField(_("media type"), max_length=100, blank=True)
    # The webhook this message came from: the media is fetched from what it describes, and staff can trace it.
    inbound_event = models.ForeignKey(
        "InboundEvent",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
        verbose_name=_("inbound event"),
    )
    provider_message_id = models.CharField(_("provider message id"), max_length=128, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=MessageStatus.choices)
    error = models.TextField(_("error"), blank=True)
    # Why a message failed, for code and filters (a ProviderError code, "unconfirmed"…); `error` is for staff.
    error_code = models.CharField(_("error code"), max_length=40, blank=True)
    # Outbound only: the message this one replies to (quoted on WhatsApp), and the approved Meta template to send
    # instead of free text ({"name", "language", "body_parameters"}; empty for ordinary messages).
    quoted = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("reply to")
    )
    template = models.JSONField(_("WhatsApp template"), default=dict, blank=True)
    # Outbound only: reply buttons shown where the provider has them ([{"id", "title"}]; the text lists the same
    # options for the others), and the reminder step this message is — one message per step, enforced here.
    buttons = models.JSONField(_("reply buttons"), default=list, blank=True)
    reminder_step = models.OneToOneField(
        "scheduling.ReminderStep",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="message",
        verbose_name=_("reminder step"),
    )
    # Inbound only: the assistant's turn that handled this message (empty until one has).
    turn = models.ForeignKey(
        Turn, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages", verbose_name=_("turn")
    )
    # The outbox's bookkeeping (conversations.outbox): a worker claims a queued row (status "sending", claimed_at,
    # attempts + 1), commits send_started_at right before calling the provider, and retries no earlier than
    # next_attempt_at. A row left "sending" by a dead worker is requeued when send_started_at is empty (the request
    # never left) and marked failed-unconfirmed otherwise (it may have reached WhatsApp: never resent blindly).
    attempts = models.PositiveSmallIntegerField(_("send attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    send_started_at = models.DateTimeField(_("send started at"), null=True, blank=True)
    author = models.CharField(_("author"), max_length=10, choices=MessageAuthor.choices)
    author_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("staff member"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)
    failed_at = models.DateTimeField(_("failed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["created_at", "id"]
        constraints = [
            # A redelivered webhook finds its message already there: one provider message, one row.
            models.UniqueConstraint(
                fields=["clinic", "provider_message_id"],
                condition=~Q(provider_message_id=""),
                name="message_provider_id_unique_per_clinic",
            ),
            # Patients write in; the assistant, staff and the system write out.
            models.CheckConstraint(
                condition=(
                    Q(direction=MessageDirection.INBOUND, author=MessageAuthor.PATIENT, status=MessageStatus.RECEIVED)
                    | Q(
                        direction=MessageDirection.OUTBOUND,
                        author__in=[MessageAuthor.AI, MessageAuthor.STAFF, MessageAuthor.SYSTEM],
                        status__in=[s for s in MessageStatus.values if s != MessageStatus.RECEIVED],
                    )
                ),
                name="message_direction_author_status",
            ),
            models.CheckConstraint(
                condition=Q(author=MessageAuthor.STAFF) | Q(author_user__isnull=True),
                name="message_user_only_for_staff",
            ),
            # Staff must be able to read why a message failed.
            models.CheckConstraint(
                condition=~Q(status=MessageStatus.FAILED) | ~Q(error=""), name="message_failed_has_error"
            ),
            models.CheckConstraint(condition=Q(kind__in=MessageKind.values), name="message_kind_valid"),
            # The outbox's relay finds rows left "sending" by a dead worker by their claim time.
            models.CheckConstraint(
                condition=~Q(status=MessageStatus.SENDING) | Q(claimed_at__isnull=False),
                name="message_sending_has_claim",
            ),
            # Target of the same-clinic composite foreign key of `quoted`.
            models.UniqueConstraint(fields=["id", "clinic"], name="message_id_clinic_unique"),
        ]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_conversation_time_idx"),
            # The dashboard: today's messages of a clinic, and its failed sends of the last 24 hours.
            models.Index(fields=["clinic", "created_at"], name="message_clinic_time_idx"),
            models.Index(
                fields=["clinic", "failed_at"], condition=Q(status=MessageStatus.FAILED), name="message_failed_idx"
            ),
            models.Index(fields=["created_at"], condition=Q(status=MessageStatus.QUEUED), name="message_queued_idx"),
            # The outbox sends one message per chat at a time, oldest first: "is an older one still pending?"
            models.Index(
                fields=["conversation", "id"],
                condition=Q(status__in=[MessageStatus.QUEUED, MessageStatus.SENDING]),
                name="message_outbox_pending_idx",
            ),
            models.Index(fields=["claimed_at"], condition=Q(status=MessageStatus.SENDING), name="message_sending_idx"),
            # The patient's messages no turn has handled yet (conversations.turns): few rows, read on every turn.
            models.Index(
                fields=["conversation", "created_at"],
                condition=Q(direction=MessageDirection.INBOUND, turn__isnull=True),
                name="message_awaiting_turn_idx",
            ),
        ]

    def __str__(self) -> str:
        when = date_format(timezone.localtime(self.created_at), "SHORT_DATETIME_FORMAT") if self.created_at else ""
        return f"{self.get_direction_display()} · {self.get_kind_display()} · {when}"


class StatusReceipt(models.Model):
    """A delivery status reported by the provider, kept even when it arrives before the message it describes.

    Providers do not guarantee order: a "read" can overtake the send's own response or the inbound message. Each
    receipt is stored once (a redelivery is a no-op) and applied to its message as soon as both exist.
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    provider_message_id = models.CharField(_("provider message id"), max_length=128)
    status = models.CharField(_("status"), max_length=10)
    error = models.TextField(_("error"), blank=True)
    occurred_at = models.DateTimeField(_("occurred at"))
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)

    class Meta:
        verbose_name = _("delivery receipt")
        verbose_name_plural = _("delivery receipts")
        constraints = [
            models.UniqueConstraint(fields=["clinic", "provider_message_id", "status"], name="status_receipt_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.status} · {self.provider_message_id}"


class WebhookProvider(models.TextChoices):
    EVOLUTION = "evolution", _("Evolution API")
    META = "meta", _("Meta WhatsApp Cloud API")
    CONSOLE = "console", _("Simulator")


class InboundEvent(models.Model):
    """A provider webhook exactly as received: stored before anything is parsed, processed once by a task."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    provider = models.CharField(_("provider"), max_length=20, choices=WebhookProvider.choices)
    event_type = models.CharField(_("event type"), max_length=60)
    # Provider-derived identity of the event (e.g. instance + event + message id + status); dedupes redeliveries.
    dedupe_key = models.CharField(_("dedupe key"), max_length=255, blank=True)
    payload = models.JSONField(_("payload"))
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        verbose_name = _("inbound event")
        verbose_name_plural = _("inbound events")
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["clinic", "provider", "dedupe_key"],
                condition=~Q(dedupe_key=""),
                name="inbound_event_dedupe_unique",
            ),
        ]
        indexes = [
            models.Index(
                fields=["received_at"], condition=Q(processed_at__isnull=True), name="inbound_event_pending_idx"
            ),
        ]

    def __str__(self) -> str:
        when = date_format(timezone.localtime(self.received_at), "SHORT_DATETIME_FORMAT") if self.received_at else ""
        return f"{self.get_provider_display()} · {self.event_type} · {when}"


# The text search configuration of the FAQ (created by migration 0008): Portuguese stemming after removing accents,
# so "cartao" finds "cartão" and "estacionar" finds "estacionamento".
FAQ_SEARCH_CONFIG = "portuguese_unaccent"
# What the FAQ is searched on. The GIN index below is built on this exact expression and conversations.knowledge
# queries with it: PostgreSQL uses an expression index only for an identical expression.
FAQ_SEARCH_VECTOR = SearchVector("question", "keywords", weight="A", config=FAQ_SEARCH_CONFIG) + SearchVector(
    "answer", weight="B", config=FAQ_SEARCH_CONFIG
)


class FaqEntry(models.Model):
    """A question patients ask and the clinic's answer, as the patient will read it. Both engines search these."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="faq_entries", verbose_name=_("clinic"))
    question = models.CharField(_("question"), max_length=200, help_text=_("As a patient would ask it."))
    answer = models.TextField(
        _("answer"), help_text=_("In Portuguese, as the patient will read it on WhatsApp (*bold* works).")
    )
    keywords = models.CharField(
        _("keywords"),
        max_length=200,
        blank=True,
        help_text=_("Other words patients use for this, separated by spaces (e.g. estacionar carro vaga)."),
    )
    active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("FAQ entry")
        verbose_name_plural = _("FAQ")
        ordering = ["question", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(question=""), name="faq_entry_question_not_empty"),
            models.CheckConstraint(condition=~Q(answer=""), name="faq_entry_answer_not_empty"),
        ]
        indexes = [
            GinIndex(FAQ_SEARCH_VECTOR, name="faq_entry_search_idx"),
        ]

    def __str__(self) -> str:
        return self.question


class LlmUsage(models.Model):
    """The language model calls and tokens of one clinic on one clinic-local day: the daily budget reads it.

    Written only by conversations.llm_budget, with one atomic upsert per call.
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    day = models.DateField(_("day"))
    calls = models.PositiveIntegerField(_("calls"), default=0)
    prompt_tokens = models.PositiveBigIntegerField(_("prompt tokens"), default=0)
    completion_tokens = models.PositiveBigIntegerField(_("completion tokens"), default=0)

    class Meta:
        verbose_name = _("language model usage")
        verbose_name_plural = _("language model usage")
        ordering = ["-day", "clinic"]
        constraints = [
            # The upsert of llm_usage_add conflicts on it: one row per clinic per day, however many workers.
            models.UniqueConstraint(fields=["clinic", "day"], name="llm_usage_one_per_clinic_day"),
        ]

    def __str__(self) -> str:
        return f"{self.clinic} · {date_format(self.day, 'SHORT_DATE_FORMAT')}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class QuickReply(models.Model):
    """A ready answer staff insert in the composer ("Nosso endereço é…"), per clinic, edited by managers."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="quick_replies", verbose_name=_("clinic"))
    title = models.CharField(_("title"), max_length=60, help_text=_("What staff see in the list, e.g. Endereço."))
    text = models.TextField(_("text"), help_text=_("As the patient will read it on WhatsApp (*bold* works)."))
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("quick reply")
        verbose_name_plural = _("quick replies")
        ordering = ["position", "title", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(title=""), name="quick_reply_title_not_empty"),
            models.CheckConstraint(condition=~Q(text=""), name="quick_reply_text_not_empty"),
        ]

    def __str__(self) -> str:
        return self.title


class ConversationNote(ClinicOwnedModel):
    """An internal note staff leave on a conversation: never sent to the patient, never shown to the assistant."""

    same_clinic_fields = ("conversation",)

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="notes", verbose_name=_("conversation")
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("author"),
    )
    author_label = models.CharField(_("author (name)"), max_length=150, blank=True)
    text = models.TextField(_("note"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("internal note")
        verbose_name_plural = _("internal notes")
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(text=""), name="conversation_note_text_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.author_label} · {self.created_at:%Y-%m-%d %H:%M}"
