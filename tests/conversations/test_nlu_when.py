"""How the rule-based receptionist reads "when" from a patient's pt-BR message (conversations.nlu.when)."""

import datetime
import logging
import random
from zoneinfo import ZoneInfo

import pytest

from conversations.nlu.when import When, parse_when

SP = ZoneInfo("America/Sao_Paulo")
D = datetime.date
T = datetime.time

MONDAY = datetime.datetime(2025, 11, 24, 10, 0, tzinfo=SP)  # an ordinary Monday morning
SUNDAY_MONTH_END = datetime.datetime(2025, 11, 30, 9, 0, tzinfo=SP)  # a Sunday, last day of the month
YEAR_END = datetime.datetime(2025, 12, 30, 16, 0, tzinfo=SP)  # a Tuesday, the day before New Year's Eve
JANUARY_END = datetime.datetime(2025, 1, 31, 11, 0, tzinfo=SP)  # a Friday; February has no 29th, 30th or 31st
DST_START_EVE = datetime.datetime(2018, 11, 3, 23, 30, tzinfo=SP)  # Saturday; clocks jumped 00:00 → 01:00 on 4/11
DST_END_EVE = datetime.datetime(2018, 2, 17, 23, 30, tzinfo=SP)  # Saturday; clocks fell back at midnight on 18/02


def when(text, now=MONDAY):
    result = parse_when(text, now=now)
    assert result is not None, f"{text!r} was not understood"
    return result


def days(result):
    return result.start_date, result.end_date


# --- days -------------------------------------------------------------------------------------------------------

