"""Admin pages of the WhatsApp channel: the simulator (staff chat as a patient) and connecting a clinic's number.

Hooked into the admin by ConversationAdmin.get_urls (conversations/admin.py), behind `admin_site.admin_view` (active
staff only, CSRF). Views validate and call services (conversations.simulator, conversations.channel_connect); they
hold no business logic. Scoping follows the admin's: a clinic outside the user's clinics answers 404, a clinic where
their role does not allow the step answers 403.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.http import urlencode
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cecilia.models import ChannelState, Clinic, WhatsAppProvider
from cecilia.selectors import clinic_ids_allowing
from conversations.channel_connect import (
    EVOLUTION_WEBHOOK_EVENTS,
    ChannelSetupError,
    channel_instance_create,
    channel_pair,
    channel_state_check,
    channel_webhook_set,
    webhook_url,
)
from conversations.models import Conversation, Message, MessageAuthor, MessageDirection, MessageKind
from conversations.simulator import (
    MAX_TEXT_LENGTH,
    SIMULATOR_ONLY_CONSOLE,
    SimulatorRefused,
    pending_is_late,
    simulator_available,
    simulator_message_id,
    simulator_message_send,
    simulator_transcript,
)
from integrations.whatsapp.base import QrCodeUpdate
from patients.models import Patient
from patients.phones import InvalidPhoneNumber, format_phone_for_display, normalize_phone

# How many patients the simulator's picker lists (the demo clinic has a few dozen; a real clinic is never simulated).
PATIENT_CHOICES_LIMIT = 500


# --- WhatsApp simulator --------------------------------------------------------------------------------------------


class SimulatorForm(forms.Form):
    """One message from the patient's side. The phone typed wins; the patient picker only fills it in."""

    patient = forms.IntegerField(required=False)
    phone = forms.CharField(label=_("Phone number"), required=False, max_length=40)
    name = forms.CharField(label=_("Name on WhatsApp"), required=False, max_length=120)
    text = forms.CharField(label=_("Message"), max_length=MAX_TEXT_LENGTH, strip=True)
    message_id = forms.CharField(required=False, max_length=64)

    def __init__(self, *args: Any, clinic: Clinic, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clinic = clinic
        self.chat_patient: Patient | None = None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        raw_phone = (cleaned.get("phone") or "").strip()
        patient_id = cleaned.get("patient")
        if raw_phone:
            try:
                cleaned["phone"] = normalize_phone(raw_phone)
            except InvalidPhoneNumber as exc:
                self.add_error("phone", exc)
                return cleaned
        elif patient_id:
            patient = Patient.objects.filter(clinic=self.clinic, pk=patient_id, phone__isnull=False).first()
            if patient is None:
                self.add_error("patient", _("Choose a patient of this clinic with a phone number."))
                return cleaned
            cleaned["phone"] = patient.phone
        else:
            self.add_error("phone", _("Choose a patient or type a phone number."))
            return cleaned
        self.chat_patient = Patient.objects.filter(clinic=self.clinic, phone=cleaned["phone"]).first()
        return cleaned


def _simulator_clinics(request: HttpRequest) -> list[Clinic]:
    """The clinics whose conversations the user may see (any provider: the page says why some are not simulated)."""
    ids = clinic_ids_allowing(request.user, "view", "conversations", "conversation")
    clinics = Clinic.objects.all() if ids is None else Clinic.objects.filter(pk__in=ids)
    return list(clinics.only("pk", "name", "whatsapp_provider", "timezone", "assistant_name").order_by("name"))


def _chosen_clinic(clinics: list[Clinic], raw: str | None) -> Clinic | None:
    """The clinic asked for (404 when it is not one of the user's), else the user's first console clinic."""
    if raw:
        try:
            wanted = int(raw)
        except ValueError:
            raise Http404 from None
        for clinic in clinics:
            if clinic.pk == wanted:
                return clinic
        raise Http404
    return next((c for c in clinics if simulator_available(c)), None)


def _require_conversation_view(request: HttpRequest, model_admin: admin.ModelAdmin) -> None:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied


@require_http_methods(["GET", "POST"])
def simulator(request: HttpRequest, *, model_admin: admin.ModelAdmin) -> HttpResponse:
    """The patient's side of a chat with a console clinic: pick who writes, type, send; the transcript refreshes."""
    _require_conversation_view(request, model_admin)
    clinics = _simulator_clinics(request)
    source = request.POST if request.method == "POST" else request.GET
    clinic = _chosen_clinic(clinics, source.get("clinic"))
    available = clinic is not None and simulator_available(clinic)
    form: SimulatorForm | None = None
    phone, phone_error = "", ""
    if available and request.method == "POST":
        form = SimulatorForm(request.POST, clinic=clinic)
        if form.is_valid() and _simulator_send(clinic, form):
            query = {"clinic": clinic.pk, "phone": form.cleaned_data["phone"]}
            return HttpResponseRedirect(f"{request.path}?{urlencode(query)}")
        phone = form.cleaned_data.get("phone", "")  # valid even when the text was not: keep showing that chat
    elif available:
        typed = request.GET.get("phone", "")
        phone, phone_error = _phone_from_query(typed)
        initial = {"phone": phone or typed, "name": request.GET.get("name", ""), "message_id": simulator_message_id()}
        form = SimulatorForm(clinic=clinic, initial=initial)
    elif clinic is not None and request.method == "POST":
        messages.error(request, SIMULATOR_ONLY_CONSOLE)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": _("WhatsApp simulator"),
        "clinics": [(c, simulator_available(c)) for c in clinics],
        "clinic": clinic,
        "available": available,
        "form": form,
        "message_id": simulator_message_id(),
        "phone": phone,
        "phone_display": format_phone_for_display(phone) if phone else "",
        "phone_error": phone_error,
        "patients": _patient_choices(clinic) if available else [],
        "max_text_length": MAX_TEXT_LENGTH,
        "only_console": SIMULATOR_ONLY_CONSOLE,
    }
    if available and phone:
        context.update(_transcript_context(clinic, phone))
        query = urlencode({"clinic": clinic.pk, "phone": phone})
        context["messages_url"] = f"{reverse('admin:conversations_conversation_simulator_messages')}?{query}"
    return TemplateResponse(request, "admin/conversations/simulator.html", context)


