"""Clinic scoping for the admin: staff see and change only their own clinics' rows, with their role there.

Every ModelAdmin and inline of a clinic-owned model uses these bases.
* Rows: one queryset rule (`scope_queryset`) covers changelists, change forms, history, delete, actions and
  autocompletes (Django's autocomplete view asks the target admin's `get_queryset`). Rows outside the user's clinics
  answer 404, never "exists but forbidden".
* Roles: Django's permissions are global, but a person can be a receptionist at one clinic and a manager at another.
  Every object-level permission check asks what the user's role *at that row's clinic* allows (cecilia.roles), so
  managing clinic B never grants anything at clinic A.
* Choices: related-row choices, list filters and the clinic field only offer what the user may see or use.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest
from django.utils.translation import gettext_lazy as _

from cecilia.models import Clinic
from cecilia.selectors import clinic_ids_allowing, clinic_ids_for_user


def clinic_lookup_for(model: type[models.Model]) -> str | None:
    """The ORM path from `model` to its clinic id, or None when the model is not clinic-owned."""
    if model is Clinic:
        return "pk"
    if model is get_user_model():
        return "memberships__clinic"
    try:
        field = model._meta.get_field("clinic")
    except FieldDoesNotExist:
        return None
    return "clinic" if field.is_relation and field.related_model is Clinic else None


def scope_queryset(
    queryset: QuerySet, request: HttpRequest, lookup: str | None = None, *, action: str = "view"
) -> QuerySet:
    """`queryset` narrowed to the clinics where the user may `action` rows of its model (any role for others)."""
    model = queryset.model
    lookup = lookup or clinic_lookup_for(model)
    if lookup is None:
        return queryset if request.user.is_superuser else queryset.none()  # fail closed
    if action == "any":
        ids = clinic_ids_for_user(request.user)
    else:
        ids = clinic_ids_allowing(request.user, action, model._meta.app_label, model._meta.model_name)
    if ids is None:
        return queryset
    scoped = queryset.filter(**{f"{lookup}__in": ids})
    return scoped.distinct() if "__" in lookup else scoped


def _row_clinic_ids(obj: models.Model) -> set[int]:
    if isinstance(obj, Clinic):
        return {obj.pk}
    if isinstance(obj, get_user_model()):
        return set(obj.memberships.values_list("clinic_id", flat=True))
    clinic_id = getattr(obj, "clinic_id", None)
    return {clinic_id} if clinic_id is not None else set()


def role_allows_on(request: HttpRequest, action: str, model: type[models.Model], obj: models.Model | None) -> bool:
    """Whether the user's role at `obj`'s clinic allows `action` on `model` (at any of their clinics if no obj)."""
    ids = clinic_ids_allowing(request.user, action, model._meta.app_label, model._meta.model_name)
    if ids is None:
        return True
    if obj is None:
        return bool(ids)
    return bool(_row_clinic_ids(obj) & ids)


def _single_clinic(request: HttpRequest) -> bool:
    """Staff of one clinic: a clinic column or filter would only repeat their clinic's name."""
    ids = clinic_ids_for_user(request.user)
    return ids is not None and len(ids) <= 1


class ScopedRelatedFilter(admin.RelatedFieldListFilter):
    """Offers the related rows of the user's own clinics only, never another clinic's names.

    Scopes the related table directly (a small table) instead of Django's RelatedOnlyFieldListFilter, which scans
    every row of the list for the ids in use — 50,000 appointments for a busy clinic (see bench/admin).
    """

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> Any:
        ordering = self.field_admin_ordering(field, request, model_admin)
        queryset = scope_queryset(field.related_model._default_manager.all(), request, action="any")
        if ordering:
            queryset = queryset.order_by(*ordering)
        return [(obj.pk, str(obj)) for obj in queryset]


def yes_no_filter(field: str, title: str, yes: str, no: str) -> type[admin.SimpleListFilter]:
    """A list filter for a boolean field whose label reads badly after "By …" (e.g. "no automated messages")."""

    class YesNoFilter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            return [("1", yes), ("0", no)]

        def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
            if self.value() in ("0", "1"):
                return queryset.filter(**{field: self.value() == "1"})
            return queryset

    YesNoFilter.title = title
    return YesNoFilter


class _ScopedFormFieldsMixin:
    """Related choices: rows of the user's clinics; the row's own clinic: only clinics where the role may add."""

    model: type[models.Model]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "queryset" not in kwargs and clinic_lookup_for(db_field.related_model):
            queryset = db_field.related_model._default_manager.all()
            if db_field.related_model is Clinic and db_field.name == "clinic" and self.model is not Clinic:
                ids = clinic_ids_allowing(request.user, "add", self.model._meta.app_label, self.model._meta.model_name)
                kwargs["queryset"] = queryset if ids is None else queryset.filter(pk__in=ids)
            else:
                kwargs["queryset"] = scope_queryset(queryset, request, action="any")
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]
        # A staff member of one clinic has nothing to choose: preselect it instead of showing "---------".
        if field is not None and db_field.related_model is Clinic and _single_clinic(request):
            field.empty_label = None
        return field

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "queryset" not in kwargs and clinic_lookup_for(db_field.related_model):
            kwargs["queryset"] = scope_queryset(db_field.related_model._default_manager.all(), request, action="any")
        return super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]


