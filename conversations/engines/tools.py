"""The LLM receptionist's tools: their JSON schemas, argument validation, scoping and implementations.

Every tool acts for one conversation (`ToolScope`): its clinic, its patient and the patient's dependents, nobody else
(Invariant 4). Scoping is in code, whatever the model asks: a service, professional or appointment id that is not
this clinic's, or an appointment or patient that is neither the patient's nor a dependent's, gets a tool error back
("not_found" / "not_allowed") and nothing changes; a refusal for someone else's data is logged with ids only.

Arguments are the model's JSON text and are validated here (`PARAMS` is both the schema sent to the model and the
validator): malformed JSON, unknown names, missing or wrongly typed values become an error message the model can
correct, never an exception.

**Writes need the patient's explicit yes.** `book_appointment`, `reschedule_appointment`, `cancel_appointment` and
`join_waitlist` never write when the model calls them. They check the action (ids, scope, the slot is free, the
clinic's notice) and return `needs_confirmation` with a read-back ("Confirmo: *Dra. Ana*, Limpeza, *sexta-feira,
28/11 às 09:30*?") and the action itself as `ToolResult.proposed`. The engine stores it as the conversation's pending
action and makes sure the read-back is what the patient reads. On the next turn, and only then, a plain yes from the
patient (and nothing else) runs exactly that stored action through `action_execute` — the model cannot change what
is written between the question and the answer. A booking's slot is held for the conversation while the patient
answers.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conversations.engines.context import TurnContext
from conversations.engines.rules.texts import price_label, when_label
from scheduling import availability
from scheduling.errors import BookingError, CancellationTooLate, ProfessionalDoesNotPerform, SlotTaken
from scheduling.models import Appointment, AppointmentSource, AppointmentStatus, Professional, Service
from scheduling.services import Actor, appointment_book, appointment_cancel, appointment_reschedule

if TYPE_CHECKING:
    from cecilia.models import Clinic
    from conversations.models import Conversation

logger = logging.getLogger(__name__)

WRITE_TOOLS = frozenset({"book_appointment", "reschedule_appointment", "cancel_appointment", "join_waitlist"})
_OPEN = (AppointmentStatus.SCHEDULED, AppointmentStatus.CONFIRMED)
_SLOTS_OFFERED = 6


@dataclass(frozen=True)
class ToolScope:
    """Whom the tools act for in this turn."""

    clinic: Clinic
    conversation: Conversation
    context: TurnContext
    now: datetime.datetime

    @property
    def holder(self) -> str:
        return f"conversation:{self.conversation.pk}"

    @property
    def people(self) -> set[int]:
        """The patient and their dependents: the only people tools act for."""
        return {self.context.patient.id, *(person.id for person in self.context.patient.dependents)}


@dataclass
class ToolResult:
    content: dict[str, Any]  # what the model reads (JSON)
    proposed: dict[str, Any] | None = None  # a write waiting for the patient's yes (see the module docstring)
    handoff_summary: str | None = None  # the model asked to pass the conversation to staff
    done_text: str = ""  # pt-BR: what was written, for the patient, when the model cannot word it
    error: bool = False

    def as_json(self) -> str:
        return json.dumps(self.content, ensure_ascii=False, default=str)


class ToolError(Exception):
    """A call the tool will not run; `code` and the message go back to the model."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra

    def result(self) -> ToolResult:
        return ToolResult({"error": self.code, "message": str(self), **self.extra}, error=True)


# --------------------------------------------------------------------------------------------------------------
# Parameters: the schema the model sees and the validator, from one description
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "integer", "string", "date" (YYYY-MM-DD), "datetime" (clinic-local ISO 8601) or "enum"
    description: str
    required: bool = True
    choices: tuple[str, ...] = ()
    max_length: int = 500


_SERVICE = Param("service_id", "integer", "A service id from the clinic's list.")
_PROFESSIONAL = Param("professional_id", "integer", "A professional id from the clinic's list.")
_START = Param("start", "datetime", "The slot's start exactly as find_slots gave it, e.g. 2025-11-28T09:30-03:00.")
_APPOINTMENT = Param("appointment_id", "integer", "An id from the patient's own appointments.")

