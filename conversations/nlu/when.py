"""When a patient wants to come, from what they write in Brazilian Portuguese.

`parse_when(text, now=...)` reads dates, times, parts of the day and limits from one message and returns a `When`, or
None when the message says nothing about time. It is written for this domain on purpose: general date libraries
read "sexta", "dia 28", "às 3" or "depois do almoço" wrongly in Portuguese. It never raises.

The text goes through `conversations.nlu.text.normalize` first, so accents, case, stretched letters ("amanhããã")
and punctuation do not matter. Each recogniser below consumes the words it used, so "daqui a 2 dias" is not also
read as "2 o'clock" and "depois de amanhã" is not read as a time bound.

Rules (the decisions a receptionist would make):

Days
- "hoje"/"hj" is today (`now.date()`, clinic-local); "amanhã" (and common typos) tomorrow; "depois de amanhã" the day
  after; "amanhã ou depois" both days; "daqui a 2 dias"/"em 3 dias" that single day.
- A weekday ("sexta", "sex", "sexta-feira", "6ª feira") is its next occurrence *after* today: "na sexta" said on a
  Friday means next week's Friday. "essa/esta sexta" includes today. "próxima sexta" and "sexta que vem" are the
  next occurrence too: in Brazilian usage "próxima sexta" said on a Monday is this coming Friday, and "sexta que vem"
  is said both ways, so we take the nearer one and the read-back shows the date. Next week's Friday must be said
  with the week: "sexta da semana que vem", "semana que vem na sexta", "sexta da próxima semana".
- Several weekdays ("segunda ou quarta") give the range from the first to the last next occurrence, restricted to
  those weekdays. A plural ("sextas", "às sextas", "toda sexta") gives the next four weeks, restricted.
- Weeks start on Sunday, as on Brazilian calendars. "essa/esta semana" is today until Saturday; "semana que vem"/
  "próxima semana" is Monday to Saturday of the following week (so on a Sunday it is the week after the one that
  starts today). "fim de semana" is the coming Saturday and Sunday (today's, when said on a weekend); "fim de semana
  que vem" said on a weekend is the following one. "daqui a 2 semanas" is Monday to Saturday of that week.
- "mês que vem" is the whole next month; "esse mês" today until the month's end; "fim do mês" its last 7 days (from
  today at the earliest); "início/fim do mês que vem" its first/last 10 days; "em dezembro" that month (this year,
  or next year when it has passed; from today when it is the current month).
- "dia 28" is the 28th of this month, or of the next month that has a 28th when it has already passed (so "dia 31"
  said on 10 November is 31 December). "28/11", "28/11/2026", "28-11", "28.11", "28 de novembro", "28 nov": a date
  without a year that has passed this year is next year's; with a year it is taken as written. An impossible date
  ("31/02", "dia 40") gives no date at all (never a crash): the rest of the message still counts.
- An explicit day ("hoje", "amanhã", "28/11", "dia 28") wins over a weekday or a week said with it ("sexta, 28/11" is
  28/11 even if that is not a Friday; the read-back shows it).
- With no day at all (only "às 15h", "de manhã", "o quanto antes"), the range is today plus the next
  `DEFAULT_HORIZON_DAYS` days and `When.date_given` is False, so the engine can ask for a day or merge an earlier one.

Times
- "15h", "15:00", "15h30", "9.30", "às 15", "15 horas", "3 da tarde", "9 da manhã", "8 e meia", "meio-dia",
  "meio-dia e meia", "às duas da tarde". A bare number is only a time with a marker: "às"/"pelas"/"umas" before,
  or "h"/"horas"/":mm"/"e meia"/"da tarde" after ("tenho 2 filhos" has no time).
- Hours 1–6 with no qualifier are afternoon ("às 3" → 15:00): clinics are open at 3 pm, not at 3 am. 7–12 are taken
  as said ("às 7" → 07:00, a morning slot; many clinics open at 7). "da manhã"/"da madrugada" keep the hour ("às 3
  da manhã" → 03:00); "da tarde"/"da noite" add 12 ("8 da noite" → 20:00). When the message names the afternoon or
  evening elsewhere ("sexta à tarde, umas 4"), hours before 12 are moved there too.
- "3 da tarde" also sets `part_of_day` to the afternoon, so the nearest offer stays in the afternoon.
- Limits apply to a slot's start: "depois das 16h"/"a partir das 16"/"após as 16" → `not_before`; "antes das 10"/
  "até as 11"/"no máximo às 11" → `not_after` (both inclusive); "entre 14 e 16h"/"das 8 às 10" set both.

Parts of the day (values of `scheduling.availability.PartOfDay`)
- morning: "de manhã", "pela manhã", "cedo", "amanhã cedo"; "bem cedo"/"cedinho"/"início da manhã" also
  `not_after` 09:00; "fim da manhã" `not_before` 10:00; "antes do almoço" morning.
- afternoon: "à tarde", "a tarde", "de tarde"; "depois do almoço" → afternoon with `not_before` 13:00; "fim da
  tarde"/"tardinha" → afternoon with `not_before` 16:00; "início da tarde" → afternoon with `not_after` 15:00.
- evening: "à noite", "de noite"; "depois do trabalho" → `not_before` 18:00; "fim do dia" → `not_before` 16:00.
- "horário de almoço"/"na hora do almoço" → between 12:00 and 13:00, no part.
- "de manhã ou à tarde" names two parts: no part. Greetings ("bom dia", "boa tarde", "boa noite") are not times,
  nor are "mais cedo"/"mais tarde" (relative to an offer the engine made, not to the clock).

Earliest
- "o mais cedo possível", "o quanto antes", "assim que possível", "primeiro horário", "próxima vaga", "qualquer dia",
  "qualquer horário", "tanto faz" → `earliest=True`.
"""

