"""Text normalisation shared by the rule-based receptionist's Portuguese understanding.

`normalize()` turns what a patient types on WhatsApp into a predictable form the parsers can match with plain
regular expressions. Exactly, in this order:

1. Unicode NFC, then lowercase (`str.casefold`).
2. Ordinal indicators become letters: "º" → "o", "ª" → "a" ("2ª feira" → "2a feira", "nº 3" → "no 3").
3. Accents are stripped from letters only: "é" → "e", "ç" → "c", "ã" → "a", "ñ" → "n". Anything that is not an
   accented letter is left alone, so emojis survive intact, including their variation selectors and keycaps
   ("👍", "👍🏽", "3️⃣").
4. Punctuation becomes a space, except:
   - ":" is kept ("9:30");
   - "/" is kept ("28/11");
   - "." and "-" are kept only between two digits ("28.11", "28-11"); elsewhere ("quarta-feira", "meio-dia",
     "sim.") they become a space, so hyphenated words become two words ("quarta feira", "meio dia").
   Symbols that are not punctuation (emojis, "%", "+") are kept.
5. A letter repeated three or more times is squeezed to one ("siiiim" → "sim", "naaao" → "nao"); doubled letters
   stay ("isso", "ss"). Digits are never squeezed ("1000").
6. Whitespace runs collapse to one space; the result is stripped.

Time spellings stay usable: "15h", "9h30", "15:00", "às 15" → "as 15".
"""

from __future__ import annotations

import re
import unicodedata

_ORDINALS = str.maketrans({"º": "o", "ª": "a", "°": "o"})
_KEEP_BETWEEN_DIGITS = re.compile(r"(?<=\d)[.\-](?=\d)")
_PLACEHOLDER = "\x00"
_REPEATED_LETTER = re.compile(r"([a-z])\1{2,}")
_WHITESPACE = re.compile(r"\s+")


def _strip_accent(char: str) -> str:
    """An accented Latin letter becomes its base letter; every other character is returned unchanged."""
    if char.isascii() or not char.isalpha():
        return char
    base = unicodedata.normalize("NFD", char)[0]
    return base if base.isascii() else char


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def normalize(text: str) -> str:
    """Lowercase, accent-free, punctuation-light form of `text` (see the module docstring for the exact rules)."""
    if not text:
        return ""
    lowered = unicodedata.normalize("NFC", str(text)).casefold().translate(_ORDINALS)
    unaccented = "".join(_strip_accent(char) for char in lowered)
    # Mark the separators worth keeping inside numbers before punctuation is blanked out.
    marked = _KEEP_BETWEEN_DIGITS.sub(lambda match: _PLACEHOLDER + match.group(0), unaccented)
    chars: list[str] = []
    for index, char in enumerate(marked):
        if char == _PLACEHOLDER:
            continue
        if char in ":/":
            chars.append(char)
        elif _is_punctuation(char):
            kept = index > 0 and marked[index - 1] == _PLACEHOLDER
            chars.append(char if kept else " ")
        else:
            chars.append(char)
    squeezed = _REPEATED_LETTER.sub(r"\1", "".join(chars))
    return _WHITESPACE.sub(" ", squeezed).strip()


def collapse_repeats(word: str) -> str:
    """Every run of a repeated character becomes one ("siim" → "sim", "isso" → "iso"): a fuzzy key for short words."""
    return re.sub(r"(.)\1+", r"\1", word)
