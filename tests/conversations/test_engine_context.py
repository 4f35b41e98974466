"""What an engine may know in a turn: the clinic and the patient it serves, never CPF, staff notes or other people."""

from __future__ import annotations

import dataclasses
import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.engines.context import turn_context
from conversations.models import Conversation, Message, MessageAuthor, MessageDirection, MessageStatus
from patients.models import PatientGuardian
from scheduling.models import AppointmentStatus
from tests import factories


def _message(conversation, text: str, *, inbound: bool = True) -> Message:
    return Message.objects.create(
        clinic=conversation.clinic,
        conversation=conversation,
        direction=MessageDirection.INBOUND if inbound else MessageDirection.OUTBOUND,
        author=MessageAuthor.PATIENT if inbound else MessageAuthor.AI,
        status=MessageStatus.RECEIVED if inbound else MessageStatus.DELIVERED,
        text=text,
    )


@pytest.fixture
def setting(clinic_a):
    ana = factories.professional(clinic_a, name="Dra. Ana Souza", specialty="Ortodontia")
    factories.professional(clinic_a, name="Dr. Inativo", active=False)
    cleaning = factories.service(clinic_a, name="Limpeza", professionals=[ana], price="180.00")
    maria = factories.patient(
        clinic_a, full_name="maria oliveira", cpf="52998224725", notes="Alérgica a dipirona — só a equipe lê isto"
    )
    son = factories.patient(clinic_a, full_name="Pedro Oliveira")
    PatientGuardian.objects.create(clinic=clinic_a, guardian=maria, dependent=son)
    stranger = factories.patient(clinic_a, full_name="Outra Pessoa")
    soon = timezone.now() + datetime.timedelta(days=2)
    factories.appointment(patient=son, professional=ana, service=cleaning, start=soon)
    factories.appointment(
        patient=stranger, professional=ana, service=cleaning, start=soon + datetime.timedelta(hours=2)
    )
    factories.appointment(
        patient=maria,
        professional=ana,
        service=cleaning,
        start=timezone.now() - datetime.timedelta(days=30),
        status=AppointmentStatus.NO_SHOW,
    )
    conversation = Conversation.objects.create(clinic=clinic_a, patient=maria)
    _message(conversation, "oi, bom dia")
    _message(conversation, "Bom dia! Como posso ajudar?", inbound=False)
    new = [_message(conversation, "queria remarcar a consulta do meu filho")]
    return conversation, new, son, stranger


@pytest.mark.django_db
def test_the_context_holds_the_patient_their_dependents_and_nothing_private(setting):
    conversation, new, son, stranger = setting
    context = turn_context(conversation=conversation, new_messages=new, now=timezone.now())

    assert context.patient.first_name == "Maria" and context.patient.known
    assert [person.id for person in context.patient.dependents] == [son.pk]
    assert [a.patient_id for a in context.patient.upcoming] == [son.pk]  # not the stranger's, not the past no-show
    assert context.patient.recent_no_shows == 1
    assert context.patient.may_act_for(son.pk) and not context.patient.may_act_for(stranger.pk)
    assert [s.name for s in context.clinic.services] == ["Limpeza"]
    assert [p.name for p in context.clinic.professionals] == ["Dra. Ana Souza"]  # the inactive one is not offered
    assert [m.author for m in context.recent] == ["patient", "assistant"]
    assert context.new_messages == ("queria remarcar a consulta do meu filho",)
    assert context.now.utcoffset() == datetime.timedelta(hours=-3)  # clinic-local

    everything = repr(dataclasses.asdict(context))
    assert "52998224725" not in everything and "dipirona" not in everything and "Outra Pessoa" not in everything


@pytest.mark.django_db
def test_the_context_costs_the_same_queries_for_a_big_clinic(setting, clinic_a):
    _, new, *_ = setting
    with CaptureQueriesContext(connection) as small:
        turn_context(
            conversation=Conversation.objects.select_related("clinic", "patient").get(),
            new_messages=new,
            now=timezone.now(),
        )
    for i in range(10):
        professional = factories.professional(clinic_a, name=f"Profissional {i}")
        factories.service(clinic_a, name=f"Serviço {i}", professionals=[professional])
    with CaptureQueriesContext(connection) as big:
        turn_context(
            conversation=Conversation.objects.select_related("clinic", "patient").get(),
            new_messages=new,
            now=timezone.now(),
        )
    assert len(big) == len(small)


@pytest.mark.django_db
def test_the_clinic_facts_are_reused_between_turns_and_fresh_after_staff_change_them(setting, clinic_a):
    conversation, new, *_ = setting
    conversation = Conversation.objects.select_related("clinic", "patient").get(pk=conversation.pk)
    first = turn_context(conversation=conversation, new_messages=new, now=timezone.now())
    with CaptureQueriesContext(connection) as cached:
        again = turn_context(conversation=conversation, new_messages=new, now=timezone.now())
    assert again.clinic == first.clinic
    assert not any('FROM "scheduling_service"' in q["sql"] for q in cached.captured_queries)

    # A price changed in the admin, a service added, a professional switched off: the next turn knows.
    from scheduling.models import Professional, Service

    cleaning = Service.objects.get(clinic=clinic_a, name="Limpeza")
    cleaning.price = "199.00"
    cleaning.save()
    factories.service(clinic_a, name="Clareamento")
    ana = Professional.objects.get(clinic=clinic_a, name="Dra. Ana Souza")
    ana.active = False
    ana.save()
    fresh = turn_context(conversation=conversation, new_messages=new, now=timezone.now())
    assert {s.name: str(s.price) for s in fresh.clinic.services} == {"Clareamento": "None", "Limpeza": "199.00"}
    assert fresh.clinic.professionals == ()