def _simulator_send(clinic: Clinic, form: SimulatorForm) -> bool:
    data = form.cleaned_data
    # An existing patient keeps the name WhatsApp shows for them unless another one is typed.
    name = data.get("name", "") or (form.chat_patient.whatsapp_name if form.chat_patient else "")
    try:
        simulator_message_send(
            clinic=clinic, phone=data["phone"], text=data["text"], name=name, message_id=data.get("message_id")
        )
    except SimulatorRefused as refused:
        form.add_error("text", refused.message)
        return False
    return True


def _phone_from_query(raw: str) -> tuple[str, str]:
    if not raw.strip():
        return "", ""
    try:
        return normalize_phone(raw), ""
    except InvalidPhoneNumber as exc:
        return "", " ".join(exc.messages)


def _patient_choices(clinic: Clinic) -> list[dict[str, Any]]:
    patients = Patient.objects.filter(clinic=clinic, phone__isnull=False).order_by("full_name", "whatsapp_name", "id")
    return [
        {"id": p.pk, "name": p.display_name, "phone": p.phone, "phone_display": format_phone_for_display(p.phone)}
        for p in patients.only("pk", "full_name", "whatsapp_name", "phone")[:PATIENT_CHOICES_LIMIT]
    ]


def _transcript_context(clinic: Clinic, phone: str) -> dict[str, Any]:
    transcript = simulator_transcript(clinic=clinic, phone=phone)
    conversation_url = ""
    if transcript.patient is not None:
        conversation = Conversation.objects.filter(clinic=clinic, patient=transcript.patient).only("pk").first()
        if conversation is not None:
            conversation_url = reverse("admin:conversations_conversation_change", args=[conversation.pk])
    return {
        "chat_patient": transcript.patient,
        "transcript": [_message_json(clinic, m) for m in transcript.messages],
        "pending": [_pending_json(e) for e in transcript.pending],
        "conversation_url": conversation_url,
    }