from __future__ import annotations

import calendar
import datetime
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from conversations.nlu.text import normalize

logger = logging.getLogger(__name__)

DEFAULT_HORIZON_DAYS = 14
PLURAL_WEEKDAY_WEEKS = 4
MORNING, AFTERNOON, EVENING = "morning", "afternoon", "evening"

WEEKDAY_NAMES = ("segunda-feira", "terça-feira", "quarta-feira", "quinta-feira", "sexta-feira", "sábado", "domingo")
_WEEKDAY_PLURALS = ("às segundas", "às terças", "às quartas", "às quintas", "às sextas", "aos sábados", "aos domingos")
_PART_WORDS = {MORNING: "de manhã", AFTERNOON: "à tarde", EVENING: "à noite"}


@dataclass(frozen=True)
class When:
    """What a patient accepts: a range of days, optionally narrowed by weekday, time, part of the day and limits.

    `date_given` is False when the message named no day (the range is then today plus a default horizon).
    `reference` is the day the message was read on; it only lets `describe()` say "hoje"/"amanhã".
    """

    start_date: datetime.date
    end_date: datetime.date
    time: datetime.time | None = None
    part_of_day: str | None = None
    not_before: datetime.time | None = None
    not_after: datetime.time | None = None
    earliest: bool = False
    weekdays: frozenset[int] | None = None
    date_given: bool = True
    reference: datetime.date | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        """A short pt-BR read-back: "sexta-feira (28/11) de manhã", "amanhã às 15h", "o mais cedo possível"."""
        pieces = [piece for piece in (self._describe_days(), self._describe_hours()) if piece]
        text = " ".join(pieces)
        if self.earliest:
            text = f"{text}, o mais cedo possível" if text else "o mais cedo possível"
        return text or "qualquer dia"

    def _describe_day(self, day: datetime.date) -> str:
        if self.reference is not None:
            if day == self.reference:
                return "hoje"
            if day == self.reference + datetime.timedelta(days=1):
                return "amanhã"
        return f"{WEEKDAY_NAMES[day.weekday()]} ({self._short_date(day)})"

    def _short_date(self, day: datetime.date) -> str:
        if self.reference is not None and day.year != self.reference.year:
            return day.strftime("%d/%m/%Y")
        return day.strftime("%d/%m")

    def _describe_days(self) -> str:
        if not self.date_given:
            if self.weekdays:
                return " e ".join(_WEEKDAY_PLURALS[day] for day in sorted(self.weekdays))
            return ""
        if self.start_date == self.end_date:
            return self._describe_day(self.start_date)
        if self.weekdays and (self.end_date - self.start_date).days < 7:  # "segunda ou terça": name the days
            days_between = (self.start_date + datetime.timedelta(days=n) for n in range(7))
            chosen = [d for d in days_between if d <= self.end_date and d.weekday() in self.weekdays]
            return " ou ".join(self._describe_day(day) for day in chosen)
        if self.weekdays:
            days = " e ".join(_WEEKDAY_PLURALS[day] for day in sorted(self.weekdays))
            return f"{days}, entre {self._short_date(self.start_date)} e {self._short_date(self.end_date)}"
        return f"de {self._describe_day(self.start_date)} a {self._describe_day(self.end_date)}"

    def _describe_hours(self) -> str:
        pieces = []
        if self.part_of_day in _PART_WORDS and self.time is None:  # "às 15h" already says "à tarde"
            pieces.append(_PART_WORDS[self.part_of_day])
        if self.time is not None:
            pieces.append(_at(self.time))
        if self.not_before is not None and self.not_after is not None:
            pieces.append(f"entre {_clock(self.not_before)} e {_clock(self.not_after)}")
        elif self.not_before is not None:
            pieces.append(f"a partir {_of_the(self.not_before)} {_clock(self.not_before)}")
        elif self.not_after is not None:
            pieces.append(f"até {_the(self.not_after)} {_clock(self.not_after)}")
        return " ".join(pieces)


def _clock(value: datetime.time) -> str:
    if value.minute:
        return f"{value.hour}h{value.minute:02d}"
    return f"{value.hour}h"


