"""The rule-based receptionist, driven through whole pt-BR dialogues turn by turn, against the real database.

Each turn does what `conversations.turns` does with a reply: the patient's message is stored, the engine answers, its
texts are stored as the assistant's messages and its state kept on the conversation. The clock is frozen on
Monday 2026-03-02 07:00 in São Paulo; professionals work 08–12 and 14–18, Monday to Friday.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from conversations.engines import EngineReply, TurnInput
from conversations.engines.rules import RuleEngine
from conversations.engines.rules.texts import ASK_NAME
from conversations.models import (
    Conversation,
    ConversationOwner,
    FaqEntry,
    Message,
    MessageAuthor,
    MessageDirection,
    MessageStatus,
)
from patients.models import HealthPlan, PatientGuardian
from scheduling.models import ActorKind, Appointment, AppointmentSource, AppointmentStatus, SlotHold
from tests import factories
from tests.scheduling.test_availability_support import MONDAY, T, at, business, clinic, professional, service

NOW = at(MONDAY, 7)
TUESDAY, THURSDAY, FRIDAY = (MONDAY + datetime.timedelta(days=n) for n in (1, 3, 4))
WEEKDAYS = range(5)


class Chat:
    """A patient's WhatsApp conversation with the rule engine."""

    def __init__(self, patient, *, now: datetime.datetime = NOW) -> None:
        self.conversation = Conversation.objects.create(clinic=patient.clinic, patient=patient)
        self.now = now
        self.replies: list[EngineReply] = []

    def say(self, *texts: str) -> EngineReply:
        conversation = Conversation.objects.select_related("clinic", "patient").get(pk=self.conversation.pk)
        messages = [_message(conversation, text, inbound=True) for text in texts]
        reply = RuleEngine().respond(TurnInput(conversation.clinic, conversation, messages, self.now))
        for text in reply.texts:
            _message(conversation, text, inbound=False)
        if reply.state is not None:
            conversation.state = reply.state
        if reply.handoff:
            conversation.owner = ConversationOwner.HUMAN
            conversation.handoff_summary = reply.handoff_summary
        # Only what a turn writes (conversations.turns): flags set during the turn stay, as they do there.
        conversation.save(update_fields=["state", "owner", "handoff_summary", "updated_at"])
        self.replies.append(reply)
        return reply

    @property
    def text(self) -> str:
        """Everything the assistant answered in the last turn."""
        return "\n".join(self.replies[-1].texts)

    @property
    def state(self) -> dict:
        self.conversation.refresh_from_db()
        return self.conversation.state


def _message(conversation: Conversation, text: str, *, inbound: bool) -> Message:
    return Message.objects.create(
        clinic=conversation.clinic,
        conversation=conversation,
        direction=MessageDirection.INBOUND if inbound else MessageDirection.OUTBOUND,
        author=MessageAuthor.PATIENT if inbound else MessageAuthor.AI,
        status=MessageStatus.RECEIVED if inbound else MessageStatus.QUEUED,
        text=text,
    )


@pytest.fixture
def place(db, time_machine):
    time_machine.move_to(NOW, tick=False)
    sorriso = clinic(
        name="Clínica Sorriso",
        assistant_name="Cecília",
        address="Rua das Flores, 100",
        city="São Paulo",
        cancellation_notice_hours=24,
    )
    business(sorriso, WEEKDAYS, (T(8), T(18)))
    ana = professional(sorriso, "Dra. Ana Souza", weekdays=WEEKDAYS)
    bruno = professional(sorriso, "Dr. Bruno Lima", weekdays=WEEKDAYS)
    cleaning = service(
        sorriso,
        [ana, bruno],
        name="Limpeza",
        duration_minutes=30,
        price=Decimal("180.00"),
        preparation_instructions="Escove os dentes antes de vir.",
    )
    whitening = service(sorriso, [ana], name="Clareamento", duration_minutes=60, price=None)
    checkup = service(sorriso, [bruno], name="Consulta de avaliação", duration_minutes=30, price=Decimal("1250.5"))
    unimed = HealthPlan.objects.create(clinic=sorriso, name="Unimed")
    HealthPlan.objects.create(clinic=sorriso, name="Amil")
    checkup.accepted_health_plans.set([unimed])
    maria = factories.patient(sorriso, full_name="Maria Oliveira")
    return type("Place", (), locals())


def _offers(chat: Chat) -> list[datetime.datetime]:
    return [datetime.datetime.fromisoformat(start) for _pid, start in chat.state["offers"]]


