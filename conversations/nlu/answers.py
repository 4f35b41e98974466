"""Short answers to the receptionist's questions: yes/no, and a choice among numbered options.

`parse_yes_no` is deliberately strict: it answers only when the whole message is a yes (or a no), give or take
politeness ("sim, por favor", "não, obrigado"), laughter and emojis. A message that says yes *and something else*
("sim, mas prefiro à tarde", "pode ser, só que na sexta") returns None: the something else is a change the engine must
read, and confirming a booking over it would book the wrong thing. Numbers are never yes/no ("1" is a choice).

`parse_choice` picks one option among `options` numbered items from a digit, a keycap emoji, an ordinal or a number
word ("2", "opção 2", "2️⃣", "a segunda", "segundo", "o 3", "quero o dois", "última"). It returns None when the
message names no option, names several different ones ("1 ou 2"), or names one out of range. Numbers that belong to
a date or a time ("dia 2", "às 2", "2h", "2/12", "2 de dezembro") and weekday names ("segunda-feira", "na segunda",
"a de sexta") are not choices.
"""

from __future__ import annotations

import re

from conversations.nlu.text import collapse_repeats, normalize

_YES_PHRASES = (
    "sim", "s", "ss", "si", "sm", "sin", "yes", "isso", "isso mesmo", "isso ai", "isso isso", "exato", "exatamente",
    "correto", "certo", "certinho", "ta certo", "esta certo", "tudo certo", "pode", "pode ser", "pode sim",
    "pode confirmar", "pode marcar", "pode agendar", "pode reservar", "pode fechar", "confirmo", "confirmado",
    "confirmada", "confirma", "confirmar", "confirmo sim", "comfirmo", "confimo", "comfirmado", "ok", "okay", "okey",
    "oki", "oks", "blz", "beleza", "belesa", "claro", "claro que sim", "com certeza", "certeza", "fechado", "fechou",
    "combinado", "perfeito", "otimo", "show", "positivo", "afirmativo", "uhum", "aham", "ahan", "ta", "ta bom",
    "tudo bem", "ta otimo", "ta perfeito", "bora", "vamos", "quero", "quero sim", "de acordo", "tranquilo",
    "👍", "✅", "👌", "✔", "☑", "🆗",
)  # fmt: skip
_NO_PHRASES = (
    "nao", "n", "nn", "no", "nope", "naum", "nops", "nah", "noa", "nau", "negativo", "nem", "nem pensar",
    "nao quero", "nao quero mais", "melhor nao", "acho melhor nao", "acho que nao", "mudei de ideia", "nao posso",
    "nao vou", "nao vou poder", "nao da", "nao precisa", "nao e isso", "agora nao", "ainda nao", "de jeito nenhum",
    "jamais", "nunca", "nao obrigado", "nao obrigada", "deixa pra la", "esquece", "👎", "❌", "🚫", "✖",
)  # fmt: skip
# Politeness, laughter and smileys that do not change a yes or a no.
_FILLER_PHRASES = (
    "por favor", "pf", "pfv", "pfvr", "obrigado", "obrigada", "obg", "brigado", "brigada", "grato", "grata",
    "valeu", "vlw", "entao", "ne", "senhor", "senhora", "sr", "sra", "dr", "dra", "doutor", "doutora", "moca",
    "rs", "rsrs", "k", "kk", "ha", "haha", "hehe", "🙂", "😊", "😀", "😁", "😃", "😄", "🙏", "❤", "♥", "😉", "🥰",
)  # fmt: skip

_YES, _NO, _FILLER = "yes", "no", "filler"
_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
# Emoji modifiers that ride on the emoji before them: skin tones, variation selectors, zero-width joiner.
_EMOJI_MODIFIERS = re.compile("[\U0001f3fb-\U0001f3ff\ufe0f\ufe0e\u200d]")
_IGNORED_TOKENS = frozenset(":/.-")


def _phrase_table() -> dict[tuple[str, ...], str]:
    table: dict[tuple[str, ...], str] = {}
    for kind, phrases in ((_FILLER, _FILLER_PHRASES), (_NO, _NO_PHRASES), (_YES, _YES_PHRASES)):
        for phrase in phrases:
            table[tuple(collapse_repeats(word) for word in phrase.split())] = kind
    return table


_PHRASES = _phrase_table()
_LONGEST_PHRASE = max(len(key) for key in _PHRASES)


def _tokens(text: str) -> list[str]:
    cleaned = _EMOJI_MODIFIERS.sub("", normalize(text))
    return [collapse_repeats(token) for token in _TOKEN.findall(cleaned) if token not in _IGNORED_TOKENS]