PARAMS: dict[str, tuple[str, tuple[Param, ...]]] = {
    "list_services": ("The clinic's services: id, duration, price, health plans, who performs them, preparation.", ()),
    "list_professionals": (
        "The clinic's professionals: id, name, specialty, the services they perform.",
        (Param("service_id", "integer", "Only those who perform this service.", required=False),),
    ),
    "find_slots": (
        "Free times the patient can book for a service, earliest first, spread to be real choices.",
        (
            _SERVICE,
            Param("professional_id", "integer", "Only this professional.", required=False),
            Param("date_from", "date", "First day to look at (YYYY-MM-DD); default today.", required=False),
            Param("date_to", "date", "Last day to look at (YYYY-MM-DD).", required=False),
            Param(
                "part_of_day",
                "enum",
                "morning (before 12h), afternoon (12h–18h) or evening.",
                required=False,
                choices=tuple(availability.PartOfDay.values),
            ),
        ),
    ),
    "hold_slot": (
        "Keep a free slot for this patient for a few minutes while they decide. Books nothing.",
        (_SERVICE, _PROFESSIONAL, _START),
    ),
    "book_appointment": (
        "Book a slot for the patient or one of their dependents. The first call books nothing: it returns a "
        "read-back the patient must confirm; their yes books it.",
        (
            _SERVICE,
            _PROFESSIONAL,
            _START,
            Param("patient_id", "integer", "A dependent's id; default the patient writing.", required=False),
        ),
    ),
    "reschedule_appointment": (
        "Move one of the patient's appointments. The first call changes nothing: the patient must confirm.",
        (_APPOINTMENT, _START, Param("professional_id", "integer", "Another professional.", required=False)),
    ),
    "cancel_appointment": (
        "Cancel one of the patient's appointments. The first call changes nothing: the patient must confirm.",
        (_APPOINTMENT, Param("reason", "string", "The patient's reason, if they gave one.", required=False)),
    ),
    "join_waitlist": (
        "Put the patient (or a dependent) on the waitlist for a service: when a time frees up (a cancellation), the "
        "clinic offers it to them here. With appointment_id, an earlier time moves that appointment. Use when they "
        "ask to be told of an earlier or any opening, or when nothing free suits them. The first call changes "
        "nothing: the patient must confirm.",
        (
            _SERVICE,
            Param(
                "professional_id", "integer", "Only this professional; default anyone who performs it.", required=False
            ),
            Param("appointment_id", "integer", "Their appointment of this service to bring forward.", required=False),
            Param("patient_id", "integer", "A dependent's id; default the patient writing.", required=False),
        ),
    ),
    "list_my_appointments": ("The upcoming appointments of the patient and their dependents.", ()),
    "search_clinic_info": (
        "Search the clinic's FAQ and facts (prices, health plans, address, hours, preparation, policies).",
        (Param("query", "string", "The patient's question, in Portuguese.", max_length=300),),
    ),
    "handoff_to_staff": (
        "Pass the conversation to the clinic's staff. Use when unsure, when asked, or for anything you cannot do.",
        (Param("summary", "string", "For staff: what the patient wants and what was tried.", max_length=600),),
    ),
}


def _schema(param: Param) -> dict[str, Any]:
    if param.kind == "integer":
        return {"type": "integer", "description": param.description}
    if param.kind == "enum":
        return {"type": "string", "enum": list(param.choices), "description": param.description}
    return {"type": "string", "description": param.description}


def tool_schemas() -> list[dict[str, Any]]:
    """The tools as Chat Completions declares them (`tools=[{"type": "function", ...}]`)."""
    return [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": description,
                "parameters": {
                    "type": "object",
                    "properties": {param.name: _schema(param) for param in params},
                    "required": [param.name for param in params if param.required],
                    "additionalProperties": False,
                },
            },
        }
        for name, (description, params) in PARAMS.items()
    ]


