"""Guardrails: what a turn checks before any engine runs, and answers with a fixed message no engine can overrule.

`check(text, clinic_name=..., clinic_phone=...)` reads the patient's new text and returns a `Guard` (what was detected,
the fixed pt-BR reply, whether to alert staff and whether the assistant goes quiet) or None. When several things match,
the most serious wins: SUICIDE > EMERGENCY > HUMAN > OPT_OUT > ABUSE > MEDICAL_ADVICE.

Detection is plain regular expressions over a normalised text (accents stripped, lowercase, repeated letters squeezed,
punctuation to spaces, common WhatsApp abbreviations expanded, a few long red-flag words corrected for one typo), so
it is fast, deterministic and testable phrase by phrase. Decisions, each with its tests:

- EMERGENCY favours safety: a false alarm costs one message and a look from staff; a miss can cost a life. It covers
  only the life-threatening (chest pain, breathing, fainting, heavy bleeding, stroke signs, seizure, severe allergy,
  spreading swelling of the neck or throat, poisoning). Dental urgencies that are not life-threatening (a knocked-out
  or broken tooth, toothache, a swollen face) are left to the engine, which offers the earliest appointment: SAMU is
  not the right answer to them. Heavy bleeding after an extraction *is* flagged.
- A red flag is discounted only when it is explicitly negated right before it ("não estou com falta de ar", "sem dor
  no peito", "nenhuma dor no peito") or when its clause says it is history ("minha mãe teve AVC ano passado", "há 3
  anos", "histórico de", "sequela de", "desde pequena", "às vezes") and says nothing of now ("agora", "hoje", "de
  novo"). Anything else — a question, a third person, "acho que", "teve um AVC" with no time — is flagged. Vague
  malaise ("estou passando mal") is not a red flag: the engine or staff ask more.
- SUICIDE is never discounted by history or negation, except "não quero morrer" (fear, not intent). Figures of speech
  that are unmistakable ("quero morrer de rir", "essa dor vai me matar") are not matched.
- HUMAN is a request: "você é robô?" is a question the engine answers, not a request; "não precisa me ligar" is not.
- OPT_OUT is strict: a whole-message command ("parar", "sair", "stop") or unmistakable phrasing ("não quero mais
  receber mensagens"). "Cancelar" is about an appointment, "vou sair às 18h" and "parar de fumar" are not opt-outs.
- ABUSE needs a target (the assistant, the clinic, "você", "seu/sua") or a phrase that is always aimed ("vai tomar
  no…"); a patient venting ("tá doendo pra caramba", "que merda de dor") is not abuse.
- MEDICAL_ADVICE: a medicine or dose, a diagnosis, an exam to interpret, "isso é normal?" about a symptom. Not a
  handoff: the reply offers an appointment and the conversation goes on.
"""

from __future__ import annotations

import enum
import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

logger = logging.getLogger(__name__)

# WhatsApp caps a message at 4,096 characters; a burst of several is still well under this. Bounding the input bounds
# the work, whatever arrives.
MAX_CHARS = 20_000


class GuardKind(enum.StrEnum):
    EMERGENCY = "emergency"  # medical red flag → SAMU 192
    SUICIDE = "suicide"  # suicidal talk → CVV 188 (and SAMU 192 if in immediate danger)
    HUMAN = "human"  # asks for a person
    OPT_OUT = "opt_out"  # does not want automated messages any more
    ABUSE = "abuse"  # insults / harassment aimed at the clinic or assistant
    MEDICAL_ADVICE = "medical_advice"  # asks for a diagnosis, a medicine/dose, or to interpret an exam


@dataclass(frozen=True)
class Guard:
    kind: GuardKind
    reply: str  # the fixed pt-BR message to send (WhatsApp formatting), already filled for the clinic
    alert_staff: bool  # urgent alert (EMERGENCY, SUICIDE), or simply hand to staff (HUMAN, ABUSE)
    stop_assistant: bool  # the assistant goes quiet in this conversation (handoff), e.g. EMERGENCY, SUICIDE, HUMAN
    summary: str  # one short line for staff: what was detected (never the message text)


PRECEDENCE: tuple[GuardKind, ...] = (
    GuardKind.SUICIDE,
    GuardKind.EMERGENCY,
    GuardKind.HUMAN,
    GuardKind.OPT_OUT,
    GuardKind.ABUSE,
    GuardKind.MEDICAL_ADVICE,
)

# kind → (alert_staff, stop_assistant). Opting out silences the assistant (no AI, no reminders) but needs no alert:
# staff may still answer. Medical advice is answered with an offer to book, and the conversation goes on.
_FLAGS: dict[GuardKind, tuple[bool, bool]] = {
    GuardKind.SUICIDE: (True, True),
    GuardKind.EMERGENCY: (True, True),
    GuardKind.HUMAN: (True, True),
    GuardKind.OPT_OUT: (False, True),
    GuardKind.ABUSE: (True, True),
    GuardKind.MEDICAL_ADVICE: (False, False),
}


# ---------------------------------------------------------------------------------------------------------------------
# Normalising
# ---------------------------------------------------------------------------------------------------------------------