class ClinicScopedAdmin(_ScopedFormFieldsMixin, admin.ModelAdmin):
    """Base admin for clinic-owned models. `clinic_lookup` is the ORM path to the clinic when it is not `clinic`."""

    clinic_lookup: str | None = None
    # Django counts the whole unfiltered list again on every filtered page; on a clinic's 50,000 appointments that is
    # a second full count per page view for a number nobody reads.
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return scope_queryset(super().get_queryset(request), request, self.clinic_lookup)

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            # Django would redirect to the index saying the row "doesn't exist"; a 404 tells nothing about
            # whether another clinic has such a row.
            raise Http404
        return obj

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) and role_allows_on(request, "view", self.model, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and role_allows_on(request, "add", self.model, None)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and role_allows_on(request, "change", self.model, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and role_allows_on(request, "delete", self.model, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        # A row never moves to another clinic: everything it points at (and that points at it) belongs there.
        if obj is not None and clinic_lookup_for(self.model) == "clinic" and "clinic" not in fields:
            fields.append("clinic")
        return fields

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = super().get_list_display(request)
        if _single_clinic(request):
            columns = [c for c in columns if c != "clinic"]
        return columns

    def get_list_filter(self, request: HttpRequest) -> Any:
        filters = []
        for spec in super().get_list_filter(request):
            if spec == "clinic" or (isinstance(spec, tuple) and spec[0] == "clinic"):
                if _single_clinic(request):
                    continue
                spec = ("clinic", ScopedRelatedFilter)
            filters.append(spec)
        return filters

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        ids = clinic_ids_for_user(request.user)
        if ids and len(ids) == 1 and "clinic" not in initial:
            initial["clinic"] = next(iter(ids))
        return initial


class ClinicInlineFormSet(BaseInlineFormSet):
    """Gives each inline row its parent's clinic before validation, so same-clinic checks run on it."""

    def _construct_form(self, i: int, **kwargs: Any) -> Any:
        form = super()._construct_form(i, **kwargs)
        instance = form.instance
        if hasattr(instance, "clinic_id") and instance.clinic_id is None:
            parent = self.instance
            instance.clinic_id = parent.pk if isinstance(parent, Clinic) else getattr(parent, "clinic_id", None)
        return form


class HoursInlineFormSet(ClinicInlineFormSet):
    """Opening or working hours typed together must not overlap each other on a weekday.

    The database refuses overlaps too, but one form cannot see its unsaved neighbours: without this check two
    overlapping new rows would reach the database and fail there instead of on the form.
    """

    def clean(self) -> None:
        super().clean()
        seen: list[tuple[int, Any, Any]] = []
        for form in self.forms:
            data = getattr(form, "cleaned_data", None) or {}
            if not data or data.get("DELETE") or not all(data.get(k) is not None for k in ("weekday", "start", "end")):
                continue
            for weekday, start, end in seen:
                if weekday == data["weekday"] and start < data["end"] and data["start"] < end:
                    raise ValidationError(
                        _("Two intervals of the same day overlap: %(a)s–%(b)s and %(c)s–%(d)s.")
                        % {
                            "a": f"{start:%H:%M}",
                            "b": f"{end:%H:%M}",
                            "c": f"{data['start']:%H:%M}",
                            "d": f"{data['end']:%H:%M}",
                        }
                    )
            seen.append((data["weekday"], data["start"], data["end"]))


class ClinicScopedInlineMixin(_ScopedFormFieldsMixin):
    formset = ClinicInlineFormSet

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return scope_queryset(super().get_queryset(request), request)  # type: ignore[misc]

    # The parent row decides where the inline's rows live: the role at the parent's clinic must allow the action.
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_view_permission(request, obj)  # type: ignore[misc]
        return allowed and role_allows_on(request, "view", self.model, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_add_permission(request, obj)  # type: ignore[misc]
        return allowed and role_allows_on(request, "add", self.model, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)  # type: ignore[misc]
        return allowed and role_allows_on(request, "change", self.model, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)  # type: ignore[misc]
        return allowed and role_allows_on(request, "delete", self.model, obj)


class ClinicScopedTabularInline(ClinicScopedInlineMixin, admin.TabularInline):
    exclude = ("clinic",)


class ReadOnlyAdminMixin:
    """Records of what happened (messages, raw events, usage, the audit trail): staff read them; only Cecilia's
    services write them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