def parse_arguments(name: str, raw: str, *, tz: datetime.tzinfo) -> dict[str, Any]:
    """The model's argument text for tool `name`, validated and converted (dates, aware datetimes); ToolError if not."""
    if name not in PARAMS:
        raise ToolError("unknown_tool", f"There is no tool named {name!r}.")
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, AttributeError):
        raise ToolError("invalid_arguments", "The arguments are not valid JSON. Send a JSON object.") from None
    if not isinstance(data, dict):
        raise ToolError("invalid_arguments", "The arguments must be a JSON object.")
    params = {param.name: param for param in PARAMS[name][1]}
    unknown = sorted(set(data) - set(params))
    if unknown:
        raise ToolError("invalid_arguments", f"Unknown arguments: {', '.join(unknown)}.")
    values: dict[str, Any] = {}
    for param in params.values():
        value = data.get(param.name)
        if value is None or value == "":
            if param.required:
                raise ToolError("invalid_arguments", f"{param.name} is required.")
            continue
        values[param.name] = _convert(param, value, tz)
    return values


def _convert(param: Param, value: Any, tz: datetime.tzinfo) -> Any:
    wrong = ToolError("invalid_arguments", f"{param.name} must be {_KIND_WORDS[param.kind]}.")
    if param.kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if not isinstance(value, str):
        raise wrong
    value = value.strip()
    try:
        if param.kind == "date":
            return datetime.date.fromisoformat(value)
        if param.kind == "datetime":
            moment = datetime.datetime.fromisoformat(value)
            # A naive time is the clinic's wall clock: patients never think in another zone.
            return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment.astimezone(tz)
    except ValueError:
        raise wrong from None
    if param.kind == "enum" and value not in param.choices:
        raise wrong
    return value[: param.max_length]


_KIND_WORDS = {
    "integer": "an integer",
    "string": "a string",
    "date": "a date as YYYY-MM-DD",
    "datetime": "a date and time as YYYY-MM-DDTHH:MM (clinic time)",
    "enum": "one of the listed values",
}


# --------------------------------------------------------------------------------------------------------------
# Running a tool
# --------------------------------------------------------------------------------------------------------------


def tool_run(scope: ToolScope, name: str, raw_arguments: str) -> ToolResult:
    """Run the model's call of tool `name`; every problem is a result with an error for the model, never a raise."""
    try:
        arguments = parse_arguments(name, raw_arguments, tz=scope.clinic.tz)
        return _HANDLERS[name](scope, arguments)
    except ToolError as exc:
        return exc.result()
    except BookingError as exc:
        return _booking_error(scope, exc)


def action_execute(scope: ToolScope, action: dict[str, Any]) -> ToolResult:
    """Run a write the patient has just confirmed: exactly the stored pending action, re-checked against the scope."""
    tool = action.get("tool")
    if tool not in WRITE_TOOLS:
        return ToolError("unknown_tool", "Nothing to confirm.").result()
    try:
        arguments = parse_arguments(tool, json.dumps(action.get("args") or {}), tz=scope.clinic.tz)
        return _EXECUTORS[tool](scope, arguments)
    except ToolError as exc:
        return exc.result()
    except BookingError as exc:
        return _booking_error(scope, exc)


def _booking_error(scope: ToolScope, exc: BookingError) -> ToolResult:
    content: dict[str, Any] = {"error": exc.code, "message": _BOOKING_HINTS.get(exc.code, "This cannot be done.")}
    details = {key: value for key, value in exc.details.items() if key != "alternatives"}
    if details:
        content["details"] = details
    if isinstance(exc, SlotTaken) and exc.alternatives:
        content["alternatives"] = [_slot(scope, slot) for slot in exc.alternatives]
    return ToolResult(content, error=True)