_REPEATS = re.compile(r"([a-z])\1+")
# In a pattern's source a letter after a backslash is an escape (\b, \s, \w): never squeeze it into the next letter.
_PATTERN_REPEATS = re.compile(r"(?<!\\)([a-z])\1+")
_NOT_WORD = re.compile(r"[^a-z0-9?]+")
# A full stop ends a clause only before a space or the end, so "A.V.C." stays one word; same for "18:30".
_CLAUSE_BREAKS = re.compile(r"[!;\n\r]+|[.:]+(?=\s|$)|\s[-–—]\s")


def _fold(text: str) -> str:
    """Lowercase without accents: 'Não consigo RESPIRAR' → 'nao consigo respirar'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _squeeze(word: str) -> str:
    return _REPEATS.sub(r"\1", word)


# Abbreviations and spellings of WhatsApp Portuguese, written squeezed (as they are looked up after squeezing).
# Single letters ("n", "q", "p", "c") are left alone: they are ambiguous, so the patterns spell them out.
_ABBREVIATIONS: dict[str, str] = {
    "vc": "voce",
    "vcs": "voces",
    "ce": "voce",
    "pq": "porque",
    "tb": "tambem",
    "tbm": "tambem",
    "mt": "muito",
    "mto": "muito",
    "mta": "muita",
    "msg": "mensagem",
    "msgs": "mensagens",
    "mensages": "mensagens",
    "hj": "hoje",
    "td": "tudo",
    "ngm": "ninguem",
    "alg": "alguem",
    "algm": "alguem",
    "to": "estou",
    "tou": "estou",
    "ta": "esta",
    "tava": "estava",
    "tamo": "estamos",
    "naum": "nao",
    "nau": "nao",
    "nn": "nao",
    "oq": "o que",
    "oque": "o que",
    "q": "que",
    "dps": "depois",
    "qdo": "quando",
    "qnd": "quando",
    "eh": "e",
    "cmg": "comigo",
    "pfv": "por favor",
    "pf": "por favor",
    "pls": "por favor",
    "porfavor": "por favor",
    "remedi": "remedio",
    "rmd": "remedio",
    "humanu": "humano",
    "atendenti": "atendente",
}

# Long, distinctive red-flag words: a token one typo away (a letter missing, extra, wrong or two swapped) is read as
# the word. Short words are left out on purpose: too many real words sit one letter away from them.
_TYPO_TARGETS: frozenset[str] = frozenset(
    _squeeze(w)
    for w in (
        "respirar",
        "respirando",
        "respiracao",
        "consigo",
        "convulsao",
        "convulsionando",
        "convulsionou",
        "desmaio",
        "desmaiou",
        "desmaiei",
        "desmaiando",
        "desmaiada",
        "desmaiado",
        "hemorragia",
        "suicidio",
        "suicidar",
        "sangrando",
        "sangramento",
        "consciencia",
        "inconsciente",
        "desacordado",
        "desacordada",
        "epileptico",
        "epiletico",
        "anafilatico",
        "infartando",
        "atendente",
        "recepcionista",
        "descadastrar",
    )
)
# Real words one letter away from a target, which must keep their own meaning.
_REAL_WORDS: frozenset[str] = frozenset(
    {"conseguiu", "consegue", "consiga", "contigo", "respirou", "respirei", "atendentes"}
)


def _one_edit_apart(a: str, b: str) -> bool:
    """True if a and b differ by one insertion, deletion, substitution or swap of neighbours (and are not equal)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diffs) == 1:
            return True
        return (
            len(diffs) == 2 and diffs[1] == diffs[0] + 1 and a[diffs[0]] == b[diffs[1]] and a[diffs[1]] == b[diffs[0]]
        )
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return short[i:] == long[i + 1 :]


def _correct(token: str) -> str:
    if len(token) < 7 or len(token) > 20 or token in _TYPO_TARGETS or token in _REAL_WORDS:
        return token
    for target in _TYPO_TARGETS:
        if target[0] == token[0] and _one_edit_apart(token, target):
            return target
    return token


def normalize(text: str) -> str:
    """The text as the patterns read it: 'Ñ tô conseguindo RESPIRAAAR!!' → 'nao estou conseguindo respirar'.

    '?' is kept as a word of its own (a question matters for some rules); other punctuation becomes a space.
    """
    folded = _NOT_WORD.sub(" ", _fold(text).replace("?", " ? "))
    words: list[str] = []
    for raw in folded.split():
        word = _squeeze(raw)
        word = _ABBREVIATIONS.get(word, word)
        words.extend(_correct(w) for w in word.split())
    return " ".join(words)


def _clauses(text: str) -> list[str]:
    """Normalised clauses: history and negation are judged within a clause, never across a full stop or a comma."""
    out: list[str] = []
    for sentence in _CLAUSE_BREAKS.split(text):
        for part in sentence.split(","):
            clause = normalize(part)
            if clause:
                out.append(clause)
    return out


def _aux(source: str) -> re.Pattern[str]:
    """A helper pattern over normalised text, spelt as it is read (double letters squeezed, accents dropped)."""
    return re.compile(_PATTERN_REPEATS.sub(r"\1", _fold(source)))


def _rx(*alternatives: str) -> re.Pattern[str]:
    """A pattern over normalised text, written readably (accents allowed, double letters allowed) and squeezed."""
    source = "|".join(alternatives)
    source = _PATTERN_REPEATS.sub(r"\1", _fold(source))
    return re.compile(rf"\b(?:{source})(?![a-z0-9])")