def _local_time(clinic: Clinic, moment: Any) -> str:
    local = timezone.localtime(moment, clinic.tz)
    if local.date() == timezone.localtime(timezone.now(), clinic.tz).date():
        return local.strftime("%H:%M")
    return date_format(local, "SHORT_DATETIME_FORMAT")


def _message_json(clinic: Clinic, message: Message) -> dict[str, Any]:
    if message.author == MessageAuthor.AI:
        author = clinic.assistant_name
    elif message.author == MessageAuthor.STAFF and message.author_user is not None:
        author = message.author_user.get_full_name() or message.author_user.get_username()
    else:
        author = message.get_author_display()
    text = message.text
    if message.kind != MessageKind.TEXT:
        text = f"[{message.get_kind_display()}] {text}".strip()
    return {
        "id": message.pk,
        "from_patient": message.direction == MessageDirection.INBOUND,
        "author": str(author),
        "text": text,
        "status": message.status,
        "status_label": str(message.get_status_display()),
        "error": message.error,
        "time": _local_time(clinic, message.created_at),
    }


def _pending_json(event: Any) -> dict[str, Any]:
    payload = event.payload if isinstance(event.payload, dict) else {}
    late = pending_is_late(event)
    note = (
        gettext("Still waiting to be processed: is the worker running? (`make run` starts it.)")
        if late
        else gettext("Sending…")
    )
    return {"id": event.pk, "text": str(payload.get("text", "")), "note": note, "late": late}


@require_GET
def simulator_messages(request: HttpRequest, *, model_admin: admin.ModelAdmin) -> JsonResponse:
    """The transcript as JSON, polled by the simulator page every ~2 s."""
    _require_conversation_view(request, model_admin)
    raw_clinic = request.GET.get("clinic", "")
    clinic = _chosen_clinic(_simulator_clinics(request), raw_clinic) if raw_clinic else None
    if clinic is None:
        raise Http404
    if not simulator_available(clinic):
        return JsonResponse({"error": str(SIMULATOR_ONLY_CONSOLE)}, status=400)
    phone, error = _phone_from_query(request.GET.get("phone", ""))
    if not phone:
        return JsonResponse({"error": error or gettext("Choose a patient or type a phone number.")}, status=400)
    context = _transcript_context(clinic, phone)
    return JsonResponse(
        {
            "messages": context["transcript"],
            "pending": context["pending"],
            "conversation_url": context["conversation_url"],
        }
    )


# --- Connecting a number -------------------------------------------------------------------------------------------


def _managed_clinic(request: HttpRequest, clinic_id: int, model_admin: admin.ModelAdmin) -> Clinic:
    """The clinic, when the user may change its settings: 404 outside their clinics, 403 for other roles there.

    Asked of the clinic's own admin, so this page follows exactly the rules of the clinic's change form.
    """
    clinic_admin = model_admin.admin_site.get_model_admin(Clinic)
    clinic = clinic_admin.get_queryset(request).filter(pk=clinic_id).first()
    if clinic is None:
        raise Http404
    if not clinic_admin.has_change_permission(request, clinic):
        raise PermissionDenied
    return clinic


# The clinic's own field names, so the page names each setting as the clinic's form does.
_CLINIC_LABELS = (
    "whatsapp_provider",
    "whatsapp_instance",
    "whatsapp_api_url",
    "whatsapp_api_key",
    "whatsapp_webhook_secret",
    "whatsapp_verify_token",
    "channel_state",
    "channel_state_since",
    "channel_phone",
)

_CHANNEL_ACTIONS = ("create", "webhook", "pair", "state")