DAY_CASES = [
    # text, now, first day, last day
    ("hoje", MONDAY, D(2025, 11, 24), D(2025, 11, 24)),
    ("HOJE!", MONDAY, D(2025, 11, 24), D(2025, 11, 24)),
    ("hj", MONDAY, D(2025, 11, 24), D(2025, 11, 24)),
    ("hoje mesmo", MONDAY, D(2025, 11, 24), D(2025, 11, 24)),
    ("amanhã", MONDAY, D(2025, 11, 25), D(2025, 11, 25)),
    ("amanha", MONDAY, D(2025, 11, 25), D(2025, 11, 25)),
    ("Amanhã?", MONDAY, D(2025, 11, 25), D(2025, 11, 25)),
    ("amanhãããã", MONDAY, D(2025, 11, 25), D(2025, 11, 25)),
    ("amnha", MONDAY, D(2025, 11, 25), D(2025, 11, 25)),
    ("pode ser amanhã?", MONDAY, D(2025, 11, 25), D(2025, 11, 25)),
    ("depois de amanhã", MONDAY, D(2025, 11, 26), D(2025, 11, 26)),
    ("depois de amanha", MONDAY, D(2025, 11, 26), D(2025, 11, 26)),
    ("amanhã ou depois", MONDAY, D(2025, 11, 25), D(2025, 11, 26)),
    ("hoje ou amanhã", MONDAY, D(2025, 11, 24), D(2025, 11, 25)),
    ("na sexta", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("sexta", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("sexta-feira", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("SEXTA FEIRA", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("sex", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("6ª feira", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("terça", MONDAY, D(2025, 11, 25), D(2025, 11, 25)),
    ("terca", MONDAY, D(2025, 11, 25), D(2025, 11, 25)),
    ("tersa", MONDAY, D(2025, 11, 25), D(2025, 11, 25)),
    ("quarta-feira", MONDAY, D(2025, 11, 26), D(2025, 11, 26)),
    ("quarta feira", MONDAY, D(2025, 11, 26), D(2025, 11, 26)),
    ("qurta", MONDAY, D(2025, 11, 26), D(2025, 11, 26)),
    ("quinta", MONDAY, D(2025, 11, 27), D(2025, 11, 27)),
    ("sábado", MONDAY, D(2025, 11, 29), D(2025, 11, 29)),
    ("sabado", MONDAY, D(2025, 11, 29), D(2025, 11, 29)),
    ("sabdo", MONDAY, D(2025, 11, 29), D(2025, 11, 29)),
    ("domingo", MONDAY, D(2025, 11, 30), D(2025, 11, 30)),
    # Said on a Monday, "segunda" is next week's: today is only included when the patient says so.
    ("segunda", MONDAY, D(2025, 12, 1), D(2025, 12, 1)),
    ("na segunda", MONDAY, D(2025, 12, 1), D(2025, 12, 1)),
    ("2a feira", MONDAY, D(2025, 12, 1), D(2025, 12, 1)),
    ("essa segunda", MONDAY, D(2025, 11, 24), D(2025, 11, 24)),
    ("hoje, segunda", MONDAY, D(2025, 11, 24), D(2025, 11, 24)),
    # "próxima sexta"/"sexta que vem" = the coming Friday; next week's must name the week.
    ("próxima sexta", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("proxima sexta", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("sexta que vem", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("sexta da semana que vem", MONDAY, D(2025, 12, 5), D(2025, 12, 5)),
    ("semana que vem na sexta", MONDAY, D(2025, 12, 5), D(2025, 12, 5)),
    ("sexta-feira da próxima semana", MONDAY, D(2025, 12, 5), D(2025, 12, 5)),
    ("dia 28", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("no dia 24", MONDAY, D(2025, 11, 24), D(2025, 11, 24)),
    ("dia 20", MONDAY, D(2025, 12, 20), D(2025, 12, 20)),
    ("dia 31", MONDAY, D(2025, 12, 31), D(2025, 12, 31)),  # November has no 31st
    ("dia primeiro", MONDAY, D(2025, 12, 1), D(2025, 12, 1)),
    ("dia dois", MONDAY, D(2025, 12, 2), D(2025, 12, 2)),
    ("28/11", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("28/11/2026", MONDAY, D(2026, 11, 28), D(2026, 11, 28)),
    ("28/11/26", MONDAY, D(2026, 11, 28), D(2026, 11, 28)),
    ("28-11", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("28.11", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("5/12", MONDAY, D(2025, 12, 5), D(2025, 12, 5)),
    ("20/11", MONDAY, D(2026, 11, 20), D(2026, 11, 20)),  # passed this year: next year's
    ("29/02", MONDAY, D(2028, 2, 29), D(2028, 2, 29)),  # the next year that has one
    ("28 de novembro", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("28 novembro", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("28 nov", MONDAY, D(2025, 11, 28), D(2025, 11, 28)),
    ("dia 5 de dezembro", MONDAY, D(2025, 12, 5), D(2025, 12, 5)),
    ("primeiro de dezembro", MONDAY, D(2025, 12, 1), D(2025, 12, 1)),
    ("10 de março", MONDAY, D(2026, 3, 10), D(2026, 3, 10)),
    ("5 de dezembro de 2026", MONDAY, D(2026, 12, 5), D(2026, 12, 5)),
    ("sexta, 5/12", MONDAY, D(2025, 12, 5), D(2025, 12, 5)),
    ("daqui a 2 dias", MONDAY, D(2025, 11, 26), D(2025, 11, 26)),
    ("daqui 2 dias", MONDAY, D(2025, 11, 26), D(2025, 11, 26)),
    ("em 3 dias", MONDAY, D(2025, 11, 27), D(2025, 11, 27)),
    ("daqui a dez dias", MONDAY, D(2025, 12, 4), D(2025, 12, 4)),
    ("daqui a duas semanas", MONDAY, D(2025, 12, 8), D(2025, 12, 13)),
    ("em uma semana", MONDAY, D(2025, 12, 1), D(2025, 12, 6)),
    # Weeks start on Sunday (Brazilian calendars); clinic weeks are Monday to Saturday.
    ("semana que vem", MONDAY, D(2025, 12, 1), D(2025, 12, 6)),
    ("próxima semana", MONDAY, D(2025, 12, 1), D(2025, 12, 6)),
    ("proxima semana", MONDAY, D(2025, 12, 1), D(2025, 12, 6)),
    ("essa semana", MONDAY, D(2025, 11, 24), D(2025, 11, 29)),
    ("esta semana", MONDAY, D(2025, 11, 24), D(2025, 11, 29)),
    ("ainda nessa semana", MONDAY, D(2025, 11, 24), D(2025, 11, 29)),
    ("fim de semana", MONDAY, D(2025, 11, 29), D(2025, 11, 30)),
    ("final de semana", MONDAY, D(2025, 11, 29), D(2025, 11, 30)),
    ("fds", MONDAY, D(2025, 11, 29), D(2025, 11, 30)),
    ("mês que vem", MONDAY, D(2025, 12, 1), D(2025, 12, 31)),
    ("mes que vem", MONDAY, D(2025, 12, 1), D(2025, 12, 31)),
    ("próximo mês", MONDAY, D(2025, 12, 1), D(2025, 12, 31)),
    ("esse mês", MONDAY, D(2025, 11, 24), D(2025, 11, 30)),
    ("fim do mês", MONDAY, D(2025, 11, 24), D(2025, 11, 30)),
    ("início do mês que vem", MONDAY, D(2025, 12, 1), D(2025, 12, 10)),
    ("em dezembro", MONDAY, D(2025, 12, 1), D(2025, 12, 31)),
    ("em novembro", MONDAY, D(2025, 11, 24), D(2025, 11, 30)),
    ("pra janeiro", MONDAY, D(2026, 1, 1), D(2026, 1, 31)),
    ("março", MONDAY, D(2026, 3, 1), D(2026, 3, 31)),
    # A Sunday that is also a month's last day.
    ("hoje", SUNDAY_MONTH_END, D(2025, 11, 30), D(2025, 11, 30)),
    ("amanhã", SUNDAY_MONTH_END, D(2025, 12, 1), D(2025, 12, 1)),
    ("segunda", SUNDAY_MONTH_END, D(2025, 12, 1), D(2025, 12, 1)),
    ("domingo", SUNDAY_MONTH_END, D(2025, 12, 7), D(2025, 12, 7)),
    ("essa semana", SUNDAY_MONTH_END, D(2025, 11, 30), D(2025, 12, 6)),
    ("semana que vem", SUNDAY_MONTH_END, D(2025, 12, 8), D(2025, 12, 13)),
    ("fim de semana", SUNDAY_MONTH_END, D(2025, 11, 30), D(2025, 11, 30)),
    ("fim de semana que vem", SUNDAY_MONTH_END, D(2025, 12, 6), D(2025, 12, 7)),
    ("dia 30", SUNDAY_MONTH_END, D(2025, 11, 30), D(2025, 11, 30)),
    ("dia 1", SUNDAY_MONTH_END, D(2025, 12, 1), D(2025, 12, 1)),
    ("mês que vem", SUNDAY_MONTH_END, D(2025, 12, 1), D(2025, 12, 31)),
    # The end of a year.
    ("amanhã", YEAR_END, D(2025, 12, 31), D(2025, 12, 31)),
    ("depois de amanhã", YEAR_END, D(2026, 1, 1), D(2026, 1, 1)),
    ("dia 5", YEAR_END, D(2026, 1, 5), D(2026, 1, 5)),
    ("05/01", YEAR_END, D(2026, 1, 5), D(2026, 1, 5)),
    ("28/11", YEAR_END, D(2026, 11, 28), D(2026, 11, 28)),
    ("semana que vem", YEAR_END, D(2026, 1, 5), D(2026, 1, 10)),
    ("essa semana", YEAR_END, D(2025, 12, 30), D(2026, 1, 3)),
    ("mês que vem", YEAR_END, D(2026, 1, 1), D(2026, 1, 31)),
    ("em janeiro", YEAR_END, D(2026, 1, 1), D(2026, 1, 31)),
    ("sexta", YEAR_END, D(2026, 1, 2), D(2026, 1, 2)),
    ("daqui a 3 dias", YEAR_END, D(2026, 1, 2), D(2026, 1, 2)),
    # The end of a month whose successor is short.
    ("amanhã", JANUARY_END, D(2025, 2, 1), D(2025, 2, 1)),
    ("dia 31", JANUARY_END, D(2025, 1, 31), D(2025, 1, 31)),
    ("dia 30", JANUARY_END, D(2025, 3, 30), D(2025, 3, 30)),  # February has no 30th
    ("mês que vem", JANUARY_END, D(2025, 2, 1), D(2025, 2, 28)),
    ("fim do mês", JANUARY_END, D(2025, 1, 31), D(2025, 1, 31)),
    # Across the São Paulo daylight-saving changes of 2018 (the zone only matters through `now`).
    ("amanhã", DST_START_EVE, D(2018, 11, 4), D(2018, 11, 4)),
    ("domingo", DST_START_EVE, D(2018, 11, 4), D(2018, 11, 4)),
    ("segunda", DST_START_EVE, D(2018, 11, 5), D(2018, 11, 5)),
    ("semana que vem", DST_START_EVE, D(2018, 11, 5), D(2018, 11, 10)),
    ("hoje", DST_START_EVE, D(2018, 11, 3), D(2018, 11, 3)),
    ("amanhã", DST_END_EVE, D(2018, 2, 18), D(2018, 2, 18)),
    ("dia 18", DST_END_EVE, D(2018, 2, 18), D(2018, 2, 18)),
]


@pytest.mark.parametrize(("text", "now", "first", "last"), DAY_CASES)
def test_it_reads_the_days_a_patient_names(text, now, first, last):
    result = when(text, now)

    assert days(result) == (first, last)
    assert result.date_given is True


def test_the_date_follows_the_clinic_zone_not_utc():
    # 23:30 on Saturday in São Paulo is already Sunday in UTC: "hoje" is still Saturday.
    late_saturday = datetime.datetime(2018, 11, 3, 23, 30, tzinfo=SP)

    assert when("hoje", late_saturday).start_date == D(2018, 11, 3)


WEEKDAY_RANGE_CASES = [
    ("segunda ou quarta", D(2025, 11, 26), D(2025, 12, 1), frozenset({0, 2})),
    ("terça ou quinta", D(2025, 11, 25), D(2025, 11, 27), frozenset({1, 3})),
    ("às sextas", D(2025, 11, 28), D(2025, 12, 25), frozenset({4})),
    ("sextas", D(2025, 11, 28), D(2025, 12, 25), frozenset({4})),
    ("toda quarta", D(2025, 11, 26), D(2025, 12, 23), frozenset({2})),
    ("semana que vem, segunda ou terça", D(2025, 12, 1), D(2025, 12, 2), frozenset({0, 1})),
    ("sextas de dezembro", D(2025, 12, 5), D(2025, 12, 26), frozenset({4})),
]


@pytest.mark.parametrize(("text", "first", "last", "weekdays"), WEEKDAY_RANGE_CASES)
def test_it_keeps_several_or_repeated_weekdays_as_a_restriction(text, first, last, weekdays):
    result = when(text)

    assert (result.start_date, result.end_date, result.weekdays) == (first, last, weekdays)


def test_one_weekday_inside_a_week_is_a_single_day_without_a_restriction():
    result = when("semana que vem na quarta")

    assert (result.start_date, result.end_date, result.weekdays) == (D(2025, 12, 3), D(2025, 12, 3), None)


@pytest.mark.parametrize("text", ["31/02", "30/02/2026", "dia 40", "dia 0", "32/12", "28/13", "0/0"])
def test_an_impossible_date_alone_is_not_understood(text):
    assert parse_when(text, now=MONDAY) is None


def test_an_impossible_date_keeps_the_time_but_says_no_day_was_given():
    result = when("31/02 às 10h")

    assert result.time == T(10)
    assert result.date_given is False


# --- hours --------------------------------------------------------------------------------------------------------

TIME_CASES = [
    # text, exact time, part of day
    ("15h", T(15), None),
    ("15 h", T(15), None),
    ("15hs", T(15), None),
    ("às 15", T(15), None),
    ("as 15", T(15), None),
    ("AS 15H", T(15), None),
    ("15:00", T(15), None),
    ("às 15 horas", T(15), None),
    ("às 10 horas", T(10), None),
    ("3 da tarde", T(15), "afternoon"),
    ("às 3 da tarde", T(15), "afternoon"),
    ("3 de tarde", T(15), "afternoon"),
    ("às duas da tarde", T(14), "afternoon"),
    ("uma da tarde", T(13), "afternoon"),
    ("9 da manhã", T(9), "morning"),
    ("9 da manha", T(9), "morning"),
    ("9h da manhã", T(9), "morning"),
    ("8 da noite", T(20), "evening"),
    ("9h30", T(9, 30), None),
    ("9:30", T(9, 30), None),
    ("9.30", T(9, 30), None),
    ("9 e meia", T(9, 30), None),
    ("8 e meia", T(8, 30), None),
    ("às oito e meia", T(8, 30), None),
    ("2 e meia", T(14, 30), None),
    ("10 e 15", T(10, 15), None),
    ("meio-dia", T(12), None),
    ("meio dia", T(12), None),
    ("ao meio dia", T(12), None),
    ("meio-dia e meia", T(12, 30), None),
    ("meio dia e meia", T(12, 30), None),
    ("pelas 10", T(10), None),
    ("umas 4", T(16), None),
    ("por volta das 11", T(11), None),
    # The ambiguity rules: 1–6 alone are afternoon, 7–12 as said, a qualifier wins.
    ("às 3", T(15), None),
    ("às 1", T(13), None),
    ("às 6", T(18), None),
    ("às 7", T(7), None),
    ("às 11", T(11), None),
    ("às 3 da manhã", T(3), "morning"),
    ("sexta à tarde, umas 4", T(16), "afternoon"),
    ("à noite às 7", T(19), "evening"),
]


@pytest.mark.parametrize(("text", "time", "part"), TIME_CASES)
def test_it_reads_the_hour_asked(text, time, part):
    result = when(text)

    assert result.time == time
    assert result.part_of_day == part


PART_CASES = [
    # text, part of day, not before, not after
    ("de manhã", "morning", None, None),
    ("de manha", "morning", None, None),
    ("pela manhã", "morning", None, None),
    ("manhã", "morning", None, None),
    ("cedo", "morning", None, None),
    ("bem cedo", "morning", None, T(9)),
    ("à tarde", "afternoon", None, None),
    ("a tarde", "afternoon", None, None),
    ("de tarde", "afternoon", None, None),
    ("A TARDE", "afternoon", None, None),
    ("à noite", "evening", None, None),
    ("de noite", "evening", None, None),
    ("depois do almoço", "afternoon", T(13), None),
    ("depois do almoco", "afternoon", T(13), None),
    ("após o almoço", "afternoon", T(13), None),
    ("antes do almoço", "morning", None, None),
    ("fim da tarde", "afternoon", T(16), None),
    ("final da tarde", "afternoon", T(16), None),
    ("no fim de tarde", "afternoon", T(16), None),
    ("tardinha", "afternoon", T(16), None),
    ("início da tarde", "afternoon", None, T(15)),
    ("horário de almoço", None, T(12), T(13)),
    ("na hora do almoço", None, T(12), T(13)),
    ("depois do trabalho", None, T(18), None),
    ("depois das 16h", None, T(16), None),
    ("depois das 16", None, T(16), None),
    ("depois das 4", None, T(16), None),
    ("a partir das 14h", None, T(14), None),
    ("após as 17:30", None, T(17, 30), None),
    ("depois do meio dia", None, T(12), None),
    ("antes das 10", None, None, T(10)),
    ("antes das 10h", None, None, T(10)),
    ("até as 11", None, None, T(11)),
    ("ate as 11", None, None, T(11)),
    ("até 11h", None, None, T(11)),
    ("no máximo às 9", None, None, T(9)),
    ("antes das 9 da manhã", "morning", None, T(9)),
    ("à tarde depois das 3", "afternoon", T(15), None),
    ("entre 14 e 16h", None, T(14), T(16)),
    ("das 8 às 10", None, T(8), T(10)),
    ("de 2 a 4 da tarde", "afternoon", T(14), T(16)),
    ("de manhã ou à tarde", None, None, None),
    ("de manhã ou à tarde, antes das 15h", None, None, T(15)),
]


@pytest.mark.parametrize(("text", "part", "not_before", "not_after"), PART_CASES)
def test_it_reads_parts_of_the_day_and_limits(text, part, not_before, not_after):
    result = when(text)

    assert (result.part_of_day, result.not_before, result.not_after) == (part, not_before, not_after)
    assert result.time is None


@pytest.mark.parametrize(
    "text",
    [
        "o mais cedo possível",
        "o mais cedo possivel",
        "mais cedo possível",
        "o quanto antes",
        "quanto antes",
        "assim que possível",
        "o mais rápido possível",
        "qualquer dia",
        "qualquer horário",
        "qualquer horario",
        "primeiro horário",
        "o primeiro horário disponível",
        "próxima vaga",
        "tanto faz",
    ],
)
def test_it_reads_as_soon_as_possible(text):
    result = when(text)

    assert result.earliest is True
    assert result.part_of_day is None  # "mais cedo" is not "cedo" (morning)
    assert result.date_given is False


def test_a_message_without_a_day_searches_from_today_over_the_default_horizon():
    result = when("às 15h")

    assert result.start_date == D(2025, 11, 24)
    assert result.end_date == D(2025, 12, 8)
    assert result.date_given is False


# --- whole messages -------------------------------------------------------------------------------------------------

SENTENCE_CASES = [
    ("amanhã às 15h", When(D(2025, 11, 25), D(2025, 11, 25), time=T(15))),
    ("amanhã cedo", When(D(2025, 11, 25), D(2025, 11, 25), part_of_day="morning")),
    ("amanha de manha", When(D(2025, 11, 25), D(2025, 11, 25), part_of_day="morning")),
    ("AMANHA AS 10 DA MANHA", When(D(2025, 11, 25), D(2025, 11, 25), time=T(10), part_of_day="morning")),
    ("amanhã às 15h de tarde", When(D(2025, 11, 25), D(2025, 11, 25), time=T(15), part_of_day="afternoon")),
    ("sexta de manhã", When(D(2025, 11, 28), D(2025, 11, 28), part_of_day="morning")),
    ("sexta de manha", When(D(2025, 11, 28), D(2025, 11, 28), part_of_day="morning")),
    ("28/11 às 9h30", When(D(2025, 11, 28), D(2025, 11, 28), time=T(9, 30))),
    ("28/11 as 9:30", When(D(2025, 11, 28), D(2025, 11, 28), time=T(9, 30))),
    ("dia 28 às 10", When(D(2025, 11, 28), D(2025, 11, 28), time=T(10))),
    ("5/12 14h", When(D(2025, 12, 5), D(2025, 12, 5), time=T(14))),
    ("quinta feira as 14:30", When(D(2025, 11, 27), D(2025, 11, 27), time=T(14, 30))),
    (
        "pode ser amanhã depois do almoço?",
        When(D(2025, 11, 25), D(2025, 11, 25), part_of_day="afternoon", not_before=T(13)),
    ),
    (
        "Boa tarde! Queria marcar pra semana que vem, de manhã",
        When(D(2025, 12, 1), D(2025, 12, 6), part_of_day="morning"),
    ),
    ("hoje de noite depois das 7", When(D(2025, 11, 24), D(2025, 11, 24), part_of_day="evening", not_before=T(19))),
    (
        "no fim da tarde de quinta",
        When(D(2025, 11, 27), D(2025, 11, 27), part_of_day="afternoon", not_before=T(16)),
    ),
    (
        "qualquer dia de manhã",
        When(D(2025, 11, 24), D(2025, 12, 8), part_of_day="morning", earliest=True, date_given=False),
    ),
    ("amanhã, o primeiro horário", When(D(2025, 11, 25), D(2025, 11, 25), earliest=True)),
    ("daqui a 2 dias às 8", When(D(2025, 11, 26), D(2025, 11, 26), time=T(8))),
]


@pytest.mark.parametrize(("text", "expected"), SENTENCE_CASES)
def test_it_reads_whole_messages(text, expected):
    assert when(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "oi",
        "bom dia",
        "Boa tarde, tudo bem?",
        "boa noite",
        "sim",
        "quero marcar uma consulta",
        "tenho 2 filhos",
        "meu cpf é 123.456.789-00",
        "quanto custa?",
        "tem mais cedo?",
        "às 25h",
        "às 10:75",
        "99:99",
        "a segunda opção",
        "👍",
        "9" * 5000,
        "1 " * 3000,
    ],
)
def test_messages_that_say_nothing_about_time_are_not_read_as_time(text):
    assert parse_when(text, now=MONDAY) is None


# --- describe() -----------------------------------------------------------------------------------------------------

DESCRIBE_CASES = [
    ("sexta de manhã", "sexta-feira (28/11) de manhã"),
    ("amanhã às 15h", "amanhã às 15h"),
    ("hoje à noite", "hoje à noite"),
    ("28/11 às 9h30", "sexta-feira (28/11) às 9h30"),
    ("dia 2 ao meio-dia", "terça-feira (02/12) ao meio-dia"),
    ("quarta às 13h", "quarta-feira (26/11) às 13h"),
    ("20/11", "sexta-feira (20/11/2026)"),
    ("semana que vem", "de segunda-feira (01/12) a sábado (06/12)"),
    ("segunda ou terça", "amanhã ou segunda-feira (01/12)"),
    ("terça ou quarta", "amanhã ou quarta-feira (26/11)"),
    ("às sextas", "às sextas, entre 28/11 e 25/12"),
    ("sábados de manhã", "aos sábados, entre 29/11 e 26/12 de manhã"),
    ("depois do almoço", "à tarde a partir das 13h"),
    ("antes das 11", "até as 11h"),
    ("horário de almoço", "entre 12h e 13h"),
    ("o quanto antes", "o mais cedo possível"),
    ("amanhã, o mais cedo possível", "amanhã, o mais cedo possível"),
    ("3 da tarde", "às 15h"),
]


@pytest.mark.parametrize(("text", "expected"), DESCRIBE_CASES)
def test_describe_reads_back_in_portuguese(text, expected):
    assert when(text).describe() == expected


def test_describe_names_every_weekday_in_portuguese():
    names = [When(D(2025, 12, day), D(2025, 12, day)).describe() for day in range(1, 8)]

    assert names == [
        "segunda-feira (01/12)",
        "terça-feira (02/12)",
        "quarta-feira (03/12)",
        "quinta-feira (04/12)",
        "sexta-feira (05/12)",
        "sábado (06/12)",
        "domingo (07/12)",
    ]


# --- robustness ---------------------------------------------------------------------------------------------------

_FUZZ_PIECES = [
    *"abcdefghijklmnopqrstuvwxyzçãéíõú0123456789/:.-,!?  ",
    "👍", "3️⃣", "🏽", "\u200d", "\x00", "\n", "ª", "º",
    " dia ", " às ", " de ", " 28/11 ", " 31/02 ", " 99/99/9999 ", " amanhã ", " sexta ", " semana que vem ",
    " depois das ", " e meia ", " meio dia ", " da tarde ", " daqui a ", " 0 ", " 00:00 ", " 24h ", " 9999 ",
]  # fmt: skip


def test_it_never_raises_on_random_text(caplog):
    generator = random.Random(20251124)
    samples = ["".join(generator.choices(_FUZZ_PIECES, k=generator.randint(0, 40))) for _ in range(3000)]
    nows = [MONDAY, SUNDAY_MONTH_END, YEAR_END, JANUARY_END, DST_START_EVE]

    with caplog.at_level(logging.ERROR, logger="conversations.nlu.when"):
        for index, sample in enumerate(samples):
            result = parse_when(sample, now=nows[index % len(nows)])
            assert result is None or result.start_date <= result.end_date
            if result is not None:
                assert isinstance(result.describe(), str)

    assert [record.getMessage() for record in caplog.records] == []  # no swallowed exception either