# ---------------------------------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    kind: GuardKind
    label: str | Promise  # for staff: what was detected
    pattern: re.Pattern[str]
    negatable: bool = False  # a red flag explicitly negated or told as history does not count


NEG = r"(?:nao|n|nem|nunca)"
FOR = r"(?:para|pra|pro|p)"
ARTICLE = r"(?:o|a|os|as|um|uma)"
IN = r"(?:no|na|nu|n|do|da|em|em meu|em minha|no meu|na minha|meu|minha|o|a|de)"
RELATIVE = (
    r"(?:ele|ela|eu|o bebe|a bebe|a crianca|o paciente|a paciente|do nada|de repente|simplesmente|"
    r"(?:meu|o) (?:pai|filho|marido|esposo|avo|irmao|namorado|tio|sogro|bebe|neto|amigo|vizinho|menino)|"
    r"(?:minha|a) (?:mae|filha|esposa|mulher|avo|irma|namorada|tia|sogra|bebe|neta|amiga|vizinha|menina))"
)
DRUGS = (
    r"(?:dipirona|paracetamol|ibuprofeno|nimesulida|amoxicilina|amoxilina|azitromicina|cefalexina|clavulanato|"
    r"tylenol|novalgina|dorflex|buscopan|torsilax|cetoprofeno|diclofenaco|cataflam|cataflan|voltaren|neosaldina|"
    r"advil|aspirina|omeprazol|dexametasona|prednisona|prednisolona|clonazepam|rivotril|diazepam|loratadina|"
    r"benzetacil|penicilina|metronidazol|clindamicina|losartana|insulina|metformina|anticoncepcional|"
    r"codeina|tramadol|tramal|morfina|ozempic|sertralina|fluoxetina|escitalopram|ivermectina|dramin|plasil|"
    r"luftal|ciprofloxacino|nistatina|aciclovir|clorexidina|periogard|antibiotico|antibioticos|analgesico|"
    r"anti inflamatorio|antiinflamatorio|antialergico|relaxante muscular|calmante)"
)
MEDICINE = (
    rf"(?:{DRUGS}|remedio|remedios|medicamento|medicamentos|medicacao|comprimido|comprimidos|capsula|gotas|xarope"
    r"|pomada)"
)

