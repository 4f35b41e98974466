"""Build the POST data of an admin change form from its GET response, as a browser would submit it unchanged."""

from __future__ import annotations

from typing import Any


def _value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else None
    return str(getattr(value, "pk", value))


def changeform_data(response: Any, *, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The main form's and every inline formset's current values, management forms included."""
    form = response.context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        if name in skip:
            continue
        value = _value(form.initial.get(name, field.initial))
        if value is not None:
            data[name] = value
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        data[f"{formset.prefix}-TOTAL_FORMS"] = str(len(formset.forms))
        data[f"{formset.prefix}-INITIAL_FORMS"] = str(formset.initial_form_count())
        data[f"{formset.prefix}-MIN_NUM_FORMS"] = "0"
        data[f"{formset.prefix}-MAX_NUM_FORMS"] = "1000"
        for sub in formset.forms:
            for name, field in sub.fields.items():
                value = _value(sub.initial.get(name, field.initial))
                if value is not None:
                    data[f"{sub.prefix}-{name}"] = value
    return data
