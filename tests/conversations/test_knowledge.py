"""The clinic's FAQ: found in Portuguese as patients write (stems, no accents), only the clinic's own, staff-edited."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from conversations.demo import demo_clinic_seed
from conversations.knowledge import faq_search, faq_terms
from conversations.llm_budget import llm_usage_add
from conversations.models import FAQ_SEARCH_VECTOR, FaqEntry, LlmUsage


def faq(clinic, question, answer, keywords="", **kwargs):
    return FaqEntry.objects.create(clinic=clinic, question=question, answer=answer, keywords=keywords, **kwargs)


@pytest.fixture
def clinic_faq(clinic_a):
    return {
        "parking": faq(clinic_a, "Tem estacionamento?", "Sim, conveniado no prédio, R$ 10 o período.", "carro vaga"),
        "payment": faq(
            clinic_a, "Quais formas de pagamento?", "Aceitamos Pix, cartão de crédito e débito.", "pagar pix"
        ),
        "plans": faq(clinic_a, "Vocês atendem convênio?", "Atendemos Unimed e Bradesco Saúde.", "plano de saúde"),
        "address": faq(clinic_a, "Qual o endereço?", "Av. Paulista, 1000, conj. 52.", "onde fica localização"),
        "cancel": faq(
            clinic_a,
            "Como cancelar uma consulta?",
            "Cancele até 24 horas antes; depois disso pode haver cobrança no pagamento da próxima.",
        ),
    }


@pytest.mark.django_db
def test_a_patient_who_wants_to_park_finds_the_parking_answer_by_its_stem(clinic_faq, clinic_a):
    # "estacionar" (verb) and "estacionamento" (noun) share the Portuguese stem; no keyword spells the verb out.
    assert faq_search(clinic=clinic_a, text="Posso estacionar aí?")[0] == clinic_faq["parking"]
    assert faq_search(clinic=clinic_a, text="vcs tem ESTACIONAMENTOS?")[0] == clinic_faq["parking"]


@pytest.mark.django_db
def test_accents_are_optional_on_both_sides(clinic_faq, clinic_a):
    # Stored "cartão", typed "cartao"; stored "endereço" typed "endereco"; and the other way round.
    assert faq_search(clinic=clinic_a, text="aceita cartao?")[0] == clinic_faq["payment"]
    assert faq_search(clinic=clinic_a, text="qual o endereco de vcs")[0] == clinic_faq["address"]
    assert faq_search(clinic=clinic_a, text="Onde fica a localizaçãó?")[0] == clinic_faq["address"]
    assert faq_search(clinic=clinic_a, text="plano de saude")[0] == clinic_faq["plans"]


@pytest.mark.django_db
def test_a_match_in_the_question_ranks_above_a_match_only_in_an_answer(clinic_faq, clinic_a):
    # "pagamento" is the payment entry's question and only a word in the cancellation answer.
    found = faq_search(clinic=clinic_a, text="e o pagamento?")
    assert found == [clinic_faq["payment"], clinic_faq["cancel"]]


@pytest.mark.django_db
def test_entries_matching_more_of_the_message_rank_first(clinic_faq, clinic_a):
    found = faq_search(clinic=clinic_a, text="queria cancelar a consulta de amanhã e saber do pagamento")
    assert found[0] == clinic_faq["cancel"]
    assert clinic_faq["payment"] in found


@pytest.mark.django_db
def test_another_clinics_entries_are_never_returned(clinic_faq, clinic_a, clinic_b):
    theirs = faq(clinic_b, "Tem estacionamento?", "Não temos estacionamento, só na rua.", "carro vaga estacionar")
    assert faq_search(clinic=clinic_a, text="estacionar carro") == [clinic_faq["parking"]]
    assert faq_search(clinic=clinic_b, text="estacionar carro") == [theirs]


@pytest.mark.django_db
def test_inactive_entries_are_not_answered(clinic_faq, clinic_a):
    clinic_faq["parking"].active = False
    clinic_faq["parking"].save()
    assert faq_search(clinic=clinic_a, text="tem estacionamento?") == []


@pytest.mark.django_db
def test_nothing_to_search_finds_nothing(clinic_faq, clinic_a):
    assert faq_search(clinic=clinic_a, text="") == []
    assert faq_search(clinic=clinic_a, text="   ?! 👍") == []
    assert faq_search(clinic=clinic_a, text="oi, bom dia") == []  # greetings are not questions
    assert faq_search(clinic=clinic_a, text="quanto custa um helicóptero") == []


@pytest.mark.django_db
def test_the_limit_caps_the_answers(clinic_faq, clinic_a):
    text = "estacionamento pagamento convênio endereço cancelar"
    assert len(faq_search(clinic=clinic_a, text=text)) == 3
    assert len(faq_search(clinic=clinic_a, text=text, limit=5)) == 5
    assert len(faq_search(clinic=clinic_a, text=text, limit=1)) == 1


@pytest.mark.django_db
def test_quotes_and_tsquery_operators_in_a_message_are_just_text(clinic_faq, clinic_a):
    assert faq_search(clinic=clinic_a, text="cartão' | !pix & (crédito):*")[0] == clinic_faq["payment"]


def test_the_search_terms_drop_filler_and_accents():
    assert faq_terms("Oi! Vocês aceitam CARTÃO de crédito? Não sei…") == ["aceitam", "cartao", "de", "credito", "sei"]


@pytest.mark.django_db
def test_the_search_can_use_the_gin_index(clinic_faq, clinic_a):
    # The index is on an expression: the query must spell the very same one, or PostgreSQL scans every entry.
    from django.contrib.postgres.search import SearchQuery

    from conversations.models import FAQ_SEARCH_CONFIG

    query = SearchQuery("'estacionar'", search_type="raw", config=FAQ_SEARCH_CONFIG)
    queryset = FaqEntry.objects.annotate(search=FAQ_SEARCH_VECTOR).filter(search=query)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    assert "faq_entry_search_idx" in queryset.explain()


@pytest.mark.django_db
def test_the_demo_clinic_answers_common_questions_from_its_faq():
    clinic = demo_clinic_seed(password="senha-de-teste-123").clinic
    assert "pagamento" in faq_search(clinic=clinic, text="vcs aceitam pix?")[0].question
    assert "estacionamento" in faq_search(clinic=clinic, text="onde deixo o carro")[0].question
    assert "primeira consulta" in faq_search(clinic=clinic, text="que documentos tenho que levar?")[0].question
    count = FaqEntry.objects.filter(clinic=clinic).count()
    demo_clinic_seed(password="senha-de-teste-123")
    assert FaqEntry.objects.filter(clinic=clinic).count() == count >= 5


# The admin


@pytest.mark.django_db
def test_a_receptionist_adds_an_faq_entry_to_her_clinic_and_finds_it_in_the_list(client, receptionist_a, clinic_a):
    client.force_login(receptionist_a)
    response = client.post(
        reverse("admin:conversations_faqentry_add"),
        {"clinic": clinic_a.pk, "question": "Aceita Pix?", "answer": "Aceitamos *Pix*, sim!", "active": "on"},
    )
    assert response.status_code == 302
    entry = FaqEntry.objects.get(question="Aceita Pix?")
    assert entry.clinic == clinic_a
    page = client.get(reverse("admin:conversations_faqentry_changelist")).content.decode()
    assert "Aceita Pix?" in page
    assert faq_search(clinic=clinic_a, text="pix") == [entry]


@pytest.mark.django_db
def test_staff_never_see_another_clinics_faq(client, receptionist_a, clinic_a, clinic_b):
    theirs = faq(clinic_b, "Segredo da Clínica B?", "Só da B.")
    client.force_login(receptionist_a)
    assert client.get(reverse("admin:conversations_faqentry_change", args=[theirs.pk])).status_code == 404
    page = client.get(reverse("admin:conversations_faqentry_changelist")).content.decode()
    assert "Segredo da Clínica B" not in page
    form = client.get(reverse("admin:conversations_faqentry_add")).context["adminform"].form
    assert list(form.fields["clinic"].queryset) == [clinic_a]


@pytest.mark.django_db
def test_receptionists_switch_entries_off_while_only_managers_delete_them(client, receptionist_a, manager_a, clinic_a):
    entry = faq(clinic_a, "Tem wi-fi?", "Tem sim, a senha está na recepção.")
    client.force_login(receptionist_a)
    assert (
        client.post(reverse("admin:conversations_faqentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    )
    client.force_login(manager_a)
    assert (
        client.post(reverse("admin:conversations_faqentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 302
    )
    assert not FaqEntry.objects.filter(pk=entry.pk).exists()


@pytest.mark.django_db
def test_managers_read_the_language_model_usage_and_receptionists_do_not(
    client, receptionist_a, manager_a, clinic_a, clinic_b
):
    import datetime

    llm_usage_add(clinic=clinic_a, day=datetime.date(2026, 11, 23), prompt_tokens=1234, completion_tokens=56)
    llm_usage_add(clinic=clinic_b, day=datetime.date(2026, 11, 23), prompt_tokens=98765, completion_tokens=4321)
    url = reverse("admin:conversations_llmusage_changelist")
    client.force_login(manager_a)
    response = client.get(url)
    assert list(response.context["cl"].result_list) == [LlmUsage.objects.get(clinic=clinic_a)]
    assert "1290" in response.content.decode().replace(".", "").replace(",", "")  # total tokens
    usage = LlmUsage.objects.get(clinic=clinic_a)
    assert (
        client.get(reverse("admin:conversations_llmusage_change", args=[usage.pk])).context["has_change_permission"]
        is False
    )
    client.force_login(receptionist_a)
    assert client.get(url).status_code == 403


@pytest.mark.django_db
def test_a_bare_yes_finds_nothing_even_when_an_answer_starts_with_sim(clinic_a):
    from conversations.models import FaqEntry

    FaqEntry.objects.create(
        clinic=clinic_a, question="Tem acessibilidade?", answer="Sim! O prédio tem rampa e elevador.", active=True
    )
    assert faq_search(clinic=clinic_a, text="sim, quero") == []
    assert faq_search(clinic=clinic_a, text="ok, pode ser") == []
    assert [entry.question for entry in faq_search(clinic=clinic_a, text="tem rampa?")] == ["Tem acessibilidade?"]
