"""Model fields that store one canonical form of what people type (phones, CPF)."""

from __future__ import annotations

from typing import Any

from django.db import models

from patients.documents import normalize_cpf
from patients.phones import normalize_phone


class PhoneNumberField(models.CharField):
    """A phone number kept in E.164; any way a patient writes it is normalised when the model is cleaned."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 16)
        super().__init__(*args, **kwargs)

    def to_python(self, value: Any) -> str | None:
        value = super().to_python(value)
        if value in (None, ""):
            return value
        return normalize_phone(value)

    def formfield(self, **kwargs: Any) -> Any:
        kwargs.setdefault("max_length", 30)  # room for "+55 (11) 98765-4321" as typed
        return super().formfield(**kwargs)


class CPFField(models.CharField):
    """A CPF kept as its 11 digits; punctuation is dropped and the check digits verified when cleaned."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 11)
        super().__init__(*args, **kwargs)

    def to_python(self, value: Any) -> str | None:
        value = super().to_python(value)
        if value in (None, ""):
            return value
        return normalize_cpf(value)

    def formfield(self, **kwargs: Any) -> Any:
        kwargs.setdefault("max_length", 14)  # accept the punctuated form 123.456.789-09
        return super().formfield(**kwargs)
