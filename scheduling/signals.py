"""What the agenda tells the rest of Cecilia.

`appointment_changed` is sent after the transaction that changed an appointment commits (booking services and the
admin send it through `transaction.on_commit`), so receivers never see a change that was rolled back. Google
Calendar push connects here; reminders (issue 6) will too.

Arguments: `appointment` (the saved row) and `action` (an `AppointmentAction` value).
"""

from django.dispatch import Signal

appointment_changed = Signal()