def _at(value: datetime.time) -> str:
    if value == datetime.time(12):
        return "ao meio-dia"
    return f"{'à' if value.hour in (0, 1) else 'às'} {_clock(value)}"


def _the(value: datetime.time) -> str:
    return "a" if value.hour in (0, 1) else "as"


def _of_the(value: datetime.time) -> str:
    return "da" if value.hour in (0, 1) else "das"


# --- the scanner ------------------------------------------------------------------------------------------------


class _Scan:
    """The normalised message, from which recognisers take (blank out) the words they understood."""

    def __init__(self, text: str) -> None:
        self.text = f" {text} "

    def take(self, pattern: re.Pattern[str], accept: Callable[[re.Match[str]], bool] | None = None) -> list:
        taken = []
        for match in pattern.finditer(self.text):
            if accept is not None and not accept(match):
                continue
            taken.append(match)
        for match in taken:
            start, end = match.span()
            self.text = self.text[:start] + " " * (end - start) + self.text[end:]
        return taken

    def has(self, pattern: re.Pattern[str]) -> bool:
        return pattern.search(self.text) is not None


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.VERBOSE)


_NUMBER_WORDS = {
    "um": 1, "uma": 1, "dois": 2, "duas": 2, "tres": 3, "quatro": 4, "cinco": 5, "seis": 6, "sete": 7, "oito": 8,
    "nove": 9, "dez": 10, "onze": 11, "doze": 12, "quinze": 15, "vinte": 20, "trinta": 30,
}  # fmt: skip
_NUMBER_WORD = "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
_HOUR_WORD = "uma|duas|tres|quatro|cinco|seis|sete|oito|nove|dez|onze|doze"
_AMANHA = r"(?:amanha|amanh|amnha|amanah|amanhan|amanham|amanhar|amanhaa|amaha)"
_MONTHS = {
    "janeiro": 1, "jan": 1, "fevereiro": 2, "fev": 2, "marco": 3, "mar": 3, "abril": 4, "abr": 4, "maio": 5,
    "mai": 5, "junho": 6, "jun": 6, "julho": 7, "jul": 7, "agosto": 8, "ago": 8, "setembro": 9, "set": 9,
    "outubro": 10, "out": 10, "novembro": 11, "nov": 11, "dezembro": 12, "dez": 12,
}  # fmt: skip
_MONTH_NAME = "|".join(sorted(_MONTHS, key=len, reverse=True))
_FULL_MONTH_NAME = "|".join(name for name in _MONTHS if len(name) > 3)
_WEEKDAY_WORDS = {
    0: "segunda|segundas|seg|sgunda|segnda|segund",
    1: "terca|tercas|tersa|tersas|trca",
    2: "quarta|quartas|qua|quart|qurta|quatra",
    3: "quinta|quintas|qui|quint",
    4: "sexta|sextas|sex|sesta|sexat|sxta",
    5: "sabado|sabados|sab|sabdo|sabad|sabadu",
    6: "domingo|domingos|dom|doming",
}
_DIGIT_WEEKDAY = {"2": 0, "3": 1, "4": 2, "5": 3, "6": 4}

# --- recognisers, in the order they run -----------------------------------------------------------------------------

_GREETING = _rx(r"\b(?:bom\sdia|boa\starde|boa\snoite|bom\sdias|boa\stardes|boas\snoites)\b")
_RELATIVE_TO_OFFER = _rx(r"\bmais\s(?:cedo|tarde)\b(?!\s(?:possivel|que))")
_EARLIEST = _rx(
    r"""\b(?:o\s)?(?:
        mais\s(?:cedo|rapido|breve)\spossivel|mais\sproximo
        |quanto\santes|assim\sque\s(?:possivel|der|puder)|logo\sque\s(?:possivel|der)
        |primeir[oa]\s(?:horario|vaga|data|dia)(?:\s(?:disponivel|livre|vago|vaga|que\stiver))?
        |proxim[oa]\s(?:horario|vaga)(?:\s(?:disponivel|livre|vago|vaga|que\stiver))?
        |qualquer\s(?:dia|horario|hora|data|um|uma)|tanto\sfaz|o\sque\stiver\sprimeiro
    )\b
    |\bo\smais\s(?:cedo|rapido|breve)\b  # "o mais cedo" without "possível"; a bare "mais cedo" is relative"""
)
_NOON = _rx(r"\bmeio\s?dia(?P<half>\se\smeia)?\b")
_MIDNIGHT = _rx(r"\bmeia\snoite\b")
_HOUR_WORDS_AFTER_PREP = _rx(
    rf"\b(?P<prep>as|a|das|da|pelas|umas|ate|apos|volta\sdas|entre|e|dia)\s(?P<word>{_HOUR_WORD})\b"
)
_HOUR_WORDS_BEFORE_QUALIFIER = _rx(
    rf"\b(?P<word>{_HOUR_WORD})(?=\s(?:da\s|de\s)(?:manha|tarde|noite|madrugada)|\shoras?\b|\se\smeia)"
)
_DAY_WORD = _rx(rf"\bdia\s(?P<word>{_NUMBER_WORD})\b")
_FIRST_OF = _rx(rf"\b(?:dia\sprimeiro|primeiro\s(?=de\s(?:{_MONTH_NAME})\b))")