_EMERGENCY_RULES: list[tuple[str | Promise, list[str]]] = [
    (
        _("Emergency red flag: chest pain"),
        [
            rf"dor(?:es)? (?:muito |bem )?(?:forte |intensa |aguda )?{IN} (?:peit|pet|piet)[oua]s?",
            r"doi (?:o |meu |no |muito o )?peito",
            r"dor (?:no|na|nos|nas) \w+ e (?:no|n|nu) peito",
            r"dor(?:es)? (?:forte |intensa )?(?:no|do) (?:coracao|torax)",
            rf"(?:aperto|pressao|pontada|peso|queimacao forte) {IN} peit[oua]",
            r"peit[oua] (?:esta |estou )?(?:doendo|doi|doeu|doe|dolorido|apertado|apertando|pesado|queimando)",
            r"dor (?:forte )?(?:no|do) braco esquerdo",
            r"infart\w*|enfart\w*|ataque (?:cardiaco|do coracao)|parada (?:cardiaca|cardio\w*)",
        ],
    ),
    (
        _("Emergency red flag: shortness of breath"),
        [
            r"(?:falta|farta|fauta|flta) (?:de |d )?ar(?! condicionad)",
            r"faltando (?:o )?ar(?! condicionad)",
            r"sem ar(?! condicionad)",
            rf"{NEG} (?:estou |esta |estava )?(?:consigo|consegue|conseguia|conseguindo|consegui) (?:mais )?respirar"
            r"(?! (?:pelo|pela) nariz)",
            r"respirando (?:mal|com dificuldade|muito mal)|respirar mal",
            rf"dificuldade (?:de |{FOR} |em |pa )?respirar",
            r"(?:nao|n) (?:esta |estou )?respira(?:ndo)?|parou de respirar",
            r"sufocando|sufocad[oa]|engasgad[oa]|engasgou|engasguei",
            r"crise de asma|ar nao entra|ficou rox[oa]|(?:labios?|boca|rosto) rox[oa]s?",
        ],
    ),
    (
        _("Emergency red flag: fainting or loss of consciousness"),
        [
            r"desmai\w*",
            r"perd(?:eu|i|endo) (?:a )?(?:consciencia|os sentidos)",
            r"inconsciente|desacordad[oa]",
            r"(?:nao|n) (?:esta |estava )?(?:acorda|acordando)",
            rf"{RELATIVE} (?:\w+ )?apag(?:ou|uei)(?! (?:a|o|as|os|um|uma|minha|meu|sua|seu|tudo|isso|essa|esse|esta"
            r"|este|mensagem|mensagens|foto|conversa|agendamento)\b)",
        ],
    ),
    (
        _("Emergency red flag: heavy bleeding"),
        [
            r"sangrando (?:muito|demais|bastante|sem parar|horrores|litros)",
            r"sangramento (?:muito )?(?:forte|intenso|grande|abundante|que nao para|sem parar|nao para)",
            r"hemorragia",
            r"(?:nao|n) (?:para|parou|pára|esta parando|estanca) (?:de )?sangr\w*",
            r"(?:muito|muita|bastante) sangue|perdendo (?:muito )?sangue|poca de sangue",
            r"(?:jorrando|esguichando) sangue|sangue (?:\w+ ){0,2}(?:nao|n) (?:para|parou|estanca)",
            r"(?:vomit|tossi|cuspi)\w* sangue",
        ],
    ),
    (
        _("Emergency red flag: signs of a stroke"),
        [
            r"(?:boca|cara) (?:\w+ ){0,4}tort[oa]|rosto (?:\w+ ){0,4}(?:caido|torto|paralisado)",
            r"(?:metade|lado) do rosto (?:caid[oa]|paralisad[oa]|dormente)",
            r"fala (?:ficou )?(?:enrolada|arrastada)|falando (?:enrolado|enrolada|arrastado|tudo enrolado)",
            r"(?:nao|n) (?:consegue|consigo) (?:mais )?falar direito",
            r"(?:nao|n) (?:consegue|consigo) (?:mais )?mexer (?:o |a |um |uma )?(?:braco|perna|lado)",
            r"(?:braco|lado do corpo) (?:esquerd[oa] |direit[oa] )?(?:esta |ficou )?(?:dormente|paralisad[oa]"
            r"|sem forca)",
            r"dormencia (?:no|em um|de um|num) (?:lado|braco)",
            r"perdeu a forca (?:do|no|de um|num|da) (?:braco|lado|perna)",
            r"a ?v ?c|derrame|isquemia cerebral",
            r"pior dor de cabeca|dor de cabeca (?:muito )?(?:forte )?(?:e )?(?:subita|repentina)",
        ],
    ),
    (
        _("Emergency red flag: seizure"),
        [
            r"convuls\w*",
            r"ataque (?:epilet|epilept)\w*|crise (?:epilet|epilept|de epilepsia)\w*",
            r"se debatendo|tremendo e babando",
        ],
    ),
    (
        _("Emergency red flag: severe allergic reaction or airway swelling"),
        [
            r"garganta (?:esta |ficou )?(?:fechando|fechada|inchando|inchada)|fechando a garganta",
            r"lingua (?:esta |ficou )?(?:inchando|inchada|enrolando)",
            r"pescoco (?:esta |ficou )?(?:inchando|inchado)",
            r"incha(?:co|do|da|ndo) (?:na |no |da |do )?(?:garganta|lingua|pescoco)",
            r"choque anafil\w*|anafilax\w*|reacao alergica (?:grave|forte|seria|muito forte)",
            r"(?:nao|n) (?:consigo|consegue) (?:nem )?engolir",
        ],
    ),
    (
        _("Emergency red flag: poisoning or overdose"),
        [
            r"overdose|envenenad[oa]|intoxicad[oa]|(?:tomou|bebeu|engoliu) (?:veneno|agua sanitaria|soda)",
            r"tomou (?:uma cartela|todos os remedios|muitos remedios|varios remedios)",
        ],
    ),
    (
        _("Emergency red flag: pregnancy bleeding or waters broken"),
        [
            r"gravida (?:\w+ ){0,4}sangr\w*|sangr\w* (?:\w+ ){0,4}(?:gravida|gravidez|gestacao)",
            r"bolsa (?:estourou|rompeu|estorou)",
        ],
    ),
    (
        _("Emergency red flag: head injury with warning signs"),
        [
            r"(?:bat\w+|pancada) (?:forte )?(?:com )?(?:a |na )?cabeca (?:\w+ ){0,6}"
            r"(?:vomit\w*|desmai\w*|embacad\w*|confus\w*|sonolent\w*|tont\w*|convuls\w*|sangr\w*)",
        ],
    ),
]

_SUICIDE_PATTERNS: list[str] = [
    r"(?<!nao )(?<!n )(?:quero|queria|vontade de|prefiro|preferia|desejo) morrer(?! de (?:rir|vergonha|fome|calor"
    r"|frio|tedio|sono|saudade|inveja|cansaco|raiva|medo|dor))",
    r"(?:vou|quero|queria|vontade de|pensando em|penso em|pensei em|tentar|tentei|deveria|devia|preciso"
    r"|acho que vou) me matar(?! de (?:rir|trabalhar|estudar|tanto))",
    r"me mato(?! de )",
    r"suicid\w*",
    r"tirar (?:a )?(?:minha )?(?:propria )?vida",
    r"acabar com (?:tudo|a minha vida|minha vida|a vida)",
    r"(?:nao|n) (?:aguento|suporto) mais (?:viver|a vida|essa vida|estar viva|estar vivo)",
    r"(?:nao|n) quero (?:mais )?viver|sem vontade de viver|(?:nao|n) vale a pena viver|(?:nao"
    r"|n) vejo (?:mais )?sentido (?:em|na) (?:viver|vida)",
    r"melhor se eu (?:morresse|nao existisse|sumisse)|queria (?:estar|ta|esta) mort[oa]"
    r"|melhor (?:eu )?(?:estar )?mort[oa]",
    r"me enforcar|(?:pular|me jogar) (?:da|de uma|do|de um) (?:ponte|predio|janela|viaduto|prédio)",
    r"cortar (?:os |meus )?pulsos|(?:vontade|penso|pensando) (?:de|em) me (?:cortar|machucar)",
    rf"(?:tomar|tomei|tomou|engolir|beber) (?:\w+ ){{0,3}}{FOR} (?:eu )?morrer",
    r"quero sumir (?:pra sempre|de vez|do mundo)",
]