_BOOKING_HINTS = {
    "slot_taken": "That time is no longer free. Offer the alternatives.",
    "outside_hours": "Not a time the clinic offers for this service. Use find_slots.",
    "clinic_closed": "The clinic is closed that day.",
    "in_the_past": "That time has passed.",
    "too_soon": "Sooner than the clinic's minimum notice; details.earliest is the earliest possible.",
    "beyond_horizon": "Bookings are not open that far ahead yet.",
    "professional_unavailable": "The professional is not available then.",
    "professional_does_not_perform": "This professional does not perform this service.",
    "patient_overlap": "The patient already has an appointment at that time.",
    "cancellation_too_late": "Too close to the appointment: only staff can change it now. Offer to hand off.",
    "invalid_transition": "This appointment can no longer be changed.",
}


# --- lookups, scoped --------------------------------------------------------------------------------------------


def _service(scope: ToolScope, service_id: int) -> Service:
    service = Service.objects.filter(clinic_id=scope.clinic.pk, pk=service_id, active=True).first()
    if service is None:
        raise ToolError("not_found", f"No service {service_id} at this clinic. Use list_services.")
    service.clinic = scope.clinic  # the same row, already loaded: availability reads its policy and time zone
    return service


def _professional(scope: ToolScope, professional_id: int) -> Professional:
    professional = Professional.objects.filter(clinic_id=scope.clinic.pk, pk=professional_id, active=True).first()
    if professional is None:
        raise ToolError("not_found", f"No professional {professional_id} at this clinic. Use list_professionals.")
    return professional


def _patient_id(scope: ToolScope, tool: str, patient_id: int | None) -> int:
    patient_id = patient_id if patient_id is not None else scope.context.patient.id
    if not scope.context.patient.may_act_for(patient_id):
        _refuse(scope, tool, "patient", patient_id)
    return patient_id


def _appointment(scope: ToolScope, tool: str, appointment_id: int) -> Appointment:
    appointment = (
        Appointment.objects.select_related("professional", "service", "patient", "clinic")
        .filter(clinic_id=scope.clinic.pk, pk=appointment_id, patient_id__in=scope.people)
        .first()
    )
    if appointment is None:
        _refuse(scope, tool, "appointment", appointment_id)
    return appointment


def _refuse(scope: ToolScope, tool: str, kind: str, target_id: int) -> None:
    # Ids only: who asked (conversation) and for what. The same answer whether the id exists elsewhere or not,
    # so the model cannot probe for other patients' data.
    logger.warning(
        "Assistant tool %s refused in conversation %s: %s %s is not the patient's or a dependent's",
        tool,
        scope.conversation.pk,
        kind,
        target_id,
    )
    raise ToolError(
        "not_allowed",
        f"That {kind} is not this patient's or a dependent's. You can only act for the patient writing and their "
        "dependents; do not ask again.",
    )


# --- labels -----------------------------------------------------------------------------------------------------


def _slot(scope: ToolScope, slot: availability.Slot) -> dict[str, Any]:
    professional = scope.context.clinic.professional(slot.professional_id)
    return {
        "professional_id": slot.professional_id,
        "professional": professional.name if professional else "",
        "start": slot.start.astimezone(scope.clinic.tz).isoformat(timespec="minutes"),
        "when": when_label(slot.start, scope.clinic.tz),
    }


def _appointment_dict(scope: ToolScope, appointment: Appointment) -> dict[str, Any]:
    person = appointment.patient
    return {
        "appointment_id": appointment.pk,
        "for": "the patient" if person.pk == scope.context.patient.id else (person.full_name.split() or [""])[0],
        "service": appointment.service.name,
        "professional": appointment.professional.name,
        "start": appointment.start.astimezone(scope.clinic.tz).isoformat(timespec="minutes"),
        "when": when_label(appointment.start, scope.clinic.tz),
        "status": appointment.status,
    }


def _dependent_name(scope: ToolScope, patient_id: int) -> str:
    """The dependent's first name ("Pedro"); "" for the patient writing (or a dependent with no name yet)."""
    person = next((p for p in scope.context.patient.dependents if p.id == patient_id), None)
    return person.first_name if person else ""


