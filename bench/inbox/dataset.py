"""The inbox benchmark's clinics: 100,000 conversations and 2,000,000 messages, built with set-based SQL.

Two clinics (slugs `bench-inbox` and `bench-inbox-vizinha`): the bench clinic, whose receptionist is measured, and a
neighbour with a few thousand conversations of its own, so every page's clinic scoping has rows to leave out. The
rows go into the real tables with every constraint and index in place, written by `INSERT … SELECT` over
`generate_series` in one transaction (minutes on 2 cores, not the hours a row-by-row ORM load would take), then
ANALYZEd. Randomness comes from `setseed()` with parallel plans off, so a rebuild gives the same shape.

Times are anchored at the build: messages spread over the 6 months before it, the latest minutes before it, so the
inbox has recent activity to show. When both clinics hold exactly the wanted counts the data is reused as it is;
otherwise (or with --rebuild) the old bench clinics are deleted first and built again. The build's transaction
makes a half-built clinic impossible; an interrupted deletion leaves wrong counts, so the next run starts over.

Shape of the bench clinic:
- conversation #1 (the oldest patient) is the largest, `LARGEST` messages; the others share the rest, skewed (most
  have a handful, some hundreds), at least 2 each;
- messages alternate patient → reply with some bursts; kinds mostly text, then audio, image, document, a few video,
  location, contact, reaction; outbound statuses mostly read/delivered, some sent, ~1.5 % failed (with an error),
  a few queued; authors the assistant, staff (with their user) or the system;
- `ATTENTION` conversations need attention, spread over every reason; ~3 % handled by staff; ~2 % assigned (a share
  to the measured receptionist, for `?filter=mine`); unread counts on conversations whose last word is the
  patient's; ~35 % of the older ones closed; internal notes on a few thousand; the clinic's quick replies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import ForeignKey

from cecilia.models import Clinic, StaffRole
from cecilia.services import staff_membership_set
from conversations.models import AttentionReason, Conversation, Message

CLINIC_SLUG = "bench-inbox"
NEIGHBOUR_SLUG = "bench-inbox-vizinha"
STAFF_USERNAME = "bench-inbox-recepcao"  # the receptionist the bench logs in as
OTHER_STAFF = (("bench-inbox-recepcao2", StaffRole.RECEPTIONIST), ("bench-inbox-gerente", StaffRole.MANAGER))
TIMEZONE = "America/Sao_Paulo"
SEED = 0.20260105

CONVERSATIONS = 100_000
MESSAGES = 2_000_000
LARGEST = 5_000  # messages of conversation #1
ATTENTION = 1_000
NEIGHBOUR_CONVERSATIONS = 3_000
NEIGHBOUR_MESSAGES = 60_000
NEIGHBOUR_LARGEST = 400
NOTES = 6_000
DAYS = 182  # six months of history

FIRST_NAMES = (
    "Maria", "José", "Ana", "João", "Francisca", "Antônio", "Juliana", "Carlos", "Fernanda", "Lucas", "Patrícia",
    "Rafael", "Camila", "Marcos", "Aline", "Bruno", "Letícia", "Gabriel", "Beatriz", "Thiago", "Larissa", "Pedro",
    "Vanessa", "Mateus", "Renata", "Felipe", "Cláudia", "Gustavo", "Sônia", "Eduardo",
)  # fmt: skip
SURNAMES = (
    "Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima", "Gomes", "Costa",
    "Ribeiro", "Martins", "Carvalho", "Almeida", "Lopes", "Soares", "Fernandes", "Vieira", "Barbosa", "Rocha",
    "Dias", "Nascimento", "Andrade", "Moreira", "Nunes", "Marques", "Machado", "Mendes", "Freitas",
)  # fmt: skip
PATIENT_TEXTS = (
    "Oi, bom dia!", "Boa tarde, gostaria de marcar uma consulta", "Vocês atendem Unimed?", "Quanto custa a limpeza?",
    "Pode ser na terça de manhã?", "Sim", "Confirmo", "Obrigada!", "Preciso remarcar minha consulta de amanhã",
    "Qual o endereço da clínica?", "Tem estacionamento?", "Estou com muita dor de dente desde ontem",
    "Meu filho também precisa de consulta", "Pode ser às 15h?", "Não vou conseguir ir hoje, desculpa",
    "Quero falar com uma atendente", "Vocês abrem sábado?", "Ok, combinado", "Qual o valor da consulta particular?",
    "Chego em 10 minutos",
)  # fmt: skip
REPLY_TEXTS = (
    "Olá! Sou a Cecília, assistente virtual da clínica. Como posso ajudar?",
    "Tenho estes horários: terça às 9h, terça às 10h30 ou quarta às 14h. Qual prefere?",
    "Pronto! Sua consulta está marcada para terça, 9h, com a Dra. Ana Souza.",
    "Aceitamos Unimed, Bradesco Saúde e SulAmérica.",
    "A limpeza custa R$ 200,00 e leva cerca de 30 minutos.",
    "Nosso endereço é Rua Vergueiro, 1000, sala 52 — Paraíso, São Paulo.",
    "Lembrete: sua consulta é amanhã às 14h. Responda SIM para confirmar.",
    "Consulta confirmada, obrigada! Até amanhã.",
    "Vou chamar alguém da recepção para ajudar você, um momento.",
    "Oi! Aqui é a Juliana, da recepção. Já vi sua mensagem e vou verificar.",
    "Sua consulta foi desmarcada. Quer escolher outro horário?",
    "Funcionamos de segunda a sexta, das 8h às 18h, e sábado das 8h às 12h.",
)  # fmt: skip
QUICK_REPLIES = (
    ("Endereço", "Nosso endereço é Rua Vergueiro, 1000, sala 52 — Paraíso, São Paulo."),
    ("Horário", "Funcionamos de segunda a sexta, das 8h às 18h, e sábado das 8h às 12h."),
    ("Convênios", "Aceitamos Unimed, Bradesco Saúde, SulAmérica, Amil e Porto Seguro Saúde."),
    ("Estacionamento", "Temos convênio com o estacionamento ao lado, com 1 hora grátis."),
    ("Preparo do exame", "Para o exame, venha em jejum de 8 horas e traga o pedido médico."),
    ("Documentos", "Traga um documento com foto e a carteirinha do convênio."),
    ("Atraso", "Tolerância de 15 minutos; depois disso precisamos remarcar."),
    ("Pagamento", "Aceitamos Pix, cartão de débito e crédito em até 3 vezes."),
    ("Retorno", "O retorno em até 30 dias não é cobrado."),
    ("Aguarde", "Um momento, por favor, já vou verificar para você."),
    ("Encerramento", "Qualquer dúvida, é só chamar por aqui. Até logo!"),
    ("Emergência", "Em caso de emergência, ligue 192 (SAMU) ou vá ao pronto-socorro mais próximo."),
)
NOTE_TEXTS = (
    "Paciente prefere ser chamada pelo nome do meio.",
    "Retornar a ligação depois das 17h.",
    "Aguardando autorização do convênio.",
    "Enviou foto do pedido médico; conferir na chegada.",
    "Pediu orçamento de clareamento, passar para a Dra. Ana.",
    "Reclamou da espera da última consulta.",
)


@dataclass(frozen=True)
class BenchData:
    clinic: Clinic
    neighbour: Clinic
    staff: object  # the receptionist the bench logs in as (a User)
    largest: Conversation  # the most messages
    typical: Conversation  # the median number of messages, an ordinary patient
    largest_messages: int
    typical_messages: int
    built: bool
    seconds: float


def bench_data_get_or_build(*, rebuild: bool = False) -> BenchData:
    began = time.perf_counter()
    clinics = {c.slug: c for c in Clinic.objects.filter(slug__in=[CLINIC_SLUG, NEIGHBOUR_SLUG])}
    wanted = {CLINIC_SLUG: (CONVERSATIONS, MESSAGES), NEIGHBOUR_SLUG: (NEIGHBOUR_CONVERSATIONS, NEIGHBOUR_MESSAGES)}
    complete = set(clinics) == set(wanted) and all(_counts(clinics[s]) == counts for s, counts in wanted.items())
    built = rebuild or not complete
    if built:
        if clinics:
            _clinics_delete(clinic_ids=[c.pk for c in clinics.values()])
        clinics = _build()
    clinic, neighbour = clinics[CLINIC_SLUG], clinics[NEIGHBOUR_SLUG]
    staff = _staff(clinic)
    largest, largest_n, typical, typical_n = _largest_and_typical(clinic)
    return BenchData(
        clinic, neighbour, staff, largest, typical, largest_n, typical_n, built, time.perf_counter() - began
    )


def _counts(clinic: Clinic) -> tuple[int, int]:
    return Conversation.objects.filter(clinic=clinic).count(), Message.objects.filter(clinic=clinic).count()


def _staff(clinic: Clinic) -> object:
    User = get_user_model()
    users = []
    for username, role in ((STAFF_USERNAME, StaffRole.RECEPTIONIST), *OTHER_STAFF):
        user, created = User.objects.get_or_create(
            username=username, defaults={"is_staff": True, "first_name": username.rsplit("-", 1)[-1].title()}
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        staff_membership_set(user_id=user.pk, clinic=clinic, role=role)
        users.append(user)
    return User.objects.get(pk=users[0].pk)


def _largest_and_typical(clinic: Clinic) -> tuple[Conversation, int, Conversation, int]:
    """The conversation with the most messages and one with the median count (ties: the lowest id)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH counts AS (SELECT conversation_id AS id, count(*) AS n FROM conversations_message "
            "WHERE clinic_id = %s GROUP BY conversation_id) "
            "SELECT (SELECT id FROM counts ORDER BY n DESC, id LIMIT 1), (SELECT max(n) FROM counts), "
            "(SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY n) FROM counts)",
            [clinic.pk],
        )
        largest_id, largest_n, median = cursor.fetchone()
        cursor.execute(
            "SELECT conversation_id FROM conversations_message WHERE clinic_id = %s "
            "GROUP BY conversation_id HAVING count(*) = %s ORDER BY conversation_id LIMIT 1",
            [clinic.pk, median],
        )
        (typical_id,) = cursor.fetchone()
    return Conversation.objects.get(pk=largest_id), largest_n, Conversation.objects.get(pk=typical_id), median


