"""First contact: the assistant says who it is and gives the clinic's privacy notice, once per notice version (LGPD).

The notice is sent with the first answer of a conversation (or after the clinic changed its notice), recorded when it
is sent, and recorded as acknowledged when the patient writes again after it. The records themselves live in
patients.privacy (PrivacyAcknowledgement).
"""

from __future__ import annotations

import datetime

from conversations.models import Conversation, Message

# When the clinic has not written its own notice: what Cecilia does with the patient's data, in one sentence.
DEFAULT_NOTICE = (
    "Seus dados são usados só para o seu atendimento aqui na clínica, com sigilo e conforme a LGPD. "
    "Se preferir falar com uma pessoa, é só pedir. 😊"
)


def first_contact_texts(*, conversation: Conversation, now: datetime.datetime) -> list[str]:
    """The greeting and notice to send before this answer, recorded as sent; [] when already given for this version.

    Call inside the transaction that queues the answer: the record and the messages are written together.
    """
    from patients import privacy

    clinic, patient = conversation.clinic, conversation.patient
    if not privacy.privacy_notice_due(clinic=clinic, patient=patient):
        return []
    privacy.privacy_notice_sent(clinic=clinic, patient=patient, at=now)
    greeting = f"Olá! Eu sou a *{clinic.assistant_name}*, assistente virtual da {clinic.name} 🤖"
    notice = clinic.privacy_notice.strip() or DEFAULT_NOTICE
    if clinic.privacy_notice_url:
        notice = f"{notice}\nAviso de privacidade: {clinic.privacy_notice_url}"
    return [f"{greeting}\n{notice}"]


def acknowledge_if_replying(*, conversation: Conversation, pending: list[Message]) -> None:
    """The patient wrote after receiving the notice: the conversation going on is the acknowledgement."""
    from patients import privacy

    if pending:
        first = min(message.created_at for message in pending)
        privacy.privacy_notice_acknowledged(clinic=conversation.clinic, patient=conversation.patient, at=first)