def _for_whom(scope: ToolScope, patient_id: int) -> str:
    """ " para o Pedro" when booking for a dependent; "" for the patient writing."""
    name = _dependent_name(scope, patient_id)
    return f" para *{name}*" if name else ""


# --- read tools ---------------------------------------------------------------------------------------------------


def _list_services(scope: ToolScope, _arguments: dict[str, Any]) -> ToolResult:
    return ToolResult(
        {
            "services": [
                {
                    "service_id": s.id,
                    "name": s.name,
                    "duration_minutes": s.duration_minutes,
                    "price": price_label(s.price) if s.price is not None else "ask staff",
                    "accepts_private": s.accepts_private,
                    "health_plans": list(s.health_plans),
                    "professional_ids": list(s.professional_ids),
                    "preparation": s.preparation,
                }
                for s in scope.context.clinic.services
            ]
        }
    )


def _list_professionals(scope: ToolScope, arguments: dict[str, Any]) -> ToolResult:
    clinic = scope.context.clinic
    wanted = arguments.get("service_id")
    return ToolResult(
        {
            "professionals": [
                {
                    "professional_id": p.id,
                    "name": p.name,
                    "specialty": p.specialty,
                    "service_ids": [s.id for s in clinic.services if p.id in s.professional_ids],
                }
                for p in clinic.professionals
                if wanted is None or any(s.id == wanted and p.id in s.professional_ids for s in clinic.services)
            ]
        }
    )


def _find_slots(scope: ToolScope, arguments: dict[str, Any]) -> ToolResult:
    service = _service(scope, arguments["service_id"])
    professional = _professional(scope, arguments["professional_id"]) if "professional_id" in arguments else None
    tz = scope.clinic.tz
    today = scope.now.astimezone(tz).date()
    date_from: datetime.date = arguments.get("date_from", today)
    date_to: datetime.date | None = arguments.get("date_to")
    if date_to is not None and date_to < date_from:
        raise ToolError("invalid_arguments", "date_to is before date_from.")
    after = max(scope.now, datetime.datetime.combine(date_from, datetime.time(0), tzinfo=tz))
    found = availability.next_available(
        service=service,
        professional=professional,
        after=after,
        part_of_day=arguments.get("part_of_day"),
        holder=scope.holder,
        count=_SLOTS_OFFERED,
        now=scope.now,
    )
    in_range = [s for s in found if date_to is None or s.start.astimezone(tz).date() <= date_to]
    content: dict[str, Any] = {"service": service.name, "slots": [_slot(scope, s) for s in in_range]}
    if not in_range:
        content["note"] = "No free time in those days."
        content["next_available"] = [_slot(scope, s) for s in found[:3]]
    return ToolResult(content)


def _hold_slot(scope: ToolScope, arguments: dict[str, Any]) -> ToolResult:
    service = _service(scope, arguments["service_id"])
    professional = _professional(scope, arguments["professional_id"])
    hold = availability.hold_slot(
        service=service,
        professional=professional,
        start=arguments["start"],
        holder=scope.holder,
        patient=scope.conversation.patient,
        now=scope.now,
    )
    until = hold.expires_at.astimezone(scope.clinic.tz)
    return ToolResult({"held": True, "until": until.isoformat(timespec="minutes")})


def _list_my_appointments(scope: ToolScope, _arguments: dict[str, Any]) -> ToolResult:
    appointments = (
        Appointment.objects.select_related("professional", "service", "patient")
        .filter(clinic_id=scope.clinic.pk, patient_id__in=scope.people, end__gt=scope.now, status__in=_OPEN)
        .order_by("start")[:20]
    )
    return ToolResult({"appointments": [_appointment_dict(scope, a) for a in appointments]})