@transaction.atomic
def _build() -> dict[str, Clinic]:
    began = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")  # one plan, one order: setseed holds
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SELECT setseed(%s)", [SEED])
    clinic = Clinic.objects.create(
        name="Clínica Bench (100 mil conversas)", slug=CLINIC_SLUG, timezone=TIMEZONE, city="São Paulo", state="SP"
    )
    neighbour = Clinic.objects.create(
        name="Clínica Vizinha (bench)", slug=NEIGHBOUR_SLUG, timezone=TIMEZONE, city="Campinas", state="SP"
    )
    staff = _staff(clinic)
    User = get_user_model()
    staff_ids = list(
        User.objects.filter(username__startswith="bench-inbox-").order_by("pk").values_list("pk", flat=True)
    )
    _clinic_fill(
        clinic_id=clinic.pk,
        conversations=CONVERSATIONS,
        messages=MESSAGES,
        largest=LARGEST,
        attention=ATTENTION,
        notes=NOTES,
        staff_ids=staff_ids,
        me=staff.pk,
        phone_prefix="+55119",
    )
    _clinic_fill(
        clinic_id=neighbour.pk,
        conversations=NEIGHBOUR_CONVERSATIONS,
        messages=NEIGHBOUR_MESSAGES,
        largest=NEIGHBOUR_LARGEST,
        attention=NEIGHBOUR_CONVERSATIONS // 100,
        notes=NEIGHBOUR_CONVERSATIONS // 20,
        staff_ids=[],
        me=None,
        phone_prefix="+55199",
    )
    with connection.cursor() as cursor:
        for model in ("patients_patient", "conversations_conversation", "conversations_message",
                      "conversations_conversationnote", "conversations_quickreply"):  # fmt: skip
            cursor.execute(f"ANALYZE {model}")
    # The foreign keys are deferred: the database checks the ~2 million new rows' references at commit (~30 s).
    print(f"  {time.perf_counter() - began:6.1f} s  in all; the foreign keys are checked at commit…", flush=True)
    return {CLINIC_SLUG: clinic, NEIGHBOUR_SLUG: neighbour}