def _appointments(patient) -> list[Appointment]:
    return list(Appointment.objects.filter(patient=patient).order_by("start"))


# ---- booking ------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_patient_books_from_the_menu_and_the_appointment_is_theirs_from_whatsapp(place):
    chat = Chat(place.maria)
    chat.say("oi")
    assert "Cecília" in chat.text and "Clínica Sorriso" in chat.text and "1. Agendar" in chat.text

    chat.say("1")
    assert "Qual atendimento" in chat.text and "Limpeza" in chat.text

    chat.say("limpeza")
    assert "Os próximos horários livres para *Limpeza*" in chat.text
    offers = _offers(chat)
    assert offers[0] == at(MONDAY, 8) and 2 <= len(offers) <= 5
    assert "1. segunda-feira, 02/03 às 08:00" in chat.text

    chat.say("2")
    chosen = offers[1]
    assert chat.text.startswith("Confirmo: *")
    assert f"Limpeza, *segunda-feira, 02/03 às {chosen.astimezone(at(MONDAY, 0).tzinfo):%H:%M}*?" in chat.text
    assert SlotHold.objects.filter(holder=f"conversation:{chat.conversation.pk}").count() == 1
    assert _appointments(place.maria) == []  # nothing written before a yes

    chat.say("sim")
    (appointment,) = _appointments(place.maria)
    assert appointment.start == chosen and appointment.service == place.cleaning
    assert appointment.source == AppointmentSource.WHATSAPP and appointment.created_by_kind == ActorKind.PATIENT
    assert "agendado" in chat.text and "Rua das Flores, 100" in chat.text
    assert "Escove os dentes antes de vir." in chat.text  # the service's preparation comes with the booking
    assert not SlotHold.objects.exists() and chat.state.get("flow") is None


@pytest.mark.django_db
def test_typos_and_missing_accents_still_book_tomorrow_afternoon(place):
    chat = Chat(place.maria)
    chat.say("qro marca uma limpesa amanha a tarde")

    offers = _offers(chat)
    assert offers and all(o.date() == TUESDAY and o.hour >= 14 for o in offers)
    assert "*Limpeza* amanhã à tarde" in chat.text and "terça-feira, 03/03 às 14:00" in chat.text


@pytest.mark.django_db
def test_a_named_time_comes_first_and_a_professional_can_be_asked_for(place):
    chat = Chat(place.maria)
    chat.say("quero agendar uma limpeza com a dra ana na quinta às 10h")

    offers = _offers(chat)
    assert offers[0] == at(THURSDAY, 10)
    assert {pid for pid, _start in chat.state["offers"]} == {place.ana.pk}
    assert "quinta-feira, 05/03 às 10:00 — Dra. Ana Souza" in chat.text


@pytest.mark.django_db
def test_a_new_patient_is_asked_their_name_once_and_it_is_recorded(place):
    newcomer = factories.patient(place.sorriso, full_name="", whatsapp_name="zezinho")
    chat = Chat(newcomer)
    chat.say("oi, quero agendar uma limpeza amanhã às 10h")
    chat.say("1")
    assert chat.text == ASK_NAME

    chat.say("meu nome é josé da silva")
    newcomer.refresh_from_db()
    assert newcomer.full_name == "José da Silva"
    assert chat.text.startswith("Confirmo: *") and "terça-feira, 03/03 às 10:00" in chat.text

    chat.say("pode marcar")
    assert len(_appointments(newcomer)) == 1

    chat.say("quero marcar outra limpeza na sexta de manhã")
    chat.say("1")
    assert chat.text.startswith("Confirmo:")
    asked = Message.objects.filter(conversation=chat.conversation, author=MessageAuthor.AI, text=ASK_NAME).count()
    assert asked == 1


@pytest.mark.django_db
def test_a_parent_books_for_their_child_when_they_say_so(place):
    pedro = factories.patient(place.sorriso, full_name="Pedro Oliveira")
    PatientGuardian.objects.create(clinic=place.sorriso, guardian=place.maria, dependent=pedro)
    chat = Chat(place.maria)

    chat.say("queria marcar uma limpeza pro meu filho amanhã de manhã")
    assert "para quem" not in chat.text and _offers(chat)
    chat.say("1")
    assert "para *Pedro*" in chat.text
    chat.say("sim")

    (appointment,) = _appointments(pedro)
    assert appointment.start.date() == TUESDAY and _appointments(place.maria) == []


