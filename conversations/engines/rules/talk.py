"""The rule engine's working memory for one turn (`Talk`), and the state its multi-turn flows keep between turns.

A flow is a small state machine kept in `Conversation.state` between turns (JSON: ids and ISO strings only):

    {"flow": "book" | "reschedule" | "cancel" | "confirm" | "menu" | "offer_book" | "prep",
     "step": the question pending (see each flow), "ask": its text (re-asked after an aside),
     "choices": ids behind the numbered list on screen, "misses": misunderstandings in a row,
     -- book --        "service_id", "patient_id" (for whom), "professional_id" (None: anyone), "when" (the
                       patient's last words about time, re-read and merged each time),
                       "offers": [[professional_id, iso start], ...],
                       "slot": [professional_id, iso start] (held), "name_asked"
     -- reschedule --  "appointment_id", "professional_id", "when", "offers", "slot"
     -- cancel / confirm -- "appointment_id"}

Each message first goes to the pending flow (`FLOWS[flow](talk, text) -> bool`, False: not understood there, the
engine then tries the other intents). A flow fills what the message says — a service, a person, a professional, a
day — at any step, so a changed mind ("na verdade prefiro sexta") redoes only that part, then asks for the first
thing still missing. Nothing is written without a read-back and a plain yes (`parse_yes_no`); booking errors are
answered in the patient's words, from their `code`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from conversations.engines.context import AppointmentInfo, TurnContext
from conversations.models import Conversation
from patients.models import Patient
from scheduling.availability import holds_release
from scheduling.models import Appointment, Professional, Service

_KEEP = ("reminder_appointment_id",)  # state a finished flow keeps: set by the reminder sender


@dataclass
class Talk:
    """One turn of the rule engine: what it knows, the state it is changing and what it will answer."""

    ctx: TurnContext
    conversation: Conversation
    state: dict[str, Any]
    texts: list[str] = field(default_factory=list)
    handoff: bool = False
    summary: str = ""

    @property
    def holder(self) -> str:
        return f"conversation:{self.conversation.pk}"

    def say(self, text: str) -> None:
        self.texts.append(text)

    def ask(self, text: str, step: str, choices: Sequence[int] | None = None) -> None:
        self.state["step"], self.state["ask"] = step, text
        if choices is not None:
            self.state["choices"] = list(choices)
        self.say(text)

    def start(self, flow: str, **data: Any) -> None:
        self.end_flow()
        self.state.update(flow=flow, **data)

    def end_flow(self) -> None:
        if self.state.get("slot") or self.state.get("offers"):
            holds_release(holder=self.holder)
        kept = {key: self.state[key] for key in (*_KEEP, "misses") if key in self.state}
        self.state.clear()
        self.state.update(kept)

    def hand_off(self, text: str, summary: str) -> None:
        self.end_flow()
        self.say(text)
        self.handoff, self.summary = True, summary

    # ---- reading the clinic's rows, always scoped to this clinic and patient (Invariant 4) ----------------------

    def service(self) -> Service:
        return Service.objects.select_related("clinic").get(pk=self.state["service_id"], clinic_id=self.ctx.clinic.id)

    def professional(self, professional_id: int | None) -> Professional | None:
        if professional_id is None:
            return None
        return Professional.objects.filter(pk=professional_id, clinic_id=self.ctx.clinic.id).first()

    def professional_name(self, professional_id: int) -> str:
        info = self.ctx.clinic.professional(professional_id)
        return info.name if info else ""

    def person(self) -> Patient:
        person_id = self.state.get("patient_id") or self.ctx.patient.id
        if not self.ctx.patient.may_act_for(person_id):
            raise PermissionError("The conversation's patient may not act for this person.")
        return Patient.objects.get(pk=person_id, clinic_id=self.ctx.clinic.id)

    def appointment_info(self) -> AppointmentInfo | None:
        wanted = self.state.get("appointment_id")
        return next((a for a in self.ctx.patient.upcoming if a.id == wanted), None)

    def appointment(self) -> Appointment:
        info = self.appointment_info()
        if info is None or not self.ctx.patient.may_act_for(info.patient_id):
            raise PermissionError("Not one of this patient's appointments.")
        return Appointment.objects.get(pk=info.id, clinic_id=self.ctx.clinic.id)