_NUMERIC_DATE = _rx(r"(?<![\d:])(?P<d>\d{1,2})(?P<sep>[/.\-])(?P<m>\d{1,2})(?:(?P=sep)(?P<y>\d{4}|\d{2}))?(?![\d:])")
_NAMED_DATE = _rx(rf"\b(?:dia\s)?(?P<d>\d{{1,2}})\s(?:de\s)?(?P<month>{_MONTH_NAME})\b(?:\s(?:de\s)?(?P<y>\d{{4}}))?")
_DAY_OF_MONTH = _rx(r"\bdia\s(?P<d>\d{1,2})\b(?![:h/]|\s?(?:h|hs|horas?)\b)")
_IN_N = _rx(
    rf"""\b(?:daqui\s(?:a\s|uns\s|umas\s)?|em\s|dentro\sde\s|depois\sde\s)
        (?P<n>\d{{1,2}}|{_NUMBER_WORD})\s(?P<unit>dias?|semanas?|mes|meses)\b"""
)
_IN_HOURS = _rx(r"\b(?:daqui\s(?:a\s|uns\s|umas\s)?|em\s|dentro\sde\s)(?:\d{1,2}|meia)\s(?:horas?|minutos?|min)\b")
_DAY_AFTER_TOMORROW = _rx(rf"\bdepois\s(?:de\s|d\s)?{_AMANHA}\b")
_TOMORROW_OR_NEXT = _rx(rf"\b{_AMANHA}\s(?:ou|e)\sdepois\b(?:\s(?:de\s)?{_AMANHA}\b)?")
_TODAY = _rx(r"\b(?:hoje|hj|hje|hojee)\b(?:\smesmo\b)?")
_TOMORROW = _rx(rf"\b{_AMANHA}\b")

_NEXT_WEEK = _rx(r"\b(?:semana\s(?:que\svem|seguinte|proxima)|proxima\ssemana|outra\ssemana)\b")
_THIS_WEEK = _rx(r"\b(?:essa|esta|nessa|nesta|dessa|desta)\ssemana\b|\bsemana\satual\b|\bainda\snessa\ssemana\b")
_WEEKEND = _rx(
    r"""\b(?P<next>proximo\s|outro\s)?(?:fim|final)\s(?:de\s)?semana\b(?P<next2>\sque\svem|\sseguinte)?
        |\bfds\b"""
)
_MONTH_EDGE = _rx(
    r"""\b(?P<edge>inicio|comeco|fim|final)\s(?:do|deste|desse|de)\s
        (?:(?P<next>mes\sque\svem|proximo\smes|mes\sseguinte)|mes\b)"""
)
_NEXT_MONTH = _rx(r"\b(?:mes\sque\svem|proximo\smes|mes\sseguinte)\b")
_THIS_MONTH = _rx(r"\b(?:esse|este|nesse|neste|ainda\sesse|ainda\sneste)\smes\b")
_MONTH_ALONE = _rx(
    rf"""(?:\b(?P<edge>inicio|comeco|fim|final|meados)\s(?:de\s|do\smes\sde\s)
        |\b(?:em|pra|para|de|no\smes\sde|mes\sde|agora\sem|so\sem|ate)\s)(?P<month>{_FULL_MONTH_NAME})\b"""
)
_ONLY_MONTH = _rx(rf"^\s*(?P<month>{_FULL_MONTH_NAME})\s*$")

_WEEKDAY = _rx(
    rf"""(?P<pre>\b(?:toda|todas\sas|todo|todos\sos|as|aos|essa|esta|nessa|nesta|hoje)\s)?
        (?:\b(?P<digit>[2-6])a?\s?feira\b
          |\b(?P<name>{"|".join(_WEEKDAY_WORDS.values())})(?:\s?feiras?\b)?\b)"""
)

_SPECIAL_PARTS: list[tuple[re.Pattern[str], str | None, datetime.time | None, datetime.time | None]] = [
    (_rx(r"\b(?:depois|apos|pos)\s(?:do\s|o\s)?almoco\b"), AFTERNOON, datetime.time(13), None),
    (_rx(r"\bantes\sdo\salmoco\b"), MORNING, None, None),
    (
        _rx(r"\b(?:(?:no\s|na\s)?(?:horario|hora|intervalo|horinha)\s(?:de|do)\salmoco|no\salmoco)\b"),
        None,
        datetime.time(12),
        datetime.time(13),
    ),
    (_rx(r"\b(?:(?:no\s)?(?:fim|final)\s(?:da|de)\starde|tardinha|tardezinha)\b"), AFTERNOON, datetime.time(16), None),
    (_rx(r"\b(?:inicio|comeco)\s(?:da|de)\starde\b"), AFTERNOON, None, datetime.time(15)),
    (_rx(r"\b(?:fim|final)\s(?:da|de)\smanha\b"), MORNING, datetime.time(10), None),
    (
        _rx(r"\b(?:(?:inicio|comeco)\s(?:da|de)\smanha|bem\scedo|cedinho|primeira\shora)\b"),
        MORNING,
        None,
        datetime.time(9),
    ),
    (_rx(r"\b(?:fim|final)\sdo\sdia\b"), None, datetime.time(16), None),
    (
        _rx(r"\b(?:depois|apos|saindo)\s(?:do\s)?(?:trabalho|expediente|servico|aula|escola)\b"),
        None,
        datetime.time(18),
        None,
    ),
]


