"""The live inbox's websocket (`ws/inbox/`): staff sockets join their clinics' groups and get `conversations.live`
events forwarded, nothing else. The consumer holds no logic beyond who may listen to which clinic (Invariant 5).

Close codes, sent after the handshake so a page can tell them apart and stop reconnecting:
4401 not logged in; 4403 not staff, no clinic, or not a member of the clinic asked for; 4400 a malformed `?clinic=`.
4409: the user's access changed (a membership added, changed or removed, staff status or activity changed): the page
reconnects at once and the new connection is checked again, so a removed receptionist stops hearing the clinic.

Who joins what: staff join every clinic they are a member of, or only `?clinic=<id>` when they belong to it.
Superusers join the clinic they name with `?clinic=<id>` (any clinic), else the clinics they are a member of; a
superuser with neither is closed (4403) rather than handed every clinic's stream at once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from cecilia.models import Clinic, StaffMembership
from conversations.live import clinic_group, user_group

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_BAD_REQUEST = 4400
CLOSE_ACCESS_CHANGED = 4409


class InboxConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return await self._refuse(CLOSE_UNAUTHENTICATED)
        if not user.is_active or not user.is_staff:
            return await self._refuse(CLOSE_FORBIDDEN)
        asked = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("clinic")
        if asked and not asked[-1].isdigit():
            return await self._refuse(CLOSE_BAD_REQUEST)
        clinic_ids = await _clinics_of(user, int(asked[-1]) if asked else None)
        if not clinic_ids:
            return await self._refuse(CLOSE_FORBIDDEN)
        # Discarded again by Channels on disconnect (websocket_disconnect walks self.groups).
        self.groups = [clinic_group(clinic_id) for clinic_id in clinic_ids] + [user_group(user.pk)]
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def _refuse(self, code: int) -> None:
        # Accepted first so the code reaches the browser (a refused handshake shows up there as 1006); nothing is
        # sent before the close, and the socket has joined no group.
        await self.accept()
        await self.close(code=code)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """The socket is one-way: whatever the client sends is ignored (it reads and writes over HTTP)."""

    async def live_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["payload"])

    async def access_changed(self, message: dict[str, Any]) -> None:
        await self.close(code=CLOSE_ACCESS_CHANGED)


@database_sync_to_async
def _clinics_of(user: Any, asked: int | None) -> list[int]:
    """The clinics this user may listen to: `asked` alone when allowed, else all of theirs; [] when none."""
    if asked is not None and user.is_superuser:
        return [asked] if Clinic.objects.filter(pk=asked).exists() else []
    memberships = StaffMembership.objects.filter(user_id=user.pk)
    if asked is not None:
        memberships = memberships.filter(clinic_id=asked)
    return sorted(set(memberships.values_list("clinic_id", flat=True)))
