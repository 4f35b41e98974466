"""Understanding words in the rule engine's flows: services, professionals, people, names (typos tolerated)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from difflib import SequenceMatcher

from conversations.engines.context import ServiceInfo, TurnContext
from conversations.nlu.answers import parse_yes_no
from conversations.nlu.text import normalize

_STOP = frozenset({"de", "da", "do", "das", "dos", "e", "com", "para", "pra", "a", "o", "em", "no", "na", "um", "uma"})
_TITLES = frozenset({"dr", "dra", "doutor", "doutora", "prof", "profa", "professor", "professora"})
_ANY_PROFESSIONAL = re.compile(r"\b(tanto faz|qualquer|quem tiver|quem estiver|nao importa|indiferente)\b")
_NAMED_PROFESSIONAL = re.compile(r"\b(?:dr|dra|doutor|doutora|com)\s+(?:o\s+|a\s+)?([a-z]+)(?:\s+([a-z]+))?")
_ME = re.compile(r"\b(pra mim|para mim|eu mesm[oa]|e pra mim|pra eu|para eu|sou eu)\b")
_CHILD = frozenset({"filho", "filha", "filhos", "filhas", "dependente", "crianca", "bebe", "neto", "neta", "menino"})
ABORT = re.compile(r"\b(deixa pra la|deixa para la|esquece|desisto|nao quero mais|cancela tudo|para tudo)\b")
_DIGITS = re.compile(r"\d")
_NAME_PREFIX = re.compile(
    r"^\s*(?:(?:o\s+)?meu\s+nome\s+(?:completo\s+)?(?:é|e)\s*:?\s*|me\s+chamo\s+|eu\s+sou\s+|sou\s+(?:o\s+|a\s+)?|é\s+)",
    re.IGNORECASE,
)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", normalize(text))


def similar(word: str, other: str) -> bool:
    """Equal, or a typo apart for words long enough that a typo cannot turn them into another word."""
    if word == other:
        return True
    if min(len(word), len(other)) < 5:
        return False
    return SequenceMatcher(None, word, other).ratio() >= 0.8


# Words that say "an appointment", not which one: "queria marcar uma consulta" names no service, even though
# "Consulta dermatológica" has the word. They count only for a service whose whole name is generic ("Consulta").
_GENERIC = frozenset({"consulta", "consultas", "atendimento", "procedimento", "exame", "exames", "sessao", "horario"})


def match_services(text: str, services: Iterable[ServiceInfo]) -> list[ServiceInfo]:
    """The services the message names best ("limpesa" → Limpeza); several when it is ambiguous; [] when none."""
    tokens = words(text)
    scored: list[tuple[float, ServiceInfo]] = []
    for service in services:
        name = [w for w in words(service.name) if w not in _STOP]
        name = [w for w in name if w not in _GENERIC] or name
        hits = sum(1 for part in name if any(similar(part, token) for token in tokens))
        if hits:
            # More of the name matched wins; between equal counts, the shorter name (the more exact match).
            scored.append((hits + 0.5 * hits / len(name), service))
    if not scored:
        return []
    best = max(score for score, _s in scored)
    return [service for score, service in scored if score == best]


def match_professional(text: str, ctx: TurnContext, among: Iterable[int] | None = None) -> int | str | None:
    """A professional the patient names ("com a Dra. Ana", "dr souza"), "any" for "tanto faz", else None."""
    norm = normalize(text)
    if _ANY_PROFESSIONAL.search(norm):
        return "any"
    allowed = set(among) if among is not None else None
    named = [w for m in _NAMED_PROFESSIONAL.finditer(norm) for w in m.groups() if w and w not in _STOP]
    if not named:
        return None
    found = []
    for pro in ctx.clinic.professionals:
        if allowed is not None and pro.id not in allowed:
            continue
        parts = [w for w in words(pro.name) if w not in _TITLES and len(w) >= 3]
        if any(similar(part, word) for part in parts for word in named):
            found.append(pro.id)
    return found[0] if len(found) == 1 else None


def match_person(text: str, ctx: TurnContext) -> int | None:
    """Whom the patient books for, when they say it: a dependent's name, "meu filho", "pra mim"; else None."""
    dependents = ctx.patient.dependents
    if not dependents:
        return None
    norm = normalize(text)
    tokens = set(words(text))
    own = normalize(ctx.patient.first_name)
    for person in dependents:
        first = normalize(person.first_name)
        if first and first != own and first in tokens:
            return person.id
    if tokens & _CHILD and len(dependents) == 1:
        return dependents[0].id
    if _ME.search(norm):
        return ctx.patient.id
    return None


def name_from(text: str) -> str:
    """The full name in "meu nome é Maria da Silva" / "Maria da Silva."; "" when it does not look like a name."""
    name = _NAME_PREFIX.sub("", text.strip()).strip(" .,!;:-")
    name = re.sub(r"\s+", " ", name)
    looks_like_a_name = (
        2 <= len(name) <= 160
        and not _DIGITS.search(name)
        and len(name.split()) <= 8
        and all(ch.isalpha() or ch in " '-." for ch in name)
        and parse_yes_no(name) is None
    )
    return name if looks_like_a_name else ""