_HUMAN_PATTERNS: list[str] = [
    # A bare mention counts ("atendente!", "quero um humano"), but not "a atendente me disse…" (told about, not asked
    # for): after a definite article only the request forms below count.
    r"(?<!\ba )(?<!\bo )(?:atendentes?|recepcionista|humano|humana)|atendimento humano|pessoa (?:de verdade|real)"
    r"|ser humano|gente de verdade",
    r"(?:com|pra|para|chama|chame|chamem|cade|quero|preciso de) (?:o |a |um |uma )?(?:atendente|recepcionista|humano)",
    r"(?:falar|conversar|fala) com (?:alguem|uma pessoa|pessoa|gente|a recepcao|recepcao|a secretaria|secretaria"
    r"|(?:o |a )?(?:responsavel|gerente|financeiro|administrativo|coordenacao|coordenador|coordenadora|dono|dona)"
    r"|a clinica|a equipe|alguem da \w+)",
    r"me (?:liga|ligue|ligar|liguem|retorna|retorne|retornar|retornem)|liga (?:pra|para) mim|(?:quero"
    r"|prefiro) (?:uma )?ligacao",
    r"(?:nao|n) quero (?:falar com |conversar com )?(?:um |uma |o |a )?(?:robo|bot|maquina|ia|inteligencia artificial)",
    r"chega de robo|(?:cade|chama|chame|chamem) (?:alguem|o pessoal|a recepcao|um humano|uma pessoa)",
]
# "Você é robô?" is a question the engine answers, not a request for a person: taken out before the HUMAN rules run.
_BOT_QUESTION = _aux(
    r"\b(?:(?:voce|voces|tu|isso|aqui|quem)\s+)?(?:e|sao|esta|estou falando com|falando com)\s+(?:com\s+)?(?:um\s+"
    r"|uma\s+)?"
    r"(?:robo|bot|humano|humana|pessoa|atendente|maquina|ia|gente|ser humano|real)(?:\s+(?:de verdade|real))?"
    r"(?:\s+ou\s+(?:um\s+|uma\s+)?(?:robo|bot|humano|humana|pessoa|atendente|maquina|ia|gente|real))?\b"
)
# "Não quero falar com atendente", "não precisa me ligar": no request.
_HUMAN_NEGATION = _aux(
    r"\b(?:nao|n|nem)\s+(?:quero|queria|preciso|precisa|precisam|precisamos|vou|gostaria de|e)\s+(?:de\s+)?"
    r"(?:me\s+)?(?:falar\s+|conversar\s+|chamar\s+|passar\s+)?(?:com\s+|pra\s+|para\s+)?"
    r"(?:o\s+|a\s+|um\s+|uma\s+|nenhum\s+|nenhuma\s+)?$"
    # "Vou falar com alguém (em casa)": the patient's plan, not a request.
    r"|\b(?:vou|irei|ja|ja vou)\s+$"
)

# Whole-message commands, once politeness is taken off.
_OPT_OUT_WHOLE = _aux(
    r"^(?:eu )?(?:quero |queria )?(?:parar|pare|parem|para tudo|sair|stop|descadastrar|descadastre|descadastra|"
    r"descadastro|remover|unsubscribe|cancelar inscricao|sair da lista|chega de mensagens?|"
    r"nao quero (?:mais )?(?:mensagens?|lembretes?)(?: automaticas?)?(?: mais)?)$"
)
_POLITENESS = _aux(
    r"\b(?:por favor|por gentileza|obrigad[oa]|obg|ok|okay|tchau|agora|ja|so|ai|ei|oi|ola|bom dia|boa tarde|"
    r"boa noite)\b|[?]"
)
_OPT_OUT_PATTERNS: list[str] = [
    r"(?:nao|n) (?:quero|desejo|gostaria de|preciso) (?:mais )?receber (?:mais )?(?:\w+ ){0,2}"
    r"(?:mensage\w*|lembrete\w*|notificac\w*|aviso\w*|propaganda\w*|promoc\w*|marketing|contato)",
    r"(?:para|pare|parem|parar) de (?:me )?(?:mandar|enviar|mandarem|enviarem|encher)",
    r"(?:nao|n) (?:me )?(?:mande|mandem|envie|enviem|manda|mandar) mais",
    r"(?:descadastr|desinscrev)\w*|unsubscribe",
    r"(?:remov|tir|exclu)\w* (?:o )?meu (?:numero|contato|telefone)(?: d\w+ (?:lista|cadastro|sistema))?",
    r"(?:sair|me tira|me tirem|me remova|me remove|me removam|me exclua|me excluam) (?:da|dessa|desta|de sua"
    r"|da sua) lista",
    r"cancelar (?:o |os |as )?(?:recebimento|envio|mensagens?|lembretes?|notificac\w*)",
]