def _search_clinic_info(scope: ToolScope, arguments: dict[str, Any]) -> ToolResult:
    from conversations.knowledge import faq_search

    clinic = scope.context.clinic
    entries = faq_search(clinic=scope.clinic, text=arguments["query"], limit=3)
    return ToolResult(
        {
            "faq": [{"question": entry.question, "answer": entry.answer} for entry in entries],
            "clinic": {
                "name": clinic.name,
                "address": ", ".join(part for part in (clinic.address, clinic.city, clinic.state) if part),
                "hours": list(clinic.hours),
                "health_plans": list(clinic.health_plans),
                "website": clinic.website,
                "phone": clinic.phone,
            },
        }
    )


def _handoff(scope: ToolScope, arguments: dict[str, Any]) -> ToolResult:
    instruction = "Tell the patient in one short sentence that someone from the team will continue here."
    return ToolResult({"handed_off": True, "instruction": instruction}, handoff_summary=arguments["summary"])


# --- write tools: propose (first call), execute (after the patient's yes) -----------------------------------------


def _needs_confirmation(tool: str, arguments: dict[str, Any], read_back: str, now: datetime.datetime) -> ToolResult:
    stored = {k: v.isoformat() if isinstance(v, datetime.datetime | datetime.date) else v for k, v in arguments.items()}
    return ToolResult(
        {
            "status": "needs_confirmation",
            "read_back": read_back,
            "instruction": "Nothing was done yet. End your reply with exactly this read_back question and wait: it "
            "is done only if the patient answers yes in their next message.",
        },
        proposed={"tool": tool, "args": stored, "read_back": read_back, "proposed_at": now.isoformat()},
    )


def _propose_book(scope: ToolScope, arguments: dict[str, Any]) -> ToolResult:
    patient_id = _patient_id(scope, "book_appointment", arguments.get("patient_id"))
    service = _service(scope, arguments["service_id"])
    professional = _professional(scope, arguments["professional_id"])
    start = arguments["start"]
    # Held while the patient answers, so the yes finds the slot still free.
    availability.hold_slot(
        service=service,
        professional=professional,
        start=start,
        holder=scope.holder,
        patient=scope.clinic.patients.get(pk=patient_id),
        now=scope.now,
    )
    read_back = (
        f"Confirmo: *{professional.name}*, {service.name}{_for_whom(scope, patient_id)}, "
        f"*{when_label(start, scope.clinic.tz)}*?"
    )
    return _needs_confirmation("book_appointment", {**arguments, "patient_id": patient_id}, read_back, scope.now)


def _execute_book(scope: ToolScope, arguments: dict[str, Any]) -> ToolResult:
    patient_id = _patient_id(scope, "book_appointment", arguments.get("patient_id"))
    service = _service(scope, arguments["service_id"])
    professional = _professional(scope, arguments["professional_id"])
    patient = scope.clinic.patients.get(pk=patient_id)
    appointment = appointment_book(
        patient=patient,
        service=service,
        professional=professional,
        start=arguments["start"],
        actor=Actor.patient(),
        source=AppointmentSource.WHATSAPP,
        holder=scope.holder,
    )
    when = when_label(appointment.start, scope.clinic.tz)
    return ToolResult(
        {"status": "booked", "appointment": _appointment_dict(scope, appointment)},
        done_text=f"Pronto! ✅ Está marcado: *{professional.name}*, {service.name}"
        f"{_for_whom(scope, patient_id)}, *{when}*.",
    )


def _check_notice(appointment: Appointment, now: datetime.datetime) -> None:
    """The clinic's cancellation notice, checked before asking (the service checks it again when writing)."""
    hours = appointment.clinic.cancellation_notice_hours
    if now > appointment.start - datetime.timedelta(hours=hours):
        raise CancellationTooLate(notice_hours=hours)


def _open_appointment(scope: ToolScope, tool: str, appointment_id: int) -> Appointment:
    appointment = _appointment(scope, tool, appointment_id)
    if appointment.status not in _OPEN or appointment.end <= scope.now:
        raise ToolError("invalid_transition", "This appointment is not upcoming any more; it cannot be changed.")
    _check_notice(appointment, scope.now)
    return appointment