def parse_yes_no(text: str) -> bool | None:
    """True for a plain yes, False for a plain no, None for anything else (see the module docstring)."""
    tokens = _tokens(text)
    kinds: set[str] = set()
    position = 0
    while position < len(tokens):
        for length in range(min(_LONGEST_PHRASE, len(tokens) - position), 0, -1):
            kind = _PHRASES.get(tuple(tokens[position : position + length]))
            if kind is not None:
                kinds.add(kind)
                position += length
                break
        else:
            return None  # a word that is neither yes, no nor politeness: the message says something else
    if _YES in kinds and _NO not in kinds:
        return True
    if _NO in kinds and _YES not in kinds:
        return False
    return None


_ORDINAL_WORDS = {
    "primeira": 1, "primeiro": 1, "segunda": 2, "segundo": 2, "terceira": 3, "terceiro": 3, "quarta": 4,
    "quarto": 4, "quinta": 5, "quinto": 5, "sexta": 6, "sexto": 6, "setima": 7, "setimo": 7, "oitava": 8,
    "oitavo": 8, "nona": 9, "nono": 9, "decima": 10, "decimo": 10,
}  # fmt: skip
_CARDINAL_WORDS = {
    "um": 1, "uma": 1, "dois": 2, "duas": 2, "tres": 3, "quatro": 4, "cinco": 5, "seis": 6, "sete": 7, "oito": 8,
    "nove": 9, "dez": 10,
}  # fmt: skip
_WEEKDAY_ORDINALS = frozenset({"segunda", "terca", "quarta", "quinta", "sexta"})
_KEYCAP = re.compile(r"(\d)\ufe0f?\u20e3")
# A word right before a number that makes it a date or a time rather than an option.
_DATE_TIME_BEFORE = frozenset({"dia", "as", "das", "pelas", "ate", "apos", "umas", "hora", "horas", "em", "daqui"})
# A word right after a number that makes it a date or a time rather than an option.
_DATE_TIME_AFTER = frozenset(
    {"h", "hs", "hr", "hrs", "hora", "horas", "de", "da", "do", "e", "dias", "dia", "semanas", "semana", "min", "feira"}
)
# Words right before a number word that mark it as an option ("o dois", "opção três", "número um").
_CHOICE_MARKERS = frozenset({"o", "a", "opcao", "opcoes", "numero", "num", "no", "n", "nr"})
_CHOICE_ONLY_FILLER = frozenset({"o", "a", "opcao", "numero", "quero", "pode", "ser", "escolho", "fico", "com", "vou"})


def _choice_tokens(text: str) -> list[str]:
    normalized = normalize(text).replace("🔟", " 10 ")
    normalized = _KEYCAP.sub(r" \1 ", normalized)
    normalized = _EMOJI_MODIFIERS.sub("", normalized)
    # "2a"/"2o" are ordinals ("2ª opção"); split them so the digit stands alone.
    normalized = re.sub(r"\b(\d{1,2})(?:a|o)\b", r"\1", normalized)
    return re.findall(r"[a-z]+|\d+|[:/]", normalized)


def _token_value(tokens: list[str], index: int, options: int) -> int | None:
    """The option number `tokens[index]` names, or None when it names none (or names a date, time or weekday)."""
    token = tokens[index]
    before = tokens[index - 1] if index > 0 else ""
    after = tokens[index + 1] if index + 1 < len(tokens) else ""
    if token.isdigit():
        if before in _DATE_TIME_BEFORE or after in _DATE_TIME_AFTER or after in (":", "/") or before in (":", "/"):
            return None
        return int(token) if len(token) <= 3 else -1  # a huge number is out of range (and int() would refuse it)
    if token in ("ultima", "ultimo"):
        return options
    if token in ("penultima", "penultimo"):
        return options - 1
    if token in _ORDINAL_WORDS:
        # "segunda-feira", "na sexta", "a de quinta": a weekday, not the second/sixth/fifth option.
        if token in _WEEKDAY_ORDINALS and (after == "feira" or before in ("na", "de", "dia", "essa", "esta", "nessa")):
            return None
        return _ORDINAL_WORDS[token]
    if token in _CARDINAL_WORDS:
        alone = all(other in _CHOICE_ONLY_FILLER for i, other in enumerate(tokens) if i != index)
        if (alone or before in _CHOICE_MARKERS) and after not in _DATE_TIME_AFTER:
            return _CARDINAL_WORDS[token]
    return None


def parse_choice(text: str, options: int) -> int | None:
    """The 1-based option chosen among `options` numbered items, or None (see the module docstring)."""
    if options < 1:
        return None
    tokens = _choice_tokens(text)
    values = {value for index in range(len(tokens)) if (value := _token_value(tokens, index, options)) is not None}
    if len(values) != 1:
        return None
    (value,) = values
    return value if 1 <= value <= options else None
