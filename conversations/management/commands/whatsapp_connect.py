"""`manage.py whatsapp_connect <clinic-slug>`: connect a clinic's WhatsApp number without the admin.

The same steps as the admin's "Connect WhatsApp" page (conversations.channel_connect), in this order:

    --create --global-api-key-env VAR   create the Evolution instance; the server's global API key is read from the
                                        environment variable VAR (never from the command line, where `ps` and shell
                                        history would keep it); the instance token returned is stored, not printed
    --set-webhook                       point the instance webhook at PUBLIC_BASE_URL, signed with the clinic's
                                        webhook secret (generated when none is stored; never printed)
    --qr-file PATH.png                  write the QR code to scan with the clinic's phone
    --state                             ask the provider for the connection state (also the default with no step)

Example: EVOLUTION_GLOBAL_KEY=… python manage.py whatsapp_connect demo --create \
    --global-api-key-env EVOLUTION_GLOBAL_KEY --set-webhook --qr-file /tmp/qr.png

Any failure stops with a message and a non-zero exit status.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cecilia.models import ChannelState, Clinic, WhatsAppProvider
from conversations.channel_connect import (
    EVOLUTION_WEBHOOK_EVENTS,
    ChannelSetupError,
    channel_instance_create,
    channel_pair,
    channel_state_check,
    channel_webhook_set,
)
from integrations.whatsapp._common import decode_base64
from integrations.whatsapp.base import QrCodeUpdate


class Command(BaseCommand):
    help = "Connect a clinic's WhatsApp number: create the Evolution instance, set its webhook, pair, check the state."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("clinic", help="The clinic's slug.")
        parser.add_argument("--create", action="store_true", help="Create the Evolution instance.")
        parser.add_argument(
            "--global-api-key-env",
            metavar="VAR",
            help="The environment variable holding the Evolution server's global API key (with --create).",
        )
        parser.add_argument("--set-webhook", action="store_true", help="Point the instance webhook at Cecilia.")
        parser.add_argument("--qr-file", metavar="PATH", help="Write the QR code to pair the phone to this PNG file.")
        parser.add_argument("--state", action="store_true", help="Ask the provider for the connection state.")

    def handle(self, *args: Any, **options: Any) -> None:
        clinic = Clinic.objects.filter(slug=options["clinic"]).first()
        if clinic is None:
            raise CommandError(f"No clinic has the slug {options['clinic']!r}.")
        global_key = self._global_key(options) if options["create"] else ""
        if (options["create"] or options["set_webhook"] or options["qr_file"]) and (
            clinic.whatsapp_provider != WhatsAppProvider.EVOLUTION
        ):
            raise CommandError(
                f"{clinic.name} uses {clinic.get_whatsapp_provider_display()}: --create, --set-webhook and --qr-file "
                "are for the Evolution API. Meta Cloud API settings are typed in the clinic's admin page."
            )
        self.stdout.write(f"{clinic.name} ({clinic.slug}): {clinic.get_whatsapp_provider_display()}")
        try:
            if options["create"]:
                created = channel_instance_create(clinic=clinic, global_api_key=global_key)
                self._ok(f"Instance {created.instance_name!r} created; its token is stored in the clinic's settings.")
            if options["set_webhook"]:
                url = channel_webhook_set(clinic=clinic)
                self._ok(
                    f"Webhook set to {url} ({', '.join(EVOLUTION_WEBHOOK_EVENTS)}), signed with the clinic's secret."
                )
            if options["qr_file"]:
                self._pair(clinic, Path(options["qr_file"]))
            if options["state"] or not (options["create"] or options["set_webhook"] or options["qr_file"]):
                self._state(clinic)
        except ChannelSetupError as failed:
            raise CommandError(failed.message) from None

    def _global_key(self, options: dict[str, Any]) -> str:
        name = options["global_api_key_env"]
        if not name:
            raise CommandError("--create needs --global-api-key-env VAR, naming the variable that holds the key.")
        value = os.environ.get(name, "").strip()
        if not value:
            raise CommandError(f"The environment variable {name} is not set or empty.")
        return value

    def _pair(self, clinic: Clinic, path: Path) -> None:
        answer = channel_pair(clinic=clinic)
        if not isinstance(answer, QrCodeUpdate):
            if answer.state == ChannelState.OPEN:
                self._ok("The number is already connected: no QR code to scan.")
                return
            raise CommandError("The Evolution server has no QR code yet. Run the command again in a few seconds.")
        if not answer.image_data_url:
            raise CommandError("The Evolution server returned a QR code without its image.")
        try:
            image = decode_base64(answer.image_data_url)
            path.write_bytes(image)
        except ValueError:
            raise CommandError("The Evolution server returned a QR code image that is not base64.") from None
        except OSError as exc:
            raise CommandError(f"Could not write {path}: {exc.strerror}.") from None
        self._ok(f"QR code written to {path}. On the clinic's phone: WhatsApp › Linked devices › Link a device.")
        if answer.pairing_code:
            self.stdout.write(f"Or type the pairing code on the phone: {answer.pairing_code}")

    def _state(self, clinic: Clinic) -> None:
        state = channel_state_check(clinic=clinic)
        clinic.refresh_from_db(fields=["channel_phone"])
        line = f"Connection state: {state.value}"
        if clinic.channel_phone:
            line += f" (number +{clinic.channel_phone.lstrip('+')})"
        (self._ok if state == ChannelState.OPEN else self._warn)(line)

    def _ok(self, text: str) -> None:
        self.stdout.write(self.style.SUCCESS(text))

    def _warn(self, text: str) -> None:
        self.stdout.write(self.style.WARNING(text))