def _propose_reschedule(scope: ToolScope, arguments: dict[str, Any]) -> ToolResult:
    appointment = _open_appointment(scope, "reschedule_appointment", arguments["appointment_id"])
    professional = (
        _professional(scope, arguments["professional_id"])
        if "professional_id" in arguments
        else appointment.professional
    )
    problem = availability.slot_problem(
        service=appointment.service,
        professional=professional,
        start=arguments["start"],
        holder=scope.holder,
        ignore_appointment_id=appointment.pk,
        now=scope.now,
    )
    if problem is not None:
        raise problem
    tz = scope.clinic.tz
    read_back = (
        f"Confirmo a remarcação de {appointment.service.name} de *{when_label(appointment.start, tz)}* para "
        f"*{when_label(arguments['start'], tz)}* com *{professional.name}*?"
    )
    return _needs_confirmation("reschedule_appointment", arguments, read_back, scope.now)


def _execute_reschedule(scope: ToolScope, arguments: dict[str, Any]) -> ToolResult:
    appointment = _open_appointment(scope, "reschedule_appointment", arguments["appointment_id"])
    professional = _professional(scope, arguments["professional_id"]) if "professional_id" in arguments else None
    moved = appointment_reschedule(
        appointment=appointment,
        start=arguments["start"],
        actor=Actor.patient(),
        professional=professional,
        holder=scope.holder,
    )
    moved.refresh_from_db()
    return ToolResult(
        {"status": "rescheduled", "appointment": _appointment_dict(scope, moved)},
        done_text=f"Pronto! ✅ Remarcado para *{when_label(moved.start, scope.clinic.tz)}* "
        f"com *{moved.professional.name}*.",
    )


def _propose_cancel(scope: ToolScope, arguments: dict[str, Any]) -> ToolResult:
    appointment = _open_appointment(scope, "cancel_appointment", arguments["appointment_id"])
    read_back = (
        f"Confirmo o cancelamento de {appointment.service.name} com *{appointment.professional.name}*, "
        f"*{when_label(appointment.start, scope.clinic.tz)}*?"
    )
    return _needs_confirmation("cancel_appointment", arguments, read_back, scope.now)


def _execute_cancel(scope: ToolScope, arguments: dict[str, Any]) -> ToolResult:
    appointment = _open_appointment(scope, "cancel_appointment", arguments["appointment_id"])
    cancelled = appointment_cancel(appointment=appointment, actor=Actor.patient(), reason=arguments.get("reason", ""))
    return ToolResult(
        {"status": "cancelled", "appointment": _appointment_dict(scope, cancelled)},
        done_text=f"Pronto, cancelei {appointment.service.name} de *{when_label(appointment.start, scope.clinic.tz)}*.",
    )


@dataclass(frozen=True)
class _WaitlistRequest:
    patient_id: int
    service: Service
    professional: Professional | None
    appointment: Appointment | None


def _waitlist_request(scope: ToolScope, arguments: dict[str, Any]) -> _WaitlistRequest:
    """What join_waitlist asks, checked against the scope: whose place, for which service, with whom, moving what."""
    service = _service(scope, arguments["service_id"])
    professional = _professional(scope, arguments["professional_id"]) if "professional_id" in arguments else None
    appointment = None
    if "appointment_id" in arguments:
        appointment = _appointment(scope, "join_waitlist", arguments["appointment_id"])
        if appointment.status not in _OPEN or appointment.start <= scope.now:
            raise ToolError("invalid_transition", "This appointment is not upcoming any more.")
        if appointment.service_id != service.pk:
            raise ToolError("invalid_arguments", "That appointment is of another service: use its service_id.")
        if arguments.get("patient_id", appointment.patient_id) != appointment.patient_id:
            raise ToolError("invalid_arguments", "That appointment is not this person's.")
        professional = professional or appointment.professional  # an earlier time with whom they already chose
    patient_id = (
        appointment.patient_id if appointment else _patient_id(scope, "join_waitlist", arguments.get("patient_id"))
    )
    if appointment is None:
        # Joining again for the same service replaces the place's wishes: keep the appointment it would move, so an
        # accepted offer still moves it instead of booking a second one.
        appointment = _waitlisted_appointment(scope, patient_id, service.pk)
        if appointment is not None and professional is None:
            professional = appointment.professional
    info = scope.context.clinic.service(service.pk)
    if professional is not None and (info is None or professional.pk not in info.professional_ids):
        raise ProfessionalDoesNotPerform()
    return _WaitlistRequest(patient_id, service, professional, appointment)


