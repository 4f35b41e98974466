"""Signal receivers of the integrations app: an appointment that changed is pushed to Google Calendar."""

from __future__ import annotations

import logging
from typing import Any

from integrations import calendar_sync

logger = logging.getLogger(__name__)


def appointment_changed_push(sender: Any, appointment: Any, action: str = "", **kwargs: Any) -> None:
    """Runs after the change committed. Never raises: a booking must not fail because of Google (the catch-up
    finds appointments whose push was never requested)."""
    try:
        calendar_sync.push_request(appointment=appointment)
    except Exception:
        logger.exception("Could not request the calendar push of appointment %s", getattr(appointment, "pk", None))