@pytest.mark.django_db
def test_a_parent_is_asked_for_whom_when_it_matters(place):
    pedro = factories.patient(place.sorriso, full_name="Pedro Oliveira")
    PatientGuardian.objects.create(clinic=place.sorriso, guardian=place.maria, dependent=pedro)
    chat = Chat(place.maria)

    chat.say("quero marcar uma limpeza")
    assert "O horário é para quem?" in chat.text and "1. Para você, Maria" in chat.text and "2. Pedro" in chat.text
    chat.say("2")
    chat.say("1")
    chat.say("sim")
    assert len(_appointments(pedro)) == 1


@pytest.mark.django_db
def test_a_changed_mind_redoes_only_that_step(place):
    chat = Chat(place.maria)
    chat.say("marcar limpeza amanhã de manhã")
    assert all(o.date() == TUESDAY for o in _offers(chat))

    chat.say("na verdade prefiro sexta")
    offers = _offers(chat)
    assert offers and all(o.date() == FRIDAY and o.hour < 12 for o in offers)  # the morning was kept

    chat.say("1")
    assert "sexta-feira, 06/03" in chat.text and chat.text.startswith("Confirmo:")
    chat.say("não")
    assert "O que você quer mudar" in chat.text
    chat.say("o horário")
    assert "Qual dia e horário" in chat.text
    chat.say("quinta às 15h")
    assert _offers(chat)[0] == at(THURSDAY, 15) and chat.state["service_id"] == place.cleaning.pk
    assert _appointments(place.maria) == []


@pytest.mark.django_db
def test_it_never_books_without_a_plain_yes(place):
    chat = Chat(place.maria)
    chat.say("quero marcar uma limpeza")
    chat.say("1")
    chat.say("hmm")
    assert "não entendi" in chat.text and "Confirmo: *" in chat.text  # the read-back, asked again
    assert _appointments(place.maria) == []

    reply = chat.say("sim, mas talvez")  # a yes with a "but" is no yes
    assert reply.handoff and _appointments(place.maria) == []  # two misunderstandings in a row: staff take over


@pytest.mark.django_db
def test_a_no_to_the_read_back_books_nothing(place):
    chat = Chat(place.maria)
    chat.say("quero marcar uma limpeza")
    chat.say("1")
    chat.say("não")
    assert "O que você quer mudar" in chat.text and _appointments(place.maria) == []
    chat.say("deixa pra lá")
    assert "não marquei nada" in chat.text and _appointments(place.maria) == []
    assert not SlotHold.objects.exists()  # the slot held for the read-back is free again


@pytest.mark.django_db
def test_a_slot_taken_before_the_yes_brings_alternatives(place):
    chat = Chat(place.maria)
    chat.say("quero uma limpeza amanhã às 10h")
    chat.say("1")
    taken = _offers(chat)[0]
    pid = chat.state["slot"][0]
    other = factories.patient(place.sorriso, full_name="Outra Pessoa")
    # Another booking lands in between (written straight to the table, past the hold: the database has the last say).
    factories.appointment(patient=other, professional=place.ana if pid == place.ana.pk else place.bruno,
                          service=place.cleaning, start=taken)  # fmt: skip

    chat.say("sim")
    assert "acabou de ser preenchido" in chat.text and _appointments(place.maria) == []
    alternatives = _offers(chat)
    assert alternatives and taken not in [a for a in alternatives if chat.state["offers"][0][0] == pid]

    chat.say("1")
    chat.say("sim")
    (appointment,) = _appointments(place.maria)
    assert (appointment.professional_id, appointment.start) != (pid, taken)


@pytest.mark.django_db
def test_a_slot_taken_between_the_offer_and_the_choice_brings_alternatives(place):
    chat = Chat(place.maria)
    chat.say("limpeza com o dr bruno amanhã às 10h")
    assert _offers(chat)[0] == at(TUESDAY, 10)
    factories.appointment(patient=factories.patient(place.sorriso), professional=place.bruno,
                          service=place.cleaning, start=at(TUESDAY, 10))  # fmt: skip

    chat.say("1")
    assert "acabou de ser preenchido" in chat.text
    assert at(TUESDAY, 10) not in [
        o for (pid, _s), o in zip(chat.state["offers"], _offers(chat), strict=True) if pid == place.bruno.pk
    ]


@pytest.mark.django_db
def test_a_patient_who_missed_appointments_is_asked_to_confirm_they_will_come(place):
    factories.appointment(patient=place.maria, professional=place.ana, service=place.cleaning,
                          start=NOW - datetime.timedelta(days=20), status=AppointmentStatus.NO_SHOW)  # fmt: skip
    chat = Chat(place.maria)
    chat.say("quero marcar uma limpeza amanhã")
    chat.say("1")
    assert "Você confirma que vem?" in chat.text