def _time_core(prefix: str) -> str:
    """A clock time: hour, optional minutes or "e meia", optional "h"/"horas", optional "da manhã/tarde/noite"."""
    return rf"""
        (?<![\d/:.])(?P<{prefix}h>\d{{1,2}})
        (?:\s?(?:h|hs|hr|hrs|horas?|:|\.)\s?(?P<{prefix}m>\d{{2}})(?!\d)
          |\s?(?P<{prefix}suffix>h|hs|hr|hrs|horas?)\b)?
        (?:\s?(?:h|hs|horas?\b)?\se\s(?P<{prefix}half>meia|quinze|trinta|\d{{2}}))?
        (?:\s?(?:h|hs|hr|hrs|horas?)\b)?
        (?:\s(?:da|de|pela|a|na)\s(?P<{prefix}q>manha|tarde|noite|madrugada))?
        (?![\d/])
    """


_TIME_PREFIX = r"as|a|ao|pelas|pela|umas|uma\sdas|por\svolta\sd[ae]s?|la\spelas|perto\sd[ae]s?|tipo|proximo\sd[ae]s"
_TIME = _rx(rf"(?:\b(?P<pre>{_TIME_PREFIX})\s)?{_time_core('')}")
_TIME_RANGE = _rx(rf"\b(?:entre|das|de|da)\s(?:as\s)?{_time_core('a')}\s(?:e|as|a|ate)\s(?:as\s)?{_time_core('b')}")
_BOUND = _rx(
    rf"""\b(?:
        (?P<after>depois\s(?:das|da|de|do|as)|depois|apos\s(?:as|a|o)|apos|a\spartir\s(?:das|da|de|do)
          |mais\starde\sque|passando\sd[ae]s?|so\sdepois\sd[ae]s?)
       |(?P<before>antes\s(?:das|da|de|do|as)|antes|ate\s(?:as|a|o)|ate|no\smaximo\s(?:ate\s)?(?:as|a)?
          |no\smais\stardar\s(?:as|a)?|nao\sdepois\sd[ae]s?)
    )\s{_time_core("")}"""
)
_MORNING = _rx(r"\b(?:manha|manhazinha|cedo|matutino|madrugada)\b")
_AFTERNOON = _rx(r"\b(?:tarde|vespertino)\b")
_EVENING = _rx(r"\b(?:noite|noitinha|noturno)\b")
_HALF_MINUTES = {"meia": 30, "quinze": 15, "trinta": 30}


@dataclass
class _Found:
    """Everything the recognisers understood, before it is resolved into a `When`."""

    days: list[datetime.date] = field(default_factory=list)
    ranges: list[tuple[datetime.date, datetime.date]] = field(default_factory=list)
    weekdays: set[int] = field(default_factory=set)
    weekdays_include_today: bool = False
    weekdays_plural: bool = False
    invalid_date: bool = False
    parts: set[str] = field(default_factory=set)
    times: list[tuple[int, int, str | None]] = field(default_factory=list)
    lower: list[tuple[int, int, str | None]] = field(default_factory=list)
    upper: list[tuple[int, int, str | None]] = field(default_factory=list)
    fixed_lower: datetime.time | None = None
    fixed_upper: datetime.time | None = None
    earliest: bool = False

    def said_anything(self) -> bool:
        return bool(
            self.days
            or self.ranges
            or self.weekdays
            or self.parts
            or self.times
            or self.lower
            or self.upper
            or self.fixed_lower
            or self.fixed_upper
            or self.earliest
        )


# --- public entry point -------------------------------------------------------------------------------------------


def parse_when(text: str, *, now: datetime.datetime) -> When | None:
    """The days and hours `text` accepts, read on `now` (aware, clinic-local); None when it says nothing about time."""
    try:
        return _parse(text, now.date())
    except Exception:  # a parser bug must cost one "didn't understand", never a turn
        logger.exception("nlu.when.parse_failed")
        return None


def _parse(text: str, today: datetime.date) -> When | None:
    scan = _Scan(_prepare(normalize(text or "")))
    found = _Found()
    scan.take(_GREETING)
    found.earliest = bool(scan.take(_EARLIEST))
    scan.take(_RELATIVE_TO_OFFER)
    _read_days(scan, found, today)
    _read_hours(scan, found)
    if not found.said_anything():
        return None
    return _resolve(found, today)