_INSULTS = (
    r"(?:burr[oa]s?|idiotas?|imbecil|imbecis|estupid[oa]s?|lixo|lixos|inutil|inuteis|incompetentes?|otari[oa]s?|"
    r"retardad[oa]s?|anta|vagabund[oa]s?|vaca|piranha|puta|merda|bosta|porcaria|babacas?|cuzao|arrombad[oa]s?|"
    r"desgracad[oa]s?|palhac[oa]s?|ridicul[oa]s?|nojent[oa]s?|escrot[oa]s?|corn[oa]|safad[oa]s?|ladr(?:ao|oes|ona)|"
    r"jumento|jumenta|mula|besta)"
)
_ABUSE_PATTERNS: list[str] = [
    r"vai (?:tomar|toma) n[oa] (?:cu|c|cul[oa])|vtnc|tnc|vsf|vai se f[ou]de\w*|vai (?:a|pra|pro|para o|para a) "
    r"(?:merda|puta que pariu|inferno|caralho|casa do caralho)",
    r"fdp|filh[oa]s? d[ae] (?:puta|mae)|puta que te pariu|cala (?:a )?(?:sua )?boca",
    rf"(?:seu|sua|seus|suas|voce e|voce eh|voces sao|tu e|bando de|cambada de|robo|bot|clinica|atendente|atendimento"
    rf"|essa clinica|esse robo|esse bot) (?:\w+ ){{0,3}}{_INSULTS}",
    r"vou (?:te|ti) (?:matar|pegar|quebrar|arrebentar|encher de porrada)|vou (?:quebrar|explodir) (?:essa|a) clinica",
]

_MEDICAL_PATTERNS: list[str] = [
    rf"(?:posso|pode|podia|devo|deveria|tenho que|preciso|precisa) (?:de )?(?:tomar|usar|passar|aplicar|dar|tomando|"
    rf"continuar tomando|parar de tomar|misturar) (?:\w+ ){{0,2}}{MEDICINE}",
    r"(?:qual|quais|que|algum|alguma|indica\w*|recomenda\w*|receitar|receite|receitam|me receita|me passa"
    r"|passa) (?:\w+ ){0,2}"
    # …but not "qual remédio a doutora passou?": that asks what was prescribed, for staff to answer.
    rf"(?:remedio|remedios|medicamento|medicamentos|{DRUGS})(?! (?:\w+ ){{0,3}}(?:passou|receitou|indicou|passaram))",
    r"(?:qual|que|quanto|quantos|quantas|de quantas em quantas) (?:\w+ ){0,2}(?:dose|dosagem|mg|miligramas|"
    r"ml|gotas|comprimidos|capsulas)|dosagem",
    rf"{DRUGS} (?:\w+ ){{0,5}}(?:quantas|quanto|dose|mg|gotas|posso|pode|devo|\?)",
    r"(?:o que|que) (?:significa|quer dizer|e|sera|seria) (?:\w+ ){0,3}(?:exame|resultado|laudo|hemograma|raio x|"
    r"radiografia|tomografia|ultrassom|ressonancia|biopsia)",
    r"(?:exame|exames|resultado|laudo|hemograma|glicose|glicemia|colesterol|triglicerides|tsh|psa|hemoglobina"
    r"|plaquetas|"
    r"leucocitos|ferritina|vitamina \w+|creatinina|ureia|beta hcg|urina|fezes|raio x|radiografia) (?:\w+ ){0,3}"
    r"(?:deu|veio|esta|ficou|apareceu|mostrou|indicou|acusou) (?:\w+ ){0,3}(?:alt[oa]s?|baix[oa]s?|alterad[oa]s?|"
    r"positivos?|negativos?|reagentes?|acima|abaixo|normal|normais|anormal|anormais|elevad[oa]s?|grave|\d+)",
    r"(?:interpretar|analisar|avaliar|explicar|entender) (?:\w+ ){0,2}(?:meu|minha|meus|minhas|esse|este|o|a|os) "
    r"(?:exame|exames|resultado|laudo|hemograma|raio|radiografia|tomografia|ultrassom)",
    r"(?:isso|isto|sera que|sera que isso|e muito) e grave|^e grave(?: \?)?$",
    r"(?:isso|isto) e normal|e normal (?:\w+ ){0,2}(?:doer|sentir|sangr\w+|inchar|latej\w+|ter (?:dor|febre"
    r"|sangramento|"
    r"inchaco|sensibilidade|pus)|dor|febre|sangramento|inchaco|sensibilidade|coceira|mancha|ferida|caroco|pus|"
    r"o dente|a gengiva|os? pontos?|gosto)",
    r"e normal (?:\w+ ){0,4}(?:depois|apos) (?:d[ao] |de )?(?:extracao|cirurgia|procedimento|canal|implante|limpeza|"
    r"clareamento|tratamento|anestesia|aplicacao|botox|preenchimento)",
    r"o que (?:eu )?tenho\b(?! (?:que|de|para|pra|a|marcad|agendad|direito|no plano|pelo plano|disponive))"
    r"|o que (?:ele|ela) tem\b(?! (?:que|de))",
    r"o que (?:pode|poderia|sera|seria) (?:ser )?(?:isso|isto|essa \w+|esse \w+)",
    r"sera que (?:e|estou com|tenho|ele tem|ela tem|ele esta com|ela esta com) (?:uma |um )?(?:infeccao|inflamacao|"
    r"cancer|tumor|carie|canal|sinusite|dengue|covid|gripe|virose|alergia|grave|normal|algo|fratura|abscesso)",
    r"(?:qual (?:e )?(?:o )?|me da (?:um )?|me de (?:um )?|pode me dar (?:um )?)diagnostico|me diagnostic\w*",
    r"(?:o que|que) (?:eu )?(?:tomo|posso tomar|devo tomar|passo (?:no|na)|uso (?:pra|para))",
    r"(?:o que|que) (?:eu )?(?:faco|fazer) (?:pra|para|com) (?:a |essa |esta |minha |o |esse |meu )?(?:dor|febre|"
    r"inchaco|sangramento|alergia|infeccao|tosse|enjoo|ferida|afta|pressao alta|pressao baixa)",
]

