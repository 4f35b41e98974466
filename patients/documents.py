"""CPF (Cadastro de Pessoas Físicas): normalisation and the two check digits."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


def _check_digit(digits: str) -> str:
    weight = len(digits) + 1
    total = sum(int(d) * (weight - i) for i, d in enumerate(digits))
    remainder = (total * 10) % 11
    return "0" if remainder == 10 else str(remainder)


def normalize_cpf(raw: str) -> str:
    """`123.456.789-09` → `12345678909`, or raise ValidationError when the check digits do not match."""
    digits = re.sub(r"[\s.\-/]", "", str(raw))
    if not re.fullmatch(r"[0-9]{11}", digits) or digits == digits[0] * 11:
        raise ValidationError(_("Enter a valid CPF (11 digits, such as 123.456.789-09)."), code="invalid_cpf")
    if _check_digit(digits[:9]) != digits[9] or _check_digit(digits[:10]) != digits[10]:
        raise ValidationError(_("This CPF is not valid: its check digits do not match."), code="invalid_cpf")
    return digits