def _prepare(text: str) -> str:
    """Spoken numbers become digits where they clearly are hours or days ("às duas" → "às 2", "meio-dia" → "12h")."""
    text = _NOON.sub(lambda m: "12h30" if m.group("half") else "12h", text)
    text = _MIDNIGHT.sub("0h", text)
    text = _FIRST_OF.sub(lambda m: "dia 1" if m.group(0).startswith("dia") else "1 ", text)
    text = _DAY_WORD.sub(lambda m: f"dia {_NUMBER_WORDS[m.group('word')]}", text)
    text = _HOUR_WORDS_AFTER_PREP.sub(lambda m: f"{m.group('prep')} {_NUMBER_WORDS[m.group('word')]}", text)
    return _HOUR_WORDS_BEFORE_QUALIFIER.sub(lambda m: str(_NUMBER_WORDS[m.group("word")]), text)


# --- days ---------------------------------------------------------------------------------------------------------


def _read_days(scan: _Scan, found: _Found, today: datetime.date) -> None:
    for match in scan.take(_NUMERIC_DATE, accept=_plausible_numeric_date):
        _add_day(found, _numeric_date(match, today))
    for match in scan.take(_NAMED_DATE):
        year = int(match.group("y")) if match.group("y") else None
        _add_day(found, _day_month(int(match.group("d")), _MONTHS[match.group("month")], year, today))
    for match in scan.take(_DAY_OF_MONTH):
        _add_day(found, _day_of_month(int(match.group("d")), today))
    if scan.take(_IN_HOURS):
        found.days.append(today)
    for match in scan.take(_IN_N):
        _read_in_n(match, found, today)
    for _ in scan.take(_DAY_AFTER_TOMORROW):
        found.days.append(today + datetime.timedelta(days=2))
    for _ in scan.take(_TOMORROW_OR_NEXT):
        found.days += [today + datetime.timedelta(days=1), today + datetime.timedelta(days=2)]
    if scan.take(_TODAY):
        found.days.append(today)
    if scan.take(_TOMORROW):
        found.days.append(today + datetime.timedelta(days=1))
    _read_weeks_and_months(scan, found, today)
    for match in scan.take(_WEEKDAY, accept=_is_weekday):
        _read_weekday(match, found)


def _add_day(found: _Found, day: datetime.date | None) -> None:
    if day is None:
        found.invalid_date = True
    else:
        found.days.append(day)


def _plausible_numeric_date(match: re.Match[str]) -> bool:
    # "9.30" and "9-12" are as likely times or ranges as dates: only a real date is taken with those separators.
    if match.group("sep") == "/":
        return True
    return 1 <= int(match.group("d")) <= 31 and 1 <= int(match.group("m")) <= 12


def _numeric_date(match: re.Match[str], today: datetime.date) -> datetime.date | None:
    year_text = match.group("y")
    year = None
    if year_text:
        year = int(year_text) + (2000 if len(year_text) == 2 else 0)
    return _day_month(int(match.group("d")), int(match.group("m")), year, today)


def _safe_date(year: int, month: int, day: int) -> datetime.date | None:
    try:
        return datetime.date(year, month, day)
    except ValueError:
        return None


def _day_month(day: int, month: int, year: int | None, today: datetime.date) -> datetime.date | None:
    if year is not None:
        return _safe_date(year, month, day)
    this_year = _safe_date(today.year, month, day)
    if this_year is not None and this_year >= today:
        return this_year
    # Passed already (or 29/02 in a common year): the next year that has it.
    for offset in range(1, 9):
        candidate = _safe_date(today.year + offset, month, day)
        if candidate is not None:
            return candidate
    return None


def _day_of_month(day: int, today: datetime.date) -> datetime.date | None:
    if not 1 <= day <= 31:
        return None
    year, month = today.year, today.month
    for _ in range(13):
        candidate = _safe_date(year, month, day)
        if candidate is not None and candidate >= today:
            return candidate
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


def _read_in_n(match: re.Match[str], found: _Found, today: datetime.date) -> None:
    raw = match.group("n")
    count = int(raw) if raw.isdigit() else _NUMBER_WORDS[raw]
    unit = match.group("unit")
    if unit.startswith("dia"):
        found.days.append(today + datetime.timedelta(days=count))
    elif unit.startswith("semana"):
        found.ranges.append(_work_week(today + datetime.timedelta(days=7 * count)))
    else:
        found.ranges.append(_work_week(_add_months(today, count)))


def _add_months(day: datetime.date, count: int) -> datetime.date:
    month_index = day.month - 1 + count
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return datetime.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _week_sunday(day: datetime.date) -> datetime.date:
    """The Sunday that starts `day`'s week (Brazilian calendars start the week on Sunday)."""
    return day - datetime.timedelta(days=(day.weekday() + 1) % 7)


def _work_week(day: datetime.date) -> tuple[datetime.date, datetime.date]:
    """Monday to Saturday of the (Sunday-started) week holding `day`."""
    sunday = _week_sunday(day)
    return sunday + datetime.timedelta(days=1), sunday + datetime.timedelta(days=6)


