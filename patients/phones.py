"""Phone numbers as patients write them, reduced to one E.164 form so one person is one patient.

Brazilian mobiles gained a ninth digit (a leading 9) between 2012 and 2016, but WhatsApp still reports many old
accounts by their 8-digit number (`551187654321@s.whatsapp.net`), and patients type every variant: with or without
+55, the DDD in parentheses, dashes, spaces, a leading 0 or a carrier code. All of them must land on the same row, so
the canonical form always carries the ninth digit for mobiles.
"""

from __future__ import annotations

import re

import phonenumbers
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

E164_PATTERN = r"^\+[1-9][0-9]{7,14}$"

_ALLOWED = re.compile(r"^[0-9+()\-.\s/]+$")
_MOBILE_FIRST_DIGITS = "6789"


class InvalidPhoneNumber(ValidationError):
    pass


def _invalid() -> InvalidPhoneNumber:
    return InvalidPhoneNumber(
        _("Enter a valid phone number with area code, such as (11) 98765-4321 or +55 11 98765-4321."),
        code="invalid_phone",
    )


def strip_whatsapp_jid(value: str) -> str:
    """`5511987654321:12@s.whatsapp.net` → `5511987654321` (device suffix and server dropped)."""
    return value.split("@", 1)[0].split(":", 1)[0]


def normalize_phone(raw: str, *, default_region: str = "BR") -> str:
    """Return the E.164 form of `raw` (`+5511987654321`) or raise InvalidPhoneNumber.

    Accepts WhatsApp JIDs too. Brazilian mobiles written without the ninth digit get it back; landlines (first
    digit 2–5) keep their eight digits.
    """
    value = strip_whatsapp_jid(str(raw).strip())
    if not value or not _ALLOWED.match(value):
        raise _invalid()
    digits = re.sub(r"\D", "", value)
    if value.startswith("+"):
        candidate = "+" + digits
    elif digits.startswith("00"):
        candidate = "+" + digits[2:]  # international call prefix
    elif digits.startswith("55") and len(digits) in (12, 13):
        # Longer than any Brazilian national number (11 digits): the 55 is the country code, as in WhatsApp JIDs.
        candidate = "+" + digits
    else:
        candidate = digits
    try:
        number = phonenumbers.parse(candidate, default_region)
    except phonenumbers.NumberParseException as exc:
        raise _invalid() from exc
    if number.country_code == 55:
        national = str(number.national_number)
        if len(national) == 10 and national[2] in _MOBILE_FIRST_DIGITS:
            number = phonenumbers.parse(f"+55{national[:2]}9{national[2:]}")
    if not phonenumbers.is_valid_number(number):
        raise _invalid()
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def format_phone_for_display(e164: str) -> str:
    """`+5511987654321` → `+55 11 98765-4321`, the way staff read numbers."""
    try:
        return phonenumbers.format_number(phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        return e164