def _clinics_delete(*, clinic_ids: list[int]) -> None:
    """Every row of the stale bench clinics, whatever made it (the pages write access logs, audit entries…).

    Every foreign key here is DEFERRABLE INITIALLY DEFERRED (Django's and the same-clinic composite ones), so the
    tables can be emptied in any order and the database checks at commit that nothing points at a deleted row. The
    messages go first, in a transaction of their own, then VACUUM: otherwise each deleted conversation's check
    walks its ~20 dead message entries in the index, and one commit spent over 8 minutes on those checks. Between
    the two steps the clinics' counts are wrong, so an interrupted rebuild is simply redone by the next run.
    """
    from django.apps import apps

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM conversations_message WHERE clinic_id = ANY(%s)", [clinic_ids])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM conversations_message")  # outside any transaction: autocommit
    with transaction.atomic(), connection.cursor() as cursor:
        for model in apps.get_models():
            field = next((f for f in model._meta.concrete_fields if f.name == "clinic"), None)
            if isinstance(field, ForeignKey) and field.related_model is Clinic and not model._meta.proxy:
                cursor.execute(f'DELETE FROM "{model._meta.db_table}" WHERE clinic_id = ANY(%s)', [clinic_ids])
        cursor.execute("DELETE FROM cecilia_clinic WHERE id = ANY(%s)", [clinic_ids])
    print(f"  {time.perf_counter() - started:6.1f} s  the stale bench clinics deleted", flush=True)