def _month_span(year: int, month: int) -> tuple[datetime.date, datetime.date]:
    return datetime.date(year, month, 1), datetime.date(year, month, calendar.monthrange(year, month)[1])


def _read_weeks_and_months(scan: _Scan, found: _Found, today: datetime.date) -> None:
    sunday = _week_sunday(today)
    # The weekend first: "fim de semana que vem" is not "semana que vem".
    for match in scan.take(_WEEKEND):
        found.ranges.append(_weekend(today, following=bool(match.group("next") or match.group("next2"))))
    if scan.take(_NEXT_WEEK):
        found.ranges.append(_work_week(sunday + datetime.timedelta(days=7)))
    if scan.take(_THIS_WEEK):
        found.ranges.append((today, sunday + datetime.timedelta(days=6)))
    for match in scan.take(_MONTH_EDGE):
        found.ranges.append(_month_edge(today, match.group("edge"), next_month=bool(match.group("next"))))
    if scan.take(_NEXT_MONTH):
        found.ranges.append(_month_span(*_next_month(today)))
    if scan.take(_THIS_MONTH):
        found.ranges.append((today, _month_span(today.year, today.month)[1]))
    for match in scan.take(_MONTH_ALONE) + scan.take(_ONLY_MONTH):
        edge = match.groupdict().get("edge")
        found.ranges.append(_named_month(today, _MONTHS[match.group("month")], edge))


def _next_month(today: datetime.date) -> tuple[int, int]:
    return (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)


def _weekend(today: datetime.date, *, following: bool) -> tuple[datetime.date, datetime.date]:
    sunday = _week_sunday(today)
    saturday = sunday + datetime.timedelta(days=6)
    if today.weekday() == 6:  # Sunday: today is the weekend's last day
        return (today + datetime.timedelta(days=6), today + datetime.timedelta(days=7)) if following else (today, today)
    if following and today.weekday() == 5:
        saturday += datetime.timedelta(days=7)
    return saturday, saturday + datetime.timedelta(days=1)


def _month_edge(today: datetime.date, edge: str, *, next_month: bool) -> tuple[datetime.date, datetime.date]:
    year, month = _next_month(today) if next_month else (today.year, today.month)
    first, last = _month_span(year, month)
    if edge in ("inicio", "comeco"):
        start, end = first, first + datetime.timedelta(days=9)
    else:
        start, end = last - datetime.timedelta(days=9 if next_month else 6), last
    return max(start, today), max(end, today)


def _named_month(today: datetime.date, month: int, edge: str | None) -> tuple[datetime.date, datetime.date]:
    year = today.year if month >= today.month else today.year + 1
    first, last = _month_span(year, month)
    if edge in ("inicio", "comeco"):
        first, last = first, first + datetime.timedelta(days=9)
    elif edge in ("fim", "final"):
        first = last - datetime.timedelta(days=9)
    elif edge == "meados":
        first, last = first + datetime.timedelta(days=9), first + datetime.timedelta(days=19)
    return max(first, today), max(last, today)


def _is_weekday(match: re.Match[str]) -> bool:
    # "quarta"/"quinta"/"sexta" are also ordinals ("a quarta opção"): not a weekday when an option word follows.
    following = match.string[match.end() : match.end() + 12]
    return re.match(r"\s(?:opcao|op|horario|vez)\b", following) is None


def _read_weekday(match: re.Match[str], found: _Found) -> None:
    if match.group("digit"):
        weekday = _DIGIT_WEEKDAY[match.group("digit")]
    else:
        name = match.group("name")
        weekday = next(day for day, words in _WEEKDAY_WORDS.items() if name in words.split("|"))
        pre = (match.group("pre") or "").strip()
        plural_name = name.endswith("s") and name not in ("sex", "seg", "dom", "sab")
        if plural_name or pre.startswith(("toda", "todo", "aos")):
            found.weekdays_plural = True
    if (match.group("pre") or "").strip() in ("essa", "esta", "nessa", "nesta", "hoje"):
        found.weekdays_include_today = True
    found.weekdays.add(weekday)


# --- hours --------------------------------------------------------------------------------------------------------


def _read_hours(scan: _Scan, found: _Found) -> None:
    for pattern, part, lower, upper in _SPECIAL_PARTS:
        if scan.take(pattern):
            if part:
                found.parts.add(part)
            found.fixed_lower = lower or found.fixed_lower
            found.fixed_upper = upper or found.fixed_upper
    for match in scan.take(_TIME_RANGE):
        second = _raw_time(match, "b")
        first = _raw_time(match, "a")
        if first[2] is None and second[2] is not None:
            first = (first[0], first[1], second[2])  # "de 2 a 4 da tarde": the qualifier covers both
        found.lower.append(first)
        found.upper.append(second)
    for match in scan.take(_BOUND):
        (found.lower if match.group("after") else found.upper).append(_raw_time(match, ""))
    for match in scan.take(_TIME, accept=_has_time_marker):
        found.times.append(_raw_time(match, ""))
    for raw in found.times + found.lower + found.upper:
        if raw[2] in ("manha", "madrugada"):
            found.parts.add(MORNING)
        elif raw[2] == "tarde":
            found.parts.add(AFTERNOON)
        elif raw[2] == "noite":
            found.parts.add(EVENING)
    for pattern, part in ((_MORNING, MORNING), (_AFTERNOON, AFTERNOON), (_EVENING, EVENING)):
        if scan.take(pattern):
            found.parts.add(part)


