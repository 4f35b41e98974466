"""The LLM receptionist's tools on their own: schemas, validation, scoping to the clinic and the patient."""

from __future__ import annotations

import datetime
import json

import pytest
from django.utils import timezone

from conversations.engines.context import turn_context
from conversations.engines.tools import ToolScope, action_execute, tool_run, tool_schemas
from conversations.models import Conversation
from scheduling.availability import next_available
from scheduling.models import ActorKind, AppointmentStatus, Professional, Service, WorkingHours
from tests import factories


def _week(clinic, professional):
    for weekday in range(7):
        WorkingHours.objects.create(
            clinic=clinic, professional=professional, weekday=weekday, start=datetime.time(8), end=datetime.time(18)
        )


@pytest.fixture
def scope(clinic_a, clinic_b):
    ana = factories.professional(clinic_a, name="Dra. Ana Souza")
    _week(clinic_a, ana)
    factories.service(clinic_a, name="Limpeza", professionals=[ana])
    other = factories.professional(clinic_b, name="Dr. Outra Clínica")
    factories.service(clinic_b, name="Clareamento", professionals=[other])
    maria = factories.patient(clinic_a, full_name="Maria Oliveira")
    conversation = Conversation.objects.create(clinic=clinic_a, patient=maria)
    now = timezone.now()
    context = turn_context(conversation=conversation, new_messages=[], now=now)
    return ToolScope(clinic=clinic_a, conversation=conversation, context=context, now=now)


def _run(scope, name, **arguments):
    result = tool_run(scope, name, json.dumps(arguments))
    return result, result.content


def test_every_tool_is_declared_with_a_closed_object_schema():
    schemas = {tool["function"]["name"]: tool["function"] for tool in tool_schemas()}

    assert set(schemas) == {
        "list_services",
        "list_professionals",
        "find_slots",
        "hold_slot",
        "book_appointment",
        "reschedule_appointment",
        "cancel_appointment",
        "join_waitlist",
        "list_my_appointments",
        "search_clinic_info",
        "handoff_to_staff",
    }
    find = schemas["find_slots"]["parameters"]
    assert find["required"] == ["service_id"] and find["additionalProperties"] is False
    assert find["properties"]["part_of_day"]["enum"] == ["morning", "afternoon", "evening"]


def test_another_clinics_service_or_professional_is_not_found(scope, clinic_b):
    foreign_service = Service.objects.get(clinic=clinic_b)
    foreign_professional = Professional.objects.get(clinic=clinic_b)

    _, found = _run(scope, "find_slots", service_id=foreign_service.pk)
    assert found["error"] == "not_found"
    own = scope.context.clinic.services[0]
    _, held = _run(
        scope,
        "hold_slot",
        service_id=own.id,
        professional_id=foreign_professional.pk,
        start=(scope.now + datetime.timedelta(days=2)).isoformat(),
    )
    assert held["error"] == "not_found"


def test_find_slots_within_dates_and_part_of_day_offers_only_those(scope):
    service = scope.context.clinic.services[0]
    day = (scope.now + datetime.timedelta(days=3)).astimezone(scope.clinic.tz).date()

    _, found = _run(
        scope,
        "find_slots",
        service_id=service.id,
        date_from=day.isoformat(),
        date_to=day.isoformat(),
        part_of_day="afternoon",
    )

    assert found["slots"]
    for slot in found["slots"]:
        start = datetime.datetime.fromisoformat(slot["start"]).astimezone(scope.clinic.tz)
        assert start.date() == day and 12 <= start.hour < 18


def test_a_date_range_backwards_is_an_error_for_the_model(scope):
    service = scope.context.clinic.services[0]
    _, found = _run(scope, "find_slots", service_id=service.id, date_from="2030-05-10", date_to="2030-05-01")
    assert found["error"] == "invalid_arguments"


def test_a_reschedule_is_only_proposed_and_runs_exactly_as_stored(scope):
    service = scope.context.clinic.services[0]
    ana_id = service.professional_ids[0]

    booked = factories.appointment(
        patient=scope.conversation.patient,
        professional=Professional.objects.get(pk=ana_id),
        service=Service.objects.get(pk=service.id),
        start=(scope.now + datetime.timedelta(days=4)).replace(hour=14, minute=0, second=0, microsecond=0),
    )
    target = next_available(service=booked.service, after=scope.now + datetime.timedelta(days=6), count=1)[0]

    proposal, content = _run(scope, "reschedule_appointment", appointment_id=booked.pk, start=target.start.isoformat())

    assert content["status"] == "needs_confirmation" and "Confirmo a remarcação de Limpeza" in content["read_back"]
    booked.refresh_from_db()
    assert booked.start != target.start
    done = action_execute(scope, proposal.proposed)
    assert done.content["status"] == "rescheduled"
    booked.refresh_from_db()
    assert (booked.start, booked.updated_by_kind, booked.status) == (
        target.start,
        ActorKind.PATIENT,
        AppointmentStatus.SCHEDULED,
    )


def test_too_close_to_the_appointment_the_patient_is_told_staff_must_do_it(scope):
    service = scope.context.clinic.services[0]
    soon = factories.appointment(
        patient=scope.conversation.patient,
        professional=Professional.objects.get(pk=service.professional_ids[0]),
        service=Service.objects.get(pk=service.id),
        start=scope.now + datetime.timedelta(hours=2),
    )

    result, content = _run(scope, "cancel_appointment", appointment_id=soon.pk)

    assert content["error"] == "cancellation_too_late" and result.proposed is None