@pytest.mark.django_db
def test_an_aside_in_the_middle_of_booking_is_answered_and_the_question_asked_again(place):
    chat = Chat(place.maria)
    chat.say("quero marcar uma limpeza")
    chat.say("quanto custa?")
    assert "R$ 180,00" in chat.text and "Qual fica melhor?" in chat.text
    assert chat.state["flow"] == "book" and chat.state["step"] == "slot"


@pytest.mark.django_db
def test_later_slots_on_request_and_a_professional_who_does_not_perform_the_service(place):
    chat = Chat(place.maria)
    chat.say("queria marcar um clareamento com o dr bruno na sexta")
    assert "Dr. Bruno Lima não atende *Clareamento*; quem atende é Dra. Ana Souza." in chat.text
    first = _offers(chat)
    assert {pid for pid, _s in chat.state["offers"]} == {place.ana.pk}

    chat.say("tem mais tarde?")
    later = _offers(chat)
    assert later and min(later) > max(first) and all(o.date() == FRIDAY for o in later)


# ---- existing appointments ------------------------------------------------------------------------------------


@pytest.fixture
def booked(place):
    return factories.appointment(patient=place.maria, professional=place.ana, service=place.cleaning,
                                 start=at(THURSDAY, 10))  # fmt: skip


@pytest.mark.django_db
def test_a_patient_reschedules_their_appointment(place, booked):
    chat = Chat(place.maria)
    chat.say("preciso remarcar minha consulta")
    assert _offers(chat) and {pid for pid, _s in chat.state["offers"]} == {place.ana.pk}  # the same professional

    chat.say("sexta à tarde")
    offers = _offers(chat)
    assert all(o.date() == FRIDAY and o.hour >= 14 for o in offers)
    chat.say("1")
    assert "de quinta-feira, 05/03 às 10:00 para *sexta-feira, 06/03 às 14:00*" in chat.text
    chat.say("sim")

    booked.refresh_from_db()
    assert booked.start == at(FRIDAY, 14) and booked.status == AppointmentStatus.SCHEDULED
    assert "remarcado" in chat.text and Appointment.objects.count() == 1


@pytest.mark.django_db
def test_a_patient_cancels_their_appointment_after_a_read_back(place, booked):
    chat = Chat(place.maria)
    chat.say("quero cancelar minha consulta")
    assert "Confirmo o cancelamento de *quinta-feira, 05/03 às 10:00*" in chat.text
    booked.refresh_from_db()
    assert booked.status == AppointmentStatus.SCHEDULED

    chat.say("sim")
    booked.refresh_from_db()
    assert booked.status == AppointmentStatus.CANCELLED and "cancelei" in chat.text
    chat.say("não, obrigada")
    assert chat.state.get("flow") is None


@pytest.mark.django_db
def test_a_cancellation_within_the_notice_goes_to_staff(place):
    soon = factories.appointment(patient=place.maria, professional=place.ana, service=place.cleaning,
                                 start=at(MONDAY, 15))  # fmt: skip
    chat = Chat(place.maria)
    reply = chat.say("cancelar minha consulta de hoje")

    assert reply.handoff and "24 horas" in chat.text and "recepção" in chat.text
    assert reply.handoff_summary
    soon.refresh_from_db()
    assert soon.status == AppointmentStatus.SCHEDULED


@pytest.mark.django_db
def test_several_appointments_are_numbered_including_a_dependents(place, booked):
    pedro = factories.patient(place.sorriso, full_name="Pedro Oliveira")
    PatientGuardian.objects.create(clinic=place.sorriso, guardian=place.maria, dependent=pedro)
    his = factories.appointment(patient=pedro, professional=place.bruno, service=place.cleaning,
                                start=at(FRIDAY, 9))  # fmt: skip
    chat = Chat(place.maria)

    chat.say("quais são meus horários?")
    assert "1. *quinta-feira, 05/03 às 10:00* — Limpeza com Dra. Ana Souza" in chat.text
    assert "2. *sexta-feira, 06/03 às 09:00* — Limpeza com Dr. Bruno Lima (Pedro)" in chat.text

    chat.say("quero cancelar")
    assert "Qual consulta você quer cancelar?" in chat.text
    chat.say("a do Pedro")
    chat.say("sim")
    his.refresh_from_db()
    booked.refresh_from_db()
    assert his.status == AppointmentStatus.CANCELLED and booked.status == AppointmentStatus.SCHEDULED