# A symptom told as the past ("teve AVC ano passado", "histórico de convulsão"): discounted when the part of the clause
# that holds it says so, and nothing in the clause speaks of now ("agora", "hoje", "de novo").
_HISTORY = _aux(
    r"\b(?:ano passado|anos atras|mes passado|meses atras|semana passada|semanas atras|"
    r"ha (?:\d+|um|uma|dois|duas|tres|quatro|cinco|alguns|algumas|muitos|muitas|varios|varias|poucos|poucas) "
    r"(?:dias|semanas|meses|anos|ano|mes)|em (?:19|20)\d\d|historico|sequela|sequelas|pos a ?v ?c|depois do a ?v ?c|"
    r"ja (?:teve|tive|tinha|sofreu|sofri)|quando (?:era|eu era) (?:crianca|pequen[oa]|nova|novo)|"
    r"desde (?:pequen[oa]|crianca|nascenca|bebe|que nasceu)|as vezes|de vez em quando|"
    r"(?:morreu|faleceu) (?:de|do|da|por|com))\b"
)
_NOW = _aux(r"\b(?:agora|hoje|neste momento|nesse momento|agorinha|de novo|novamente|outra vez|acabou de|acabei de)\b")
# Where one part of a clause ends and the next begins: "teve AVC ano passado | e | está com a boca torta".
_PART_BREAK = _aux(r"\s(?:e|mas|porem|so que|entao)\s")
# An explicit negation right before a symptom: "não estou com", "sem", "nenhuma", "não sinto".
_SYMPTOM_NEGATION = _aux(
    rf"(?:\b{NEG}\s+(?:(?:estou|tenho|tive|sinto|senti|estava|esta|teve|tem|sente|sentiu|ficou|fiquei|houve|ha|"
    r"apresenta|apresentou|apresento)\s+)?(?:mais\s+)?(?:com\s+|nenhum\w*\s+|nada\s+de\s+|de\s+)?(?:mais\s+)?"
    r"|\bsem\s+(?:nenhum\w*\s+)?|\bnenhum\w*\s+|\bnada\s+de\s+)$"
)
# The whole message is a cry for help.
_HELP_WHOLE = _aux(r"^(?:socorro ?)+(?:me ajuda|me ajudem|urgente|por favor)?$")


def _build_rules() -> list[_Rule]:
    rules = [_Rule(GuardKind.EMERGENCY, label, _rx(*patterns), negatable=True) for label, patterns in _EMERGENCY_RULES]
    rules += [
        _Rule(GuardKind.SUICIDE, _("Suicidal talk: urgent"), _rx(*_SUICIDE_PATTERNS)),
        _Rule(GuardKind.HUMAN, _("Asked to talk to a person"), _rx(*_HUMAN_PATTERNS)),
        _Rule(GuardKind.OPT_OUT, _("Asked to stop automated messages"), _rx(*_OPT_OUT_PATTERNS)),
        _Rule(GuardKind.ABUSE, _("Insults or abuse aimed at the clinic"), _rx(*_ABUSE_PATTERNS)),
        _Rule(
            GuardKind.MEDICAL_ADVICE, _("Asked for medical advice (offered an appointment)"), _rx(*_MEDICAL_PATTERNS)
        ),
    ]
    return rules


_RULES = _build_rules()


# ---------------------------------------------------------------------------------------------------------------------
# Detecting
# ---------------------------------------------------------------------------------------------------------------------


def _part_around(clause: str, start: int, end: int) -> str:
    lo, hi = 0, len(clause)
    for brk in _PART_BREAK.finditer(clause):
        if brk.end() <= start:
            lo = brk.end()
        elif brk.start() >= end:
            hi = brk.start()
            break
    return clause[lo:hi]


def _counts(rule: _Rule, clause: str, match: re.Match[str]) -> bool:
    """Whether this match is a real hit: red flags explicitly negated or told as history are not."""
    before = clause[: match.start()]
    if rule.negatable:
        if _SYMPTOM_NEGATION.search(before):
            return False
        if _HISTORY.search(_part_around(clause, match.start(), match.end())) and not _NOW.search(clause):
            return False
    if rule.kind is GuardKind.HUMAN and _HUMAN_NEGATION.search(before):
        return False
    # "Longe pra burro", "caro pra besta": slang for "very", not an insult.
    return not (rule.kind is GuardKind.ABUSE and re.search(r"\b(?:pra|para)\s+\w+$", match.group()))


