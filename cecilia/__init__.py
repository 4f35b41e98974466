"""Cecilia's core: settings, wiring and the tenant models (Clinic, StaffMembership)."""

from cecilia.celery import app as celery_app

__all__ = ["celery_app"]
