"""`python manage.py seed_demo`: create (or complete) the demo clinic. Safe to run any number of times."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from conversations.demo import DEMO_PASSWORD, DEMO_USERS, demo_clinic_seed


class Command(BaseCommand):
    help = "Create the demo clinic with professionals, services, hours, patients, appointments and staff logins."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--password",
            help="Password for new demo logins. Default: 'cecilia-demo' with DEBUG on, a random one otherwise.",
        )

    def handle(self, *args: Any, password: str | None = None, **options: Any) -> None:
        # A well-known password is fine on a laptop, never on a server someone forgot to lock down.
        password = password or (DEMO_PASSWORD if settings.DEBUG else secrets.token_urlsafe(12))
        result = demo_clinic_seed(password=password)
        self.stdout.write(
            f"Demo clinic '{result.clinic.name}' ready: {result.created_patients} new patients, "
            f"{result.created_appointments} new appointments."
        )
        logins = ", ".join(name for name, _, _ in DEMO_USERS)
        self.stdout.write(f"Logins ({logins}); password for new logins: {result.password}")