def _waitlisted_appointment(scope: ToolScope, patient_id: int, service_id: int) -> Appointment | None:
    """The open appointment the patient's place on the waitlist for this service would move, if it has one."""
    from scheduling.models import WaitlistEntry, WaitlistStatus

    entry = (
        WaitlistEntry.objects.select_related("appointment__professional")
        .filter(patient_id=patient_id, service_id=service_id, status=WaitlistStatus.WAITING, appointment__isnull=False)
        .first()
    )
    appointment = entry.appointment if entry else None
    if appointment is None or appointment.status not in _OPEN or appointment.start <= scope.now:
        return None
    return appointment


def _propose_waitlist(scope: ToolScope, arguments: dict[str, Any]) -> ToolResult:
    request = _waitlist_request(scope, arguments)
    who = f" com *{request.professional.name}*" if request.professional else ""
    before = (
        f" Se abrir um horário antes de *{when_label(request.appointment.start, scope.clinic.tz)}*, eu te aviso e, se "
        "você quiser, a consulta passa para esse horário."
        if request.appointment
        else " Se abrir um horário, eu te aviso aqui."
    )
    person = _dependent_name(scope, request.patient_id)
    whom = f"*{person}*" if person else "você"
    read_back = f"Coloco {whom} na lista de espera para *{request.service.name}*{who}?{before}"
    stored = {**arguments, "patient_id": request.patient_id}
    if request.professional is not None:
        stored["professional_id"] = request.professional.pk
    return _needs_confirmation("join_waitlist", stored, read_back, scope.now)


def _execute_waitlist(scope: ToolScope, arguments: dict[str, Any]) -> ToolResult:
    from conversations.engines.rules.texts import waitlist_joined
    from scheduling.waitlist import waitlist_join

    request = _waitlist_request(scope, arguments)
    try:
        entry = waitlist_join(
            patient=scope.clinic.patients.get(pk=request.patient_id),
            service=request.service,
            professional=request.professional,
            appointment=request.appointment,
            now=scope.now,
        )
    except ValueError as exc:  # the scope checks above make this unreachable; never a crash if they drift
        raise ToolError("not_allowed", "This cannot be put on the waitlist.") from exc
    professional = request.professional.name if request.professional else ""
    before = request.appointment.start.astimezone(scope.clinic.tz) if request.appointment else None
    return ToolResult(
        {"status": "on_waitlist", "waitlist_entry_id": entry.pk, "service": request.service.name},
        done_text=waitlist_joined(
            request.service.name, professional, before=before, person=_dependent_name(scope, request.patient_id)
        ),
    )


_HANDLERS: dict[str, Callable[[ToolScope, dict[str, Any]], ToolResult]] = {
    "list_services": _list_services,
    "list_professionals": _list_professionals,
    "find_slots": _find_slots,
    "hold_slot": _hold_slot,
    "book_appointment": _propose_book,
    "reschedule_appointment": _propose_reschedule,
    "cancel_appointment": _propose_cancel,
    "join_waitlist": _propose_waitlist,
    "list_my_appointments": _list_my_appointments,
    "search_clinic_info": _search_clinic_info,
    "handoff_to_staff": _handoff,
}
_EXECUTORS: dict[str, Callable[[ToolScope, dict[str, Any]], ToolResult]] = {
    "book_appointment": _execute_book,
    "reschedule_appointment": _execute_reschedule,
    "cancel_appointment": _execute_cancel,
    "join_waitlist": _execute_waitlist,
}
