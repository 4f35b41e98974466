"""How the rule-based receptionist reads short answers: yes/no and numbered choices (conversations.nlu.answers)."""

import random

import pytest

from conversations.nlu.answers import parse_choice, parse_yes_no
from conversations.nlu.text import normalize

# --- normalize ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Amanhã às 15h", "amanha as 15h"),
        ("TERÇA-FEIRA", "terca feira"),
        ("  sexta   de   manhã  ", "sexta de manha"),
        ("siiiim!!!", "sim"),
        ("naaaao", "nao"),
        ("isso", "isso"),
        ("28/11 às 9:30", "28/11 as 9:30"),
        ("28.11, ok.", "28.11 ok"),
        ("meio-dia", "meio dia"),
        ("2ª opção", "2a opcao"),
        ("Ação, ÇÃO", "acao cao"),
        ("sim 👍🏽", "sim 👍🏽"),
        ("3️⃣", "3️⃣"),
        ("1000", "1000"),
        ("", ""),
    ],
)
def test_normalize_gives_the_parsers_a_predictable_text(text, expected):
    assert normalize(text) == expected


# --- yes / no -----------------------------------------------------------------------------------------------------

YES = [
    "sim", "Sim", "SIM", "sim!", "Sim.", "siiiim", "siim", "simmm", "s", "S", "ss", "isso", "Isso!", "isso mesmo",
    "isso aí", "pode ser", "pode", "pode sim", "Pode sim, obrigada!", "confirmo", "Confirmo.", "confirmado",
    "comfirmo", "ok", "OK", "okay", "okk", "blz", "beleza", "certo", "claro", "claro que sim", "com certeza",
    "fechado", "fechou", "combinado", "perfeito", "ótimo", "tá bom", "ta bom", "tudo certo", "uhum", "aham",
    "👍", "👍🏽", "👍👍", "✅", "👌", "sim 👍", "sim, por favor", "sim por favor 😊", "sim sim", "sim, pode confirmar",
    "pode marcar", "exatamente", "correto", "positivo", "bora", "yes",
]  # fmt: skip
NO = [
    "não", "nao", "Não.", "NÃO", "naaao", "nããão", "n", "N", "nn", "naum", "negativo", "nem", "nem pensar",
    "não quero", "nao quero", "não quero mais", "melhor não", "melhor nao", "acho melhor não", "👎", "❌",
    "mudei de ideia", "Mudei de ideia", "não, obrigado", "nao obrigada", "não posso", "agora não", "ainda não",
    "de jeito nenhum", "não é isso", "esquece",
]  # fmt: skip
NEITHER = [
    "1", "2", "", "   ", "oi", "talvez", "não sei", "sim, mas prefiro à tarde", "pode ser, só que na sexta",
    "sim não", "isso não", "não, sim", "amanhã", "quero marcar", "qual o valor?", "simples", "nãonão?",
    "👍 mas às 16h", "?", "simulação", "nada", "isso é caro", "confirmo amanhã às 15h", "okay, mas e o preço?",
]  # fmt: skip


@pytest.mark.parametrize("text", YES)
def test_a_plain_yes_is_yes(text):
    assert parse_yes_no(text) is True


@pytest.mark.parametrize("text", NO)
def test_a_plain_no_is_no(text):
    assert parse_yes_no(text) is False


@pytest.mark.parametrize("text", NEITHER)
def test_anything_that_is_not_only_a_yes_or_a_no_is_neither(text):
    # "sim, mas prefiro à tarde" carries a change: confirming over it would book the wrong slot.
    assert parse_yes_no(text) is None


# --- numbered choices ---------------------------------------------------------------------------------------------

CHOICES = [
    # text, options, chosen
    ("1", 3, 1),
    ("2", 3, 2),
    (" 3 ", 3, 3),
    ("2.", 3, 2),
    ("2)", 3, 2),
    ("#2", 3, 2),
    ("opção 2", 3, 2),
    ("opcao 2", 3, 2),
    ("Opção 2!", 3, 2),
    ("a segunda", 3, 2),
    ("segunda", 3, 2),
    ("segundo", 3, 2),
    ("o segundo horário", 3, 2),
    ("o 3", 3, 3),
    ("3️⃣", 3, 3),
    ("1️⃣", 3, 1),
    ("🔟", 10, 10),
    ("quero o 2", 3, 2),
    ("quero o 2 por favor", 3, 2),
    ("pode ser o 1", 3, 1),
    ("o 2 às 10h", 3, 2),
    ("primeira opção", 3, 1),
    ("a primeira", 3, 1),
    ("PRIMEIRA", 3, 1),
    ("2ª opção", 3, 2),
    ("2a", 3, 2),
    ("prefiro a terceira", 3, 3),
    ("a quarta", 5, 4),
    ("quinto", 5, 5),
    ("quero o dois", 3, 2),
    ("opção um", 3, 1),
    ("dois", 3, 2),
    ("nº 2", 3, 2),
    ("número 3", 3, 3),
    ("última", 3, 3),
    ("a ultima", 4, 4),
    ("o último", 2, 2),
    ("penúltima", 4, 3),
    ("opcao 10", 10, 10),
    ("2 2", 3, 2),
]


@pytest.mark.parametrize(("text", "options", "chosen"), CHOICES)
def test_it_reads_the_option_chosen(text, options, chosen):
    assert parse_choice(text, options) == chosen


NO_CHOICE = [
    # text, options
    ("4", 3),
    ("0", 3),
    ("opção 7", 3),
    ("a quarta", 3),
    ("1 ou 2", 3),
    ("o primeiro ou o segundo", 3),
    ("dia 2", 3),
    ("às 2", 3),
    ("as 3", 3),
    ("2h", 3),
    ("15:00", 3),
    ("2/12", 3),
    ("2 de dezembro", 3),
    ("segunda-feira", 3),
    ("segunda feira", 3),
    ("na segunda", 3),
    ("a de sexta", 6),
    ("2a feira", 3),
    ("daqui a 2 dias", 3),
    ("quero uma consulta", 3),
    ("sim", 3),
    ("nenhum", 3),
    ("", 3),
    ("1", 0),
    ("9" * 5000, 3),
]


@pytest.mark.parametrize(("text", "options"), NO_CHOICE)
def test_it_does_not_invent_a_choice(text, options):
    assert parse_choice(text, options) is None


def test_short_answers_never_raise_on_random_text():
    generator = random.Random(5)
    pieces = [
        *"abcdefghijklmnopqrstuvwxyzãçé0123456789 .,!?/:-",
        "👍",
        "3️⃣",
        "🏽",
        "\u20e3",
        "\ufe0f",
        "ª",
        " sim ",
        " o ",
    ]
    for _ in range(2000):
        sample = "".join(generator.choices(pieces, k=generator.randint(0, 30)))
        assert parse_yes_no(sample) in (True, False, None)
        chosen = parse_choice(sample, generator.randint(-1, 12))
        assert chosen is None or chosen >= 1