def _hits(clauses: Iterable[str]) -> dict[GuardKind, _Rule]:
    found: dict[GuardKind, _Rule] = {}
    for clause in clauses:
        for rule in _RULES:
            if rule.kind in found:
                continue
            text = _BOT_QUESTION.sub(" ", clause) if rule.kind is GuardKind.HUMAN else clause
            if any(_counts(rule, text, m) for m in rule.pattern.finditer(text)):
                found[rule.kind] = rule
    return found


def _whole_message_hits(text: str) -> dict[GuardKind, str | Promise]:
    whole = normalize(text)
    found: dict[GuardKind, str | Promise] = {}
    if _HELP_WHOLE.match(whole):
        found[GuardKind.EMERGENCY] = _("Emergency: a cry for help")
    bare = " ".join(_POLITENESS.sub(" ", whole).split())
    if _OPT_OUT_WHOLE.match(bare):
        found[GuardKind.OPT_OUT] = _("Asked to stop automated messages")
    return found


def detect(text: str) -> tuple[GuardKind, str] | None:
    """The most serious thing the text shows, and its label for staff; None: nothing. Exposed for tests and evals."""
    if not isinstance(text, str) or not text.strip():
        return None
    text = text[:MAX_CHARS]
    labels: dict[GuardKind, str | Promise] = {k: r.label for k, r in _hits(_clauses(text)).items()}
    for kind, label in _whole_message_hits(text).items():
        labels.setdefault(kind, label)
    for kind in PRECEDENCE:
        if kind in labels:
            return kind, str(labels[kind])
    return None


def check(text: str, *, clinic_name: str, clinic_phone: str = "") -> Guard | None:
    """The guard the patient's text trips, with its fixed reply for this clinic; None: let the engine answer.

    Never raises: a guardrail that crashed would take the turn down with it. On an unexpected error it logs (no text)
    and returns None, so the turn goes on to the engine.
    """
    try:
        found = detect(text)
        if found is None:
            return None
        kind, label = found
        alert, stop = _FLAGS[kind]
        return Guard(
            kind=kind,
            reply=reply_for(kind, clinic_name=clinic_name, clinic_phone=clinic_phone),
            alert_staff=alert,
            stop_assistant=stop,
            summary=label,
        )
    except Exception:
        logger.exception("guardrails.check failed")
        return None


# ---------------------------------------------------------------------------------------------------------------------
# Replies (patient-facing, pt-BR)
# ---------------------------------------------------------------------------------------------------------------------


def _clean(value: str) -> str:
    # WhatsApp formatting characters in a clinic's name would break the bold around it.
    return " ".join(str(value or "").replace("*", "").replace("_", " ").replace("~", "").split())


def _team(clinic_name: str) -> str:
    # "equipe *Clínica Sorriso*" reads right whatever the name's gender ("da"/"do" before the name would not).
    name = _clean(clinic_name)
    return f"equipe *{name}*" if name else "equipe da clínica"


def _phone_line(clinic_phone: str, text: str) -> str:
    phone = _clean(clinic_phone)
    return f"\n{text} {phone}." if phone else ""


def reply_for(kind: GuardKind, *, clinic_name: str, clinic_phone: str = "") -> str:
    """The fixed message for a guard, filled for the clinic. Never a diagnosis: it says where to go, not what it is."""
    team = _team(clinic_name)
    if kind is GuardKind.EMERGENCY:
        return (
            "⚠️ Pelo que você descreveu, procure atendimento *agora*: ligue para o *SAMU 192* "
            "ou vá ao pronto-socorro mais próximo.\n\n"
            f"Já avisei a {team}." + _phone_line(clinic_phone, "Telefone da clínica:")
        )
    if kind is GuardKind.SUICIDE:
        return (
            "💛 Sinto muito que você esteja passando por isso. Você não precisa enfrentar esse momento sem ajuda.\n\n"
            "Converse agora com o *CVV – 188*: a ligação é gratuita e o atendimento funciona 24 horas "
            "(também tem chat em cvv.org.br).\n"
            "Se você estiver em perigo imediato, ligue para o *SAMU 192*.\n\n"
            f"Já avisei a {team}, que vai falar com você por aqui."
            + _phone_line(clinic_phone, "Se preferir, ligue para a clínica:")
        )
    if kind is GuardKind.HUMAN:
        return f"Claro! Já chamei alguém da {team} 🙂 A pessoa responde por aqui assim que possível." + _phone_line(
            clinic_phone, "Se preferir, ligue:"
        )
    if kind is GuardKind.OPT_OUT:
        return (
            "Pronto! Você não vai mais receber mensagens automáticas, nem lembretes de consulta, por este número.\n\n"
            f"Se mudar de ideia, é só escrever *voltar*. E se precisar de algo, a {team} continua respondendo por aqui."
        )
    if kind is GuardKind.ABUSE:
        return (
            "Entendo que a situação possa estar difícil, e quero ajudar. Peço só que a conversa siga com respeito.\n\n"
            f"Vou passar seu atendimento para a {team}, que responde por aqui assim que possível."
        )
    return (
        "Não posso dar orientação médica por aqui, como indicar remédio ou dose, dizer o que pode ser ou avaliar "
        "exames: quem faz isso com segurança é um profissional, na consulta.\n\n"
        f"Quer que eu veja um horário com a {team} para você? 🙂\n"
        "Se piorar ou parecer urgente, procure um pronto-socorro."
    )