@pytest.mark.django_db
def test_a_patient_confirms_their_appointment(place, booked):
    chat = Chat(place.maria)
    chat.say("confirmo minha consulta")
    booked.refresh_from_db()
    assert booked.status == AppointmentStatus.CONFIRMED and "confirmada" in chat.text


@pytest.mark.django_db
def test_a_yes_after_a_reminder_confirms(place, booked):
    chat = Chat(place.maria)
    _message(chat.conversation, "Lembrete: sua limpeza é quinta às 10:00. Você confirma sua presença?", inbound=False)
    chat.say("sim")
    booked.refresh_from_db()
    assert booked.status == AppointmentStatus.CONFIRMED


# ---- questions ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_prices_are_given_in_reais_or_left_to_staff(place):
    chat = Chat(place.maria)
    chat.say("quanto custa a limpeza?")
    assert "*Limpeza*: R$ 180,00" in chat.text
    chat.say("e o valor do clareamento?")
    assert "recepção informa" in chat.text
    chat.say("qual o preço de vcs")
    assert "Consulta de avaliação: R$ 1.250,50" in chat.text


@pytest.mark.django_db
def test_health_plans_are_answered_per_service_and_per_plan(place):
    chat = Chat(place.maria)
    chat.say("vocês aceitam unimed?")
    assert "Sim, atendemos *Unimed*" in chat.text
    chat.say("quais convênios vocês atendem?")
    assert "Amil, Unimed" in chat.text
    chat.say("a limpeza é pelo convênio?")
    assert "*Limpeza* não é atendido por convênio" in chat.text


@pytest.mark.django_db
def test_address_and_opening_hours(place):
    chat = Chat(place.maria)
    chat.say("qual o endereço e que horas abre?")
    assert "Rua das Flores, 100, São Paulo" in chat.text and "segunda-feira: 08:00–18:00" in chat.text


@pytest.mark.django_db
def test_preparation_of_a_service(place):
    chat = Chat(place.maria)
    chat.say("precisa de algum preparo para a limpeza?")
    assert "Escove os dentes antes de vir." in chat.text


@pytest.mark.django_db
def test_a_question_the_faq_answers(place):
    FaqEntry.objects.create(
        clinic=place.sorriso,
        question="Vocês têm estacionamento?",
        answer="Temos estacionamento conveniado na rua de trás. 🚗",
        keywords="estacionar carro",
    )
    chat = Chat(place.maria)
    chat.say("onde posso estacionar o carro?")
    assert "estacionamento conveniado" in chat.text


@pytest.mark.django_db
def test_two_misunderstandings_in_a_row_hand_the_conversation_to_staff(place):
    chat = Chat(place.maria)
    first = chat.say("xpto blargh")
    assert not first.handoff and "não entendi" in chat.text and "1. Agendar" in chat.text

    second = chat.say("qwerty zzz")
    assert second.handoff and "qwerty zzz" in second.handoff_summary and "recepção" in chat.text


@pytest.mark.django_db
def test_asking_for_the_front_desk_hands_off(place):
    chat = Chat(place.maria)
    reply = chat.say("quero falar com a recepção")
    assert reply.handoff and "recepção" in chat.text


@pytest.mark.django_db
def test_a_flow_whose_service_was_removed_goes_to_staff_instead_of_failing(place):
    chat = Chat(place.maria)
    chat.say("quero marcar uma limpeza")
    Conversation.objects.filter(pk=chat.conversation.pk).update(state={**chat.state, "service_id": 999_999})

    reply = chat.say("1")
    assert reply.handoff and "recepção" in chat.text and _appointments(place.maria) == []


def test_the_word_consulta_alone_names_no_service() -> None:
    from conversations.engines.context import ServiceInfo
    from conversations.engines.rules.matching import match_services

    def info(pk: int, name: str) -> ServiceInfo:
        return ServiceInfo(pk, name, 30, None, True, (), (1,), "")

    services = [info(1, "Consulta de clínica geral"), info(2, "Consulta dermatológica"), info(3, "Limpeza dental")]

    assert match_services("queria marcar uma consulta", services) == []
    assert [s.id for s in match_services("consulta com dermatologista", services)] == [2]
    assert [s.id for s in match_services("uma consulta", [info(9, "Consulta")])] == [9]


def test_hesitant_answers_to_a_cancellation_read_back_keep_or_cancel() -> None:
    from conversations.engines.rules.existing import _cancel_answer

    assert _cancel_answer("não, pensando bem vou manter") is False
    assert _cancel_answer("pode cancelar") is True
    assert _cancel_answer("sim") is True
    assert _cancel_answer("que horas era mesmo?") is None