def _has_time_marker(match: re.Match[str]) -> bool:
    return any(match.group(name) for name in ("pre", "m", "suffix", "half", "q"))


def _raw_time(match: re.Match[str], prefix: str) -> tuple[int, int, str | None]:
    """(hour as said, minutes, qualifier): the hour is placed in the day later, once the part of day is known."""
    hour = int(match.group(f"{prefix}h"))
    minutes_text = match.group(f"{prefix}m")
    half = match.group(f"{prefix}half")
    minutes = int(minutes_text) if minutes_text else 0
    if half:
        minutes = _HALF_MINUTES.get(half) or int(half)
    return hour, minutes, match.group(f"{prefix}q")


def _clock_time(raw: tuple[int, int, str | None], part: str | None) -> datetime.time | None:
    """Place a spoken hour in the day (the ambiguity rules in the module docstring); None when it is no time."""
    hour, minutes, qualifier = raw
    if not 0 <= minutes <= 59 or not 0 <= hour <= 24:
        return None
    if hour == 24:
        hour = 0
    if qualifier in ("tarde", "noite"):
        if hour == 12 and qualifier == "noite":
            hour = 0
        elif hour < 12:
            hour += 12
    elif qualifier in ("manha", "madrugada"):
        pass  # as said: "às 3 da manhã" is 03:00
    elif part in (AFTERNOON, EVENING):
        hour += 12 if 1 <= hour < 12 else 0
    elif part is None and 1 <= hour <= 6:
        hour += 12  # "às 3": clinics are open at 3 pm, not at 3 am
    return datetime.time(hour, minutes)


# --- putting it together ------------------------------------------------------------------------------------------


def _resolve(found: _Found, today: datetime.date) -> When | None:
    part = next(iter(found.parts)) if len(found.parts) == 1 else None
    times = [t for t in (_clock_time(raw, part) for raw in found.times) if t is not None]
    lowers = [t for t in (_clock_time(raw, part) for raw in found.lower) if t is not None]
    uppers = [t for t in (_clock_time(raw, part) for raw in found.upper) if t is not None]
    not_before = max([*lowers, *([found.fixed_lower] if found.fixed_lower else [])], default=None)
    not_after = min([*uppers, *([found.fixed_upper] if found.fixed_upper else [])], default=None)
    days = _resolve_days(found, today)
    if days is None and not (times or not_before or not_after or found.parts or found.earliest or found.weekdays):
        return None  # only an impossible date ("31/02"), or numbers that were no time: nothing usable
    when = When(
        start_date=today,
        end_date=today + datetime.timedelta(days=DEFAULT_HORIZON_DAYS),
        time=times[0] if len(set(times)) == 1 else None,
        part_of_day=part,
        not_before=not_before,
        not_after=not_after,
        earliest=found.earliest,
        date_given=False,
        reference=today,
    )
    if days is not None:
        start, end, weekdays = days
        when = replace(when, start_date=start, end_date=end, weekdays=weekdays, date_given=True)
    if when == When(when.start_date, when.end_date, date_given=False) and not found.parts:
        return None  # e.g. "às 10 ou às 11": several times and nothing else
    return when


def _resolve_days(found: _Found, today: datetime.date) -> tuple[datetime.date, datetime.date, frozenset | None] | None:
    if found.days:
        return min(found.days), max(found.days), None
    weekdays = frozenset(found.weekdays) or None
    if found.ranges:
        start = max(r[0] for r in found.ranges)
        end = min(r[1] for r in found.ranges)
        if start > end:  # "semana que vem, mês que vem": contradictory; take the first said
            start, end = found.ranges[0]
        if weekdays is None:
            return start, end, None
        matching = [d for d in _days_between(start, end) if d.weekday() in weekdays]
        if matching:
            return matching[0], matching[-1], weekdays if matching[0] != matching[-1] else None
    if weekdays is None:
        return None
    offset = 0 if found.weekdays_include_today else 1
    nexts = [today + datetime.timedelta(days=offset + (day - today.weekday() - offset) % 7) for day in weekdays]
    start = min(nexts)
    if found.weekdays_plural:
        return start, start + datetime.timedelta(days=7 * PLURAL_WEEKDAY_WEEKS - 1), weekdays
    end = max(nexts)
    return start, end, weekdays if start != end else None


def _days_between(start: datetime.date, end: datetime.date) -> list[datetime.date]:
    return [start + datetime.timedelta(days=offset) for offset in range((end - start).days + 1)]