def _sql_array(values: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]::text[]"


def _clinic_fill(
    *,
    clinic_id: int,
    conversations: int,
    messages: int,
    largest: int,
    attention: int,
    notes: int,
    staff_ids: list[int],
    me: int | None,
    phone_prefix: str,
) -> None:
    reasons = [r for r in AttentionReason.values if r]
    params = {
        "clinic": clinic_id,
        "n": conversations,
        "messages": messages,
        "largest": largest,
        "attention": attention,
        "days": DAYS,
        "reasons": reasons,
        "staff": staff_ids or [None],
        "has_staff": bool(staff_ids),
        "me": me,
        "prefix": phone_prefix,
        "notes": notes,
    }
    first, last = _sql_array(FIRST_NAMES), _sql_array(SURNAMES)
    statements = [
        # Patients, one per conversation: a unique E.164 phone and WhatsApp id each, names from the usual lists.
        f"""
        INSERT INTO patients_patient (clinic_id, phone, whatsapp_id, whatsapp_name, full_name, birth_date, cpf, email,
            health_plan_card_number, notes, opt_out_automated, opt_out_ai, created_at, updated_at)
        SELECT %(clinic)s, %(prefix)s || lpad(i::text, 8, '0'), substr(%(prefix)s, 2) || lpad(i::text, 8, '0')
                || '@s.whatsapp.net',
            CASE WHEN random() < 0.75 THEN f ELSE '' END,
            CASE WHEN random() < 0.8 THEN f || ' ' || s1 || ' ' || s2 ELSE '' END,
            DATE '1940-01-01' + (random() * 30000)::int, '', '', '', '', random() < 0.03, random() < 0.02,
            now() - interval '{DAYS + 30} days', now() - interval '{DAYS + 30} days'
        FROM (SELECT i, ({first})[1 + floor(random() * {len(FIRST_NAMES)})::int] AS f,
                ({last})[1 + floor(random() * {len(SURNAMES)})::int] AS s1,
                ({last})[1 + floor(random() * {len(SURNAMES)})::int] AS s2
              FROM generate_series(1, %(n)s) AS i) AS names
        ORDER BY i
        """,
        # The plan of each conversation: its rank (1 = the largest), its message count (skewed weights scaled to
        # the total exactly, the largest fixed), and when its history starts and ends within the six months.
        """
        CREATE TEMP TABLE bench_plan ON COMMIT DROP AS
        WITH p AS (
            SELECT id AS patient_id, row_number() OVER (ORDER BY id) AS rank FROM patients_patient
            WHERE clinic_id = %(clinic)s
        ), w AS (
            SELECT patient_id, rank, CASE WHEN rank = 1 THEN 0 ELSE least(1 / (random() + 0.01), 100) END AS weight,
                   random() AS r1, random() AS r2, random() AS r3, random() AS r4
            FROM p
        ), scaled AS (
            SELECT *, CASE WHEN rank = 1 THEN %(largest)s
                      ELSE 2 + floor(weight / sum(weight) OVER () * (%(messages)s - %(largest)s - 2 * (%(n)s - 1)))::int
                      END AS base
            FROM w
        ), fixed AS (
            SELECT *, base + CASE WHEN rank > 1 AND rank - 1 <= %(messages)s - sum(base) OVER () THEN 1 ELSE 0 END
                   AS msgs
            FROM scaled
        )
        SELECT patient_id, rank, msgs, r1, r2, r3, r4,
               -- the latest message: recent for most, skewed towards the last days; the largest is active today
               now() - CASE WHEN rank = 1 THEN interval '3 minutes'
                       ELSE make_interval(secs => power(r1, 2) * %(days)s * 86400) END AS last_at,
               0::bigint AS conversation_id
        FROM fixed
        """,
        "UPDATE bench_plan SET last_at = now() - interval '4 minutes' WHERE rank = 2",
        # Conversations; the counters and times are filled from the messages below.
        """
        INSERT INTO conversations_conversation (clinic_id, patient_id, owner, owner_since, assigned_to_id, state,
            handoff_summary, needs_attention, attention_reason, unread_count, closed_at, created_at, updated_at)
        SELECT %(clinic)s, patient_id, 'ai', NULL, NULL, '{}'::jsonb, '', false, '', 0, NULL,
               CASE WHEN rank = 1 THEN now() - make_interval(days => %(days)s)
                    ELSE last_at - make_interval(secs => %(days)s * 86400 * r2 * (1 - power(r1, 2))) END, last_at
        FROM bench_plan ORDER BY rank
        """,
        """
        UPDATE bench_plan b SET conversation_id = c.id FROM conversations_conversation c
        WHERE c.clinic_id = %(clinic)s AND c.patient_id = b.patient_id
        """,
        "CREATE INDEX ON bench_plan (conversation_id)",
        # Messages: the k-th of a conversation's msgs, evenly between its creation and its last message. Mostly
        # patient → reply, with bursts (two patient messages in a row, two replies in a row).
        f"""
        INSERT INTO conversations_message (clinic_id, conversation_id, direction, kind, text, media, media_mime_type,
            provider_message_id, status, error, error_code, author, author_user_id, attempts, template, buttons,
            created_at, sent_at, delivered_at, read_at, failed_at)
        SELECT %(clinic)s, conversation_id, direction, kind,
            CASE WHEN kind IN ('text', 'reaction') OR (kind IN ('image', 'document') AND random() < 0.3) THEN
                CASE WHEN direction = 'in'
                     THEN ({_sql_array(PATIENT_TEXTS)})[1 + floor(random() * {len(PATIENT_TEXTS)})::int]
                     ELSE ({_sql_array(REPLY_TEXTS)})[1 + floor(random() * {len(REPLY_TEXTS)})::int] END
                 WHEN kind = 'audio' AND direction = 'in' THEN 'Transcrição: queria saber se tem horário amanhã cedo'
                 ELSE '' END,
            CASE WHEN kind IN ('audio', 'image', 'document', 'video') THEN 'messages/bench/' || k || CASE kind
                 WHEN 'audio' THEN '.ogg' WHEN 'image' THEN '.jpg' WHEN 'document' THEN '.pdf' ELSE '.mp4' END
                 ELSE '' END,
            CASE kind WHEN 'audio' THEN 'audio/ogg' WHEN 'image' THEN 'image/jpeg'
                      WHEN 'document' THEN 'application/pdf' WHEN 'video' THEN 'video/mp4' ELSE '' END,
            CASE WHEN status IN ('queued', 'failed') THEN '' ELSE 'BENCH' || upper(to_hex(k)) END,
            status,
            CASE WHEN status = 'failed' THEN 'O WhatsApp recusou a mensagem: número sem WhatsApp.' ELSE '' END,
            CASE WHEN status = 'failed' THEN 'recipient_unavailable' ELSE '' END,
            author,
            CASE WHEN author = 'staff'
                 THEN (%(staff)s::int[])[1 + floor(random() * cardinality(%(staff)s::int[]))::int] END,
            CASE WHEN direction = 'out' AND status <> 'queued' THEN 1 ELSE 0 END, '{{}}'::jsonb, '[]'::jsonb,
            at,
            CASE WHEN status IN ('sent', 'delivered', 'read', 'played') THEN at + interval '1 second' END,
            CASE WHEN status IN ('delivered', 'read', 'played') THEN at + interval '3 seconds' END,
            CASE WHEN status IN ('read', 'played') THEN at + interval '2 minutes' END,
            CASE WHEN status = 'failed' THEN at + interval '2 seconds' END
        FROM (
            SELECT m.*, CASE WHEN direction = 'in' THEN 'received'
                        WHEN s < 0.55 THEN 'read' WHEN s < 0.82 THEN 'delivered' WHEN s < 0.975 THEN 'sent'
                        WHEN s < 0.99 THEN 'failed' ELSE 'queued' END AS status,
                   CASE WHEN direction = 'in' THEN 'patient' WHEN a < 0.8 OR NOT %(has_staff)s THEN 'ai'
                        WHEN a < 0.95 THEN 'staff' ELSE 'system' END AS author
            FROM (
                SELECT row_number() OVER () AS k, b.conversation_id, g.j,
                       CASE WHEN (g.j %% 2 = 1) <> (random() < 0.12) THEN 'in' ELSE 'out' END AS direction,
                       CASE WHEN x < 0.86 THEN 'text' WHEN x < 0.93 THEN 'audio' WHEN x < 0.975 THEN 'image'
                            WHEN x < 0.99 THEN 'document' WHEN x < 0.994 THEN 'video' WHEN x < 0.996 THEN 'location'
                            WHEN x < 0.998 THEN 'contact' ELSE 'reaction' END AS kind,
                       c.created_at + (b.last_at - c.created_at) * (g.j - 1) / greatest(b.msgs - 1, 1) AS at,
                       random() AS s, random() AS a
                FROM bench_plan b
                JOIN conversations_conversation c ON c.id = b.conversation_id
                CROSS JOIN LATERAL (SELECT j, random() AS x FROM generate_series(1, b.msgs) AS j) AS g
            ) AS m
        ) AS m
        """,
        # Counters and times from the messages, as the services keep them.
        """
        UPDATE conversations_conversation c SET last_inbound_at = agg.last_in, last_outbound_at = agg.last_out,
            unread_count = CASE WHEN agg.last_in > coalesce(agg.last_out, '-infinity') AND b.r3 < 0.6
                                THEN 1 + floor(b.r4 * 4)::int ELSE 0 END
        FROM (SELECT conversation_id, max(created_at) FILTER (WHERE direction = 'in') AS last_in,
                     max(created_at) FILTER (WHERE direction = 'out') AS last_out
              FROM conversations_message WHERE clinic_id = %(clinic)s GROUP BY conversation_id) AS agg,
             bench_plan b
        WHERE c.id = agg.conversation_id AND b.conversation_id = c.id
        """,
        # Closed: a third of the conversations quiet for more than three days, an hour after their last message.
        """
        UPDATE conversations_conversation c SET closed_at = b.last_at + interval '1 hour', unread_count = 0
        FROM bench_plan b WHERE b.conversation_id = c.id AND b.rank > 2 AND b.last_at < now() - interval '3 days'
            AND b.r3 < 0.35
        """,
        # Staff handle ~3 % (the largest included), and ~2 % are assigned, a share of them to the measured user.
        """
        UPDATE conversations_conversation c SET owner = 'human', owner_since = b.last_at - interval '10 minutes'
        FROM bench_plan b WHERE b.conversation_id = c.id AND (b.rank = 1 OR b.r4 < 0.03)
        """,
        """
        UPDATE conversations_conversation c SET assigned_to_id = CASE WHEN b.r2 < 0.3 THEN %(me)s
            ELSE (%(staff)s::int[])[1 + floor(b.r3 * cardinality(%(staff)s::int[]))::int] END
        FROM bench_plan b WHERE %(has_staff)s AND b.conversation_id = c.id AND (b.rank = 1 OR b.r1 < 0.02)
        """,
        # Needing attention: the `attention` most recent open conversations after the largest two, every reason.
        """
        UPDATE conversations_conversation c SET needs_attention = true, attention_reason =
            (%(reasons)s::text[])[1 + (pick.n %% cardinality(%(reasons)s::text[]))],
            handoff_summary = CASE WHEN pick.n %% 3 = 0 THEN 'Paciente pediu para falar com a recepção sobre reembolso.'
                                   ELSE '' END
        FROM (SELECT b.conversation_id, row_number() OVER (ORDER BY b.last_at DESC) AS n FROM bench_plan b
              JOIN conversations_conversation c ON c.id = b.conversation_id
              WHERE c.closed_at IS NULL AND b.rank > 2 AND b.r2 < 0.2
              ORDER BY b.last_at DESC LIMIT %(attention)s) AS pick
        WHERE c.id = pick.conversation_id
        """,
        # Internal notes: a handful on the largest conversation, the rest spread over the busier ones.
        f"""
        INSERT INTO conversations_conversationnote (clinic_id, conversation_id, author_id, author_label, text,
            created_at)
        SELECT %(clinic)s, b.conversation_id, (%(staff)s::int[])[1 + (g %% cardinality(%(staff)s::int[]))],
            CASE WHEN %(has_staff)s THEN 'Recepção' ELSE '' END,
            ({_sql_array(NOTE_TEXTS)})[1 + (g %% {len(NOTE_TEXTS)})], b.last_at - make_interval(mins => g %% 600)
        FROM generate_series(1, %(notes)s) AS g
        JOIN bench_plan b ON b.rank = CASE WHEN g <= 20 THEN 1 ELSE 3 + (g * 7919) %% (%(n)s - 2) END
        """,
        f"""
        INSERT INTO conversations_quickreply (clinic_id, title, text, position, active)
        SELECT %(clinic)s, q.title, q.text, q.position::int, q.position::int <> 12
        FROM unnest({_sql_array(tuple(t for t, _ in QUICK_REPLIES))}, {_sql_array(tuple(x for _, x in QUICK_REPLIES))})
            WITH ORDINALITY AS q(title, text, position)
        """,
        "DROP TABLE bench_plan",
    ]
    with connection.cursor() as cursor:
        for sql in statements:
            started = time.perf_counter()
            cursor.execute(sql, params)
            label = " ".join(sql.split())[:60]
            print(f"  {time.perf_counter() - started:6.1f} s  {cursor.rowcount:>9,} rows  {label}…", flush=True)