@require_http_methods(["GET", "POST"])
def channel(request: HttpRequest, clinic_id: int, *, model_admin: admin.ModelAdmin) -> HttpResponse:
    """Connecting the clinic's number, step by step. Each step posts `action`; its outcome is an admin message."""
    clinic = _managed_clinic(request, clinic_id, model_admin)
    qr: QrCodeUpdate | None = None
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action not in _CHANNEL_ACTIONS:
            messages.error(request, _("Unknown action."))
        else:
            try:
                qr = _channel_step(request, clinic, action)
            except ChannelSetupError as failed:
                messages.error(request, failed.message)
        if qr is None:
            return HttpResponseRedirect(request.path)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": Clinic._meta,
        "title": _("Connect WhatsApp"),
        "subtitle": clinic.name,
        "clinic": clinic,
        "is_evolution": clinic.whatsapp_provider == WhatsAppProvider.EVOLUTION,
        "is_meta": clinic.whatsapp_provider == WhatsAppProvider.META,
        "is_console": clinic.whatsapp_provider == WhatsAppProvider.CONSOLE,
        "webhook_url": webhook_url(clinic.whatsapp_provider),
        "webhook_events": EVOLUTION_WEBHOOK_EVENTS,
        "labels": {name: capfirst(Clinic._meta.get_field(name).verbose_name) for name in _CLINIC_LABELS},
        "has_api_key": bool(clinic.whatsapp_api_key),
        "has_webhook_secret": bool(clinic.whatsapp_webhook_secret),
        "has_verify_token": bool(clinic.whatsapp_verify_token),
        "instance_name": clinic.whatsapp_instance or clinic.slug,
        "state_open": clinic.channel_state == ChannelState.OPEN,
        "state_since": _local_time(clinic, clinic.channel_state_since) if clinic.channel_state_since else "",
        "phone_display": format_phone_for_display(f"+{clinic.channel_phone.lstrip('+')}")
        if clinic.channel_phone
        else "",
        "qr": qr,
        "pair_url": reverse("admin:conversations_conversation_channel_pair", args=[clinic.pk]),
        "clinic_url": reverse("admin:cecilia_clinic_change", args=[clinic.pk]),
        "simulator_url": reverse("admin:conversations_conversation_simulator") + "?" + urlencode({"clinic": clinic.pk}),
    }
    return TemplateResponse(request, "admin/conversations/channel.html", context)


def _channel_step(request: HttpRequest, clinic: Clinic, action: str) -> QrCodeUpdate | None:
    """Run one step; say how it went. Returns a QR code to show at once (pairing), else None."""
    if action == "create":
        created = channel_instance_create(clinic=clinic, global_api_key=request.POST.get("global_api_key", ""))
        messages.success(
            request,
            _("Instance “%(name)s” created on the Evolution server; its token is stored in the clinic's settings.")
            % {"name": created.instance_name},
        )
        return created.qr
    if action == "webhook":
        url = channel_webhook_set(clinic=clinic)
        messages.success(
            request, _("Webhook set: Evolution now sends the clinic's messages to %(url)s.") % {"url": url}
        )
        return None
    if action == "pair":
        answer = channel_pair(clinic=clinic)
        if isinstance(answer, QrCodeUpdate):
            return answer
        if answer.state == ChannelState.OPEN:
            messages.success(request, _("The number is connected: there is no QR code to scan."))
        else:
            messages.warning(request, _("The Evolution server has no QR code yet. Try again in a few seconds."))
        return None
    state = channel_state_check(clinic=clinic)
    label = ChannelState(str(state)).label
    level = messages.SUCCESS if state == ChannelState.OPEN else messages.WARNING
    messages.add_message(
        request, level, _("WhatsApp connection, as the provider says now: %(state)s.") % {"state": label}
    )
    return None


@require_POST
def channel_pair_poll(request: HttpRequest, clinic_id: int, *, model_admin: admin.ModelAdmin) -> JsonResponse:
    """Polled by the channel page while the QR code is shown: the current QR code, or `open` once paired."""
    clinic = _managed_clinic(request, clinic_id, model_admin)
    try:
        answer = channel_pair(clinic=clinic)
    except ChannelSetupError as failed:
        # Answered 200: this request worked, the provider did not. The page shows the reason and polls again.
        return JsonResponse({"error": failed.message})
    if isinstance(answer, QrCodeUpdate):
        state, qr, pairing = ChannelState.CONNECTING, answer.image_data_url, answer.pairing_code
    else:
        state, qr, pairing = ChannelState(str(answer.state)), "", ""
    return JsonResponse({"state": state.value, "state_label": str(state.label), "qr": qr, "pairing_code": pairing})
