"""Clinic scoping for the admin: staff see and change only their own clinics' rows, everywhere.

Every ModelAdmin and inline of a clinic-owned model uses these bases. One queryset rule (`scope_queryset`) covers
changelists, change forms, history, delete, actions and autocompletes (Django's autocomplete view asks the target
admin's `get_queryset`); the form-field hooks scope every related choice; list filters on relations only offer rows
the user can see. Rows outside the user's clinics answer 404, never "exists but forbidden".
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest

from cecilia.models import Clinic
from cecilia.selectors import clinic_ids_for_user


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


def scope_queryset(queryset: QuerySet, request: HttpRequest, lookup: str | None = None) -> QuerySet:
    ids = clinic_ids_for_user(request.user)
    if ids is None:
        return queryset
    lookup = lookup or clinic_lookup_for(queryset.model)
    if lookup is None:
        return queryset.none()  # fail closed: a model we cannot place in a clinic is not shown to staff
    scoped = queryset.filter(**{f"{lookup}__in": ids})
    return scoped.distinct() if "__" in lookup else scoped


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
        queryset = scope_queryset(field.related_model._default_manager.all(), request)
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
    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "queryset" not in kwargs and clinic_lookup_for(db_field.related_model):
            kwargs["queryset"] = scope_queryset(db_field.related_model._default_manager.all(), request)
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]
        # A staff member of one clinic has nothing to choose: preselect it instead of showing "---------".
        ids = clinic_ids_for_user(request.user)
        if field is not None and db_field.related_model is Clinic and ids is not None and len(ids) == 1:
            field.empty_label = None
        return field

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "queryset" not in kwargs and clinic_lookup_for(db_field.related_model):
            kwargs["queryset"] = scope_queryset(db_field.related_model._default_manager.all(), request)
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

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = super().get_list_display(request)
        if _single_clinic(request):
            columns = [c for c in columns if c != "clinic"]
        return columns

    def get_list_filter(self, request: HttpRequest) -> Any:
        filters = list(super().get_list_filter(request))
        if _single_clinic(request):
            filters = [f for f in filters if f != "clinic" and not (isinstance(f, tuple) and f[0] == "clinic")]
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


class ClinicScopedInlineMixin(_ScopedFormFieldsMixin):
    formset = ClinicInlineFormSet

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return scope_queryset(super().get_queryset(request), request)  # type: ignore[misc]


class ClinicScopedTabularInline(ClinicScopedInlineMixin, admin.TabularInline):
    exclude = ("clinic",)


class ClinicScopedStackedInline(ClinicScopedInlineMixin, admin.StackedInline):
    exclude = ("clinic",)
