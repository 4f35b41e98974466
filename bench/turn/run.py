"""Benchmark of the assistant's turn on the real processes: webhook in → provider send out, against an empty Celery
task round trip on the same worker, in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cecilia_bench_turn REDIS_URL=redis://127.0.0.1:6379 \\
        .venv/bin/python -m bench.turn [--turns 200] [--warmup 20] [--scenario rules|llm|both] [-v]

Starts gunicorn with `cecilia/gunicorn_conf.py` (as bench.webhook does) and a Celery worker of the product's app
(`celery -A cecilia worker --concurrency 2`, as docker-compose runs it), both with DEBUG off, the bench's database,
Redis database `--redis-db` (default 4; flushed before and after, nothing else touched), TURN_DEBOUNCE_SECONDS=0,
WHATSAPP_TYPING_DELAY_MS=0 and a send rate limit no sample reaches, and `bench.turn.settings` (the product's settings
plus `bench/turn/tasks.py`: the floor's empty task and a record of each task's start, end and queries). The bench
clinic's WhatsApp channel is Evolution pointed at a fake in the bench's process that answers every send at once and
notes when it arrived.

Each sample: one patient message as an Evolution `messages.upsert` webhook (the 2.3.7 text fixture, the patient's
number, a new message id, sent now), POSTed with the static secret header; its latency runs from just before the POST
to the arrival at the fake of the first send of the reply. One sample in flight at a time; the next starts once the
turn has settled (every reply sent, nothing pending). Patients follow a script of greeting, booking, a price question
and cancelling; each new patient is a new phone number (first contact: privacy notice and greeting). After each turn
the floor: an empty task published from the bench and run by the worker (one hop), and a chain of three (the turn's
own chain: inbound event → turn → send), each timed until the last hop pushes to a Redis list the bench BLPOPs.

Scenarios: `rules`, the rule-based receptionist (no model configured: the product's default); `llm`, the LLM
receptionist against a zero-latency fake Chat Completions server (one `find_slots` tool round per message, so two
model calls per turn). Claims, printed PASS or MISS for each: p50 ≤ 150 ms, p99 ≤ 400 ms. Exit status 0 whatever the
numbers, 2 when the bench cannot run (setup, processes, a turn unanswered), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench import (
    BenchSetupError,
    die_with_parent,
    django_start,
    free_port,
    machine_busy_now,
    package_version,
    percentile,
    production_env,
    redis_url,
)
from bench.turn import dataset
from bench.turn.fakes import FakeEvolution, FakeModel, Sent

BASE_DIR = Path(__file__).resolve().parent.parent.parent
FIXTURE = BASE_DIR / "tests" / "fixtures" / "evolution" / "2.3.7" / "messages_upsert_text.json"
SETTINGS_MODULE = "bench.turn.settings"
WEBHOOK_PATH = "/webhooks/whatsapp/evolution/"
TIMELINE_KEY = "bench:turn:tasks"  # bench/turn/tasks.py
PING_TASK = "bench.turn.ping"

TARGET_P50_MS = 150.0
TARGET_P99_MS = 400.0
TURN_TIMEOUT_SECONDS = 15.0
SETTLE_TIMEOUT_SECONDS = 15.0
START_SECONDS = 60.0
STOP_SECONDS = 15.0
BUSY_PERCENT = 20.0
BUSY_SAMPLE_SECONDS = 2.0
CHAIN_HOPS = 3  # the turn's chain: inbound_event_process → conversation_turn → message_send_task

# One patient's conversation, in order; the next patient (a new number) starts over. The booking is cancelled at the
# end, so the agenda is the same for every patient.
SCRIPT = (
    "oi",
    "quero marcar uma limpeza semana que vem de manhã",
    "1",
    "Maria Souza",
    "sim",
    "quanto custa a limpeza?",
    "quero cancelar minha consulta",
    "sim",
)
# The tasks of a turn, in the order they run; the holding message (8 s later, usually a no-op) is counted apart.
INBOUND_TASK = "conversations.tasks.inbound_event_process"
TURN_TASK = "conversations.tasks.conversation_turn"
SEND_TASK = "conversations.outbox.message_send_task"
HOLDING_TASK = "conversations.tasks.turn_holding_message"


@dataclass
class Sample:
    """One turn: its latency, its steps on the monotonic clock, and what it cost."""

    step: int  # index in SCRIPT
    text: str
    latency: float  # s, POST → first send at the fake
    webhook: float  # s, POST → the web server's answer read
    steps: dict[str, float] = field(default_factory=dict)  # name → s after the POST
    queries: int = 0
    tasks: int = 0
    sends: list[Sent] = field(default_factory=list)


@dataclass
class Floor:
    one_hop: list[float] = field(default_factory=list)
    chain: list[float] = field(default_factory=list)


@dataclass
class Scenario:
    name: str
    engine: str
    samples: list[Sample] = field(default_factory=list)
    floor: Floor = field(default_factory=Floor)
    holding_tasks: int = 0
    model_requests: int = 0
    seconds: float = 0.0
    load_average: float = 0.0


@dataclass
class Context:
    env: dict[str, str]
    port: int
    secret: str
    clinic_id: int
    run_tag: str
    redis: Any
    celery: Any
    evolution: FakeEvolution
    template: dict[str, Any]
    workdir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    connection: http.client.HTTPConnection | None = None
    patients: int = 0


# --- entry point --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.turn", description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=200, help="measured turns per scenario (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="turns before measuring, per scenario (default 20)")
    parser.add_argument(
        "--scenario", choices=("rules", "llm", "both"), default="both", help="the engine(s) measured (default both)"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes (default 2)")
    parser.add_argument("--web-workers", type=int, default=None, help="gunicorn workers (default: one per core)")
    parser.add_argument("--redis-db", type=int, default=4, help="Redis database of the bench, flushed (default 4)")
    parser.add_argument("--log-level", default="WARNING", help="the processes' LOG_LEVEL (default WARNING)")
    parser.add_argument("--verbose", "-v", action="store_true", help="print one patient's conversation per scenario")
    parser.add_argument(
        "--any-database", action="store_true", help="allow a database whose name does not contain 'bench'"
    )
    args = parser.parse_args(argv)
    if args.turns < 1 or args.warmup < 0 or args.concurrency < 1:
        parser.error("--turns and --concurrency must be at least 1, --warmup at least 0")
    if args.redis_db == 0:
        parser.error("--redis-db 0 is the development database; the bench flushes its own, pick another")
    args.web_workers = args.web_workers or os.cpu_count() or 1

    signal.signal(signal.SIGTERM, _interrupt)
    began = time.perf_counter()
    context: Context | None = None
    workdir = Path(tempfile.mkdtemp(prefix="bench-turn-"))
    scenarios: list[Scenario] = []
    try:
        context = _prepare(args, workdir)
        _start_processes(context, args)
        for name in ("rules", "llm") if args.scenario == "both" else (args.scenario,):
            scenarios.append(_run_scenario(context, args, name))
        log_summary = _log_summary(context)
    except BenchSetupError as exc:
        print(f"bench.turn: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbench.turn: interrupted; processes stopped, Redis database flushed.", file=sys.stderr)
        return 130
    finally:
        if context is not None:
            _cleanup(context)
        shutil.rmtree(workdir, ignore_errors=True)

    _print_results(scenarios, args)
    print(f"\n{log_summary}")
    print(f"\nTotal {time.perf_counter() - began:.0f} s; load average {os.getloadavg()[0]:.2f} at the end.")
    return 0


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


# --- setup --------------------------------------------------------------------------------------------------------


def _prepare(args: argparse.Namespace, workdir: Path) -> Context:
    redis_db_url = redis_url(args.redis_db)
    env = {
        **production_env(
            settings_module=SETTINGS_MODULE, workdir=workdir, redis_url=redis_db_url, log_level=args.log_level
        ),
        "LOG_FORMAT": "json",
        "DB_CONN_MAX_AGE": "60",  # gunicorn's fixed threads and the worker's processes keep their connections
        "WEB_WORKERS": str(args.web_workers),
        "PYTHONUNBUFFERED": "1",
        # What the target assumes: no debounce, no typing delay, no rate limit reached.
        "TURN_DEBOUNCE_SECONDS": "0",
        "WHATSAPP_TYPING_DELAY_MS": "0",
        "WHATSAPP_SEND_PER_MINUTE": "1000000",
        "WHATSAPP_SEND_BURST": "1000",
        # The deployment's model, if the shell has one, would replace the rule engine: the scenarios choose.
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
    }
    os.environ.update(env)
    database = django_start(require_bench_database=not args.any_database)

    import django
    import redis
    from django.db import connection

    from cecilia.celery import app

    client = redis.Redis.from_url(redis_db_url, socket_connect_timeout=2, socket_timeout=30)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        raise BenchSetupError(f"Cannot reach Redis at {redis_db_url}: {exc}") from exc

    evolution = FakeEvolution(dataset.API_KEY)
    evolution.start()
    secret = secrets.token_urlsafe(32)
    clinic_id, removed = dataset.clinic_prepare(fake_evolution_url=evolution.url, webhook_secret=secret)
    template = json.loads(FIXTURE.read_text())
    template["instance"] = dataset.INSTANCE
    template["apikey"] = dataset.API_KEY

    print(
        f"Database {database} (PostgreSQL {connection.pg_version // 10000}), Redis {redis_db_url} (flushed); clinic "
        f"{dataset.CLINIC_SLUG!r} on Evolution → fake at {evolution.url}; {removed} patients of earlier runs removed."
    )
    print(
        f"{os.cpu_count()} cores, load average {' / '.join(f'{v:.2f}' for v in os.getloadavg())}; Python "
        f"{platform.python_version()}, Django {django.get_version()}, gunicorn {package_version('gunicorn')}, Celery "
        f"{package_version('celery')}, openai {package_version('openai')}."
    )
    print(
        f"Web: gunicorn, {args.web_workers} worker{'s' if args.web_workers > 1 else ''} × "
        f"{os.environ.get('WEB_THREADS', '4')} threads (gthread). Worker: celery -A cecilia worker, prefork, "
        f"concurrency {args.concurrency}. DEBUG off, CONN_MAX_AGE 60, LOG_LEVEL {args.log_level}; "
        "TURN_DEBOUNCE_SECONDS=0, WHATSAPP_TYPING_DELAY_MS=0, WHATSAPP_SEND_PER_MINUTE=1000000."
    )
    busy = machine_busy_now(BUSY_SAMPLE_SECONDS)
    print(f"Machine {busy:.0f} % busy over the {BUSY_SAMPLE_SECONDS:.0f} s before the start (all cores).")
    if busy > BUSY_PERCENT:
        print(
            f"NOTE: the machine is already {busy:.0f} % busy: it is shared right now, the numbers will be high and "
            "noisy; rerun when it is quiet."
        )
    return Context(
        env=env,
        port=free_port(),
        secret=secret,
        clinic_id=clinic_id,
        run_tag=secrets.token_hex(4).upper(),
        redis=client,
        celery=app,
        evolution=evolution,
        template=template,
        workdir=workdir,
    )


# --- processes ----------------------------------------------------------------------------------------------------


def _start_processes(context: Context, args: argparse.Namespace) -> None:
    commands = {
        "web": [sys.executable, "-m", "gunicorn", "-c", "python:cecilia.gunicorn_conf",
                "--bind", f"127.0.0.1:{context.port}", "cecilia.wsgi:application"],
        "worker": [sys.executable, "-m", "celery", "-A", "cecilia", "worker", "--pool", "prefork",
                   "--concurrency", str(args.concurrency), "--loglevel", args.log_level, "--without-gossip",
                   "--without-mingle", "--without-heartbeat", f"--hostname=bench-turn-{context.run_tag}@%h"],
    }  # fmt: skip
    for name, command in commands.items():
        with open(context.workdir / f"{name}.log", "wb") as log:
            context.processes[name] = subprocess.Popen(
                command, cwd=BASE_DIR, env=context.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=die_with_parent,
            )  # fmt: skip
    deadline = time.monotonic() + START_SECONDS
    web_up = False
    while not web_up and time.monotonic() < deadline:
        _processes_check(context, "at start")
        with contextlib.suppress(OSError, http.client.HTTPException):
            web_up = _get(context, "/health/live") == 200
        if not web_up:
            time.sleep(0.1)
    if not web_up:
        raise BenchSetupError(f"gunicorn did not answer /health/live in {START_SECONDS:.0f} s:\n{_log_tail(context)}")
    # The worker is up when it has run a task: publish pings until one comes back.
    while time.monotonic() < deadline:
        _processes_check(context, "at start")
        with contextlib.suppress(BenchSetupError):
            _ping(context, hops=1, timeout=1.0)
            pids = ", ".join(f"{name} {process.pid}" for name, process in context.processes.items())
            print(f"Processes up ({pids}); gunicorn on 127.0.0.1:{context.port}.\n", flush=True)
            return
    raise BenchSetupError(f"The Celery worker ran no task in {START_SECONDS:.0f} s:\n{_log_tail(context)}")


def _processes_check(context: Context, when: str) -> None:
    for name, process in context.processes.items():
        if process.poll() is not None:
            raise BenchSetupError(f"{name} exited {when} with status {process.returncode}:\n{_log_tail(context)}")


def _log_tail(context: Context, lines: int = 25) -> str:
    tails = []
    for name in context.processes:
        path = context.workdir / f"{name}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
        tails.append(f"--- {name} log ---\n" + "\n".join(text))
    return "\n".join(tails)


def _get(context: Context, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", context.port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _post(context: Context, body: bytes) -> tuple[int, bytes]:
    """POST a webhook on a kept-alive connection (as Evolution's HTTP client keeps one); reconnect once if closed."""
    headers = {"Content-Type": "application/json", "X-Cecilia-Webhook-Secret": context.secret}
    for attempt in range(2):
        if context.connection is None:
            context.connection = http.client.HTTPConnection("127.0.0.1", context.port, timeout=10)
        try:
            context.connection.request("POST", WEBHOOK_PATH, body=body, headers=headers)
            response = context.connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            context.connection.close()
            context.connection = None
            if attempt:
                raise
    raise AssertionError("unreachable")


def _cleanup(context: Context) -> None:
    if context.connection is not None:
        context.connection.close()
    for process in context.processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in context.processes.values():
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    context.evolution.stop()
    with contextlib.suppress(Exception):
        context.redis.flushdb()
    with contextlib.suppress(Exception):
        from django.db import connection

        connection.close()


def _log_summary(context: Context) -> str:
    """The processes' log lines at WARNING or above, counted by message."""
    from collections import Counter

    counts: Counter[str] = Counter()
    for name in context.processes:
        path = context.workdir / f"{name}.log"
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
                key = f"{name}: {record.get('level', '?')} {record.get('logger', '?')}: {record.get('message', '')}"
            except (json.JSONDecodeError, AttributeError):
                # Celery's start banner and its warning about running as root are not log records; errors are.
                if not any(word in line for word in ("Traceback", "Error", "CRITICAL")):
                    continue
                key = f"{name}: (not JSON) {line}"
            counts[key[:140]] += 1
    if not counts:
        return "Logs: nothing at WARNING or above."
    return "Logs, lines by message (WARNING and above):\n" + "\n".join(
        f"  {count:>6} × {key}" for key, count in counts.most_common(10)
    )


# --- samples ------------------------------------------------------------------------------------------------------


def _run_scenario(context: Context, args: argparse.Namespace, name: str) -> Scenario:
    from scheduling.models import Service

    model: FakeModel | None = None
    if name == "llm":
        removed = dataset.clinic_reset(context.clinic_id)
        service_id = Service.objects.filter(clinic_id=context.clinic_id, name="Limpeza dental").values_list(
            "pk", flat=True
        )[0]
        model = FakeModel(service_id)
        model.start()
        dataset.llm_configure(context.clinic_id, base_url=f"{model.url}/v1", api_key="sk-bench", model="bench-model")
        print(f"Scenario llm: {removed} patients of the previous scenario removed; fake model at {model.url}/v1.")
    engine = "LLM receptionist (zero-latency fake model)" if model else "rule-based receptionist"
    scenario = Scenario(name=name, engine=engine)
    try:
        print(f"{name}: {args.warmup} warm-up turns, then {args.turns} measured …", flush=True)
        for _ in range(args.warmup):
            _turn(context, _next_message(context))
            _floor_samples(context, Floor())
        requests_before = model.requests if model else 0
        scenario.load_average = os.getloadavg()[0]
        started = time.perf_counter()
        shown = None
        for number in range(args.turns):
            patient, step = _next_message(context)
            sample = _turn(context, (patient, step))
            scenario.samples.append(sample)
            _floor_samples(context, scenario.floor)
            if args.verbose and ((shown is None and step == 0) or shown == patient):
                shown = patient
                _print_exchange(sample)
            if (number + 1) % 50 == 0:
                print(f"  {number + 1} turns", flush=True)
        scenario.seconds = time.perf_counter() - started
        scenario.model_requests = (model.requests - requests_before) if model else 0
    finally:
        if model is not None:
            model.stop()
    _processes_check(context, f"during {name}")
    return scenario


def _next_message(context: Context) -> tuple[int, int]:
    """(patient number, step of SCRIPT): patients follow SCRIPT one after the other, each with a new phone number."""
    index = context.patients
    context.patients += 1
    return index // len(SCRIPT), index % len(SCRIPT)


def _phone(context: Context, patient: int) -> str:
    # 55 11 9xxxx-xxxx: a new, valid mobile number per patient and run (8 hex digits of run tag → 4 decimal digits).
    return f"55119{int(context.run_tag, 16) % 10_000:04d}{patient:04d}"


def _body(context: Context, patient: int, text: str) -> bytes:
    payload = json.loads(json.dumps(context.template))
    phone = _phone(context, patient)
    key = payload["data"]["key"]
    key["remoteJid"] = f"{phone}@s.whatsapp.net"
    key["remoteJidAlt"] = f"9{phone}@lid"
    key["id"] = f"BENCH{context.run_tag}{secrets.token_hex(8).upper()}"
    payload["data"]["pushName"] = f"Paciente {patient}"
    payload["data"]["message"]["conversation"] = text
    payload["data"]["messageTimestamp"] = int(time.time())  # sent now: older ones count as history (stale)
    return json.dumps(payload, ensure_ascii=False).encode()


def _turn(context: Context, message: tuple[int, int]) -> Sample:
    patient, step = message
    text = SCRIPT[step]
    body = _body(context, patient, text)
    sent_before = context.evolution.count()
    timeline_before = context.redis.llen(TIMELINE_KEY)

    start = time.perf_counter()
    status, answer = _post(context, body)
    answered = time.perf_counter()
    if status != 200 or b"stored" not in answer:
        raise BenchSetupError(f"webhook answered {status} {answer[:200]!r}\n{_log_tail(context)}")
    first = context.evolution.wait_beyond(sent_before, TURN_TIMEOUT_SECONDS)
    if first is None:
        raise BenchSetupError(
            f"no reply reached the fake Evolution {TURN_TIMEOUT_SECONDS:.0f} s after a webhook "
            f"({text!r}):\n{_log_tail(context)}"
        )
    _settle(context)
    sends = context.evolution.since(sent_before)
    expected = _phone(context, patient)
    if any(sent.number != expected for sent in sends):
        raise BenchSetupError("a reply went to another number than the patient's: the samples overlap")
    sample = Sample(step=step, text=text, latency=first.at - start, webhook=answered - start, sends=sends)
    _timeline(context, sample, start, first, timeline_before)
    return sample


def _settle(context: Context) -> None:
    """Wait until the turn is over: every webhook processed, every patient message taken by a turn, no send pending
    and no turn holding a conversation — so the next sample starts on an idle worker and its replies are its own."""
    from conversations.models import Conversation, InboundEvent, Message, MessageDirection, MessageStatus

    clinic = context.clinic_id
    checks: list[Callable[[], bool]] = [
        lambda: InboundEvent.objects.filter(clinic_id=clinic, processed_at__isnull=True).exists(),
        lambda: Message.objects.filter(clinic_id=clinic, direction=MessageDirection.INBOUND, turn__isnull=True)
        .exists(),
        lambda: Message.objects.filter(
            clinic_id=clinic,
            direction=MessageDirection.OUTBOUND,
            status__in=(MessageStatus.QUEUED, MessageStatus.SENDING),
        ).exists(),
        lambda: Conversation.objects.filter(clinic_id=clinic, turn_lease_until__isnull=False).exists(),
    ]  # fmt: skip
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    while any(check() for check in checks):
        if time.monotonic() > deadline:
            raise BenchSetupError(f"a turn did not settle in {SETTLE_TIMEOUT_SECONDS:.0f} s:\n{_log_tail(context)}")
        time.sleep(0.005)
    time.sleep(0.01)  # the last task's record (pushed after it returns) and acknowledgement


def _timeline(context: Context, sample: Sample, start: float, first: Sent, index: int) -> None:
    """Where the turn's time went: the tasks the worker ran for it, on the clock the bench shares with the worker."""
    records = [json.loads(raw) for raw in context.redis.lrange(TIMELINE_KEY, index, -1)]
    mine = [r for r in records if r["name"] not in (HOLDING_TASK, PING_TASK) and r["end"] >= start]
    sample.queries = sum(r["queries"] for r in mine)
    sample.tasks = len(mine)

    def first_of(name: str) -> dict[str, Any] | None:
        return next((r for r in mine if r["name"] == name and r["start"] >= start), None)

    steps = {"webhook answered": sample.webhook}
    for label, name in (("event task", INBOUND_TASK), ("turn task", TURN_TASK), ("send task", SEND_TASK)):
        record = first_of(name)
        if record is not None:
            steps[f"{label} starts"] = record["start"] - start
            steps[f"{label} ends"] = record["end"] - start
            if name == TURN_TASK:
                sample.steps["turn task queries"] = record["queries"]
    steps["provider receives"] = first.at - start
    sample.steps.update(steps)


def _ping(context: Context, *, hops: int, timeout: float = 10.0) -> float:
    """Seconds from publishing the empty task to the worker having run its last hop."""
    key = f"bench:turn:done:{secrets.token_hex(6)}"
    start = time.perf_counter()
    context.celery.send_task(PING_TASK, args=[key, hops])
    if context.redis.blpop([key], timeout=timeout) is None:
        raise BenchSetupError(f"the empty task ({hops} hops) did not come back in {timeout:.0f} s")
    return time.perf_counter() - start


def _floor_samples(context: Context, floor: Floor) -> None:
    floor.one_hop.append(_ping(context, hops=1))
    floor.chain.append(_ping(context, hops=CHAIN_HOPS))


# --- report -------------------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table, the first column left-aligned, the others right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        padded = [cells[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))]
        return "| " + " | ".join(padded) + " |"

    print(line(header))
    print("|" + "|".join(["-" * (widths[0] + 2)] + ["-" * (width + 1) + ":" for width in widths[1:]]) + "|")
    for row in rows:
        print(line(row))


def _distribution(label: str, values: list[float], extra: list[str]) -> list[str]:
    return [
        label, str(len(values)), _ms(percentile(values, 50)), _ms(percentile(values, 90)),
        _ms(percentile(values, 99)), _ms(max(values)), *extra,
    ]  # fmt: skip


def _print_exchange(sample: Sample) -> None:
    print(f"    patient: {sample.text}")
    for sent in sample.sends:
        print("    cecília: " + sent.text.replace("\n", "\n             "))


def _print_results(scenarios: list[Scenario], args: argparse.Namespace) -> None:
    for scenario in scenarios:
        latencies = [s.latency for s in scenario.samples]
        print(
            f"\n## {scenario.name}: {scenario.engine} — {len(latencies)} turns in {scenario.seconds:.0f} s "
            f"(floor samples included), load average {scenario.load_average:.2f} at the start\n"
        )
        queries = [s.queries for s in scenario.samples]
        tasks = [s.tasks for s in scenario.samples]
        sends = [len(s.sends) for s in scenario.samples]
        _table(
            ["", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "queries/turn (mean)", "tasks/turn", "sends/turn"],
            [
                _distribution("turn: webhook → first send", latencies, [
                    f"{statistics.mean(queries):.1f}", f"{statistics.mean(tasks):.1f}", f"{statistics.mean(sends):.1f}"
                ]),
                _distribution("  webhook answered (HTTP)", [s.webhook for s in scenario.samples], ["", "", ""]),
                _distribution("floor: empty task, 1 hop", scenario.floor.one_hop, ["0", "1", ""]),
                _distribution(f"floor: empty chain, {CHAIN_HOPS} hops", scenario.floor.chain,
                              ["0", str(CHAIN_HOPS), ""]),
            ],
        )  # fmt: skip
        _print_steps(scenario)
        _print_by_message(scenario)
        if scenario.model_requests:
            per_turn = scenario.model_requests / len(latencies)
            print(f"\nModel requests: {scenario.model_requests} ({per_turn:.1f} a turn).")
        _print_claims(scenario)


def _print_steps(scenario: Scenario) -> None:
    labels = [
        "webhook answered", "event task starts", "event task ends", "turn task starts", "turn task ends",
        "send task starts", "provider receives",
    ]  # fmt: skip
    print(
        "\nWhere the time goes: each mark in ms after the POST (p50 and p99 over the turns), in order of p50; task "
        "marks are the worker's own clock readings. The send task starts before the turn task ends: the turn "
        "publishes it on commit and the worker's other process takes it while the turn finishes.\n"
    )
    marks = []
    for label in labels:
        values = [s.steps[label] for s in scenario.samples if label in s.steps]
        if values:
            marks.append((percentile(values, 50), label, percentile(values, 99)))
    rows, previous = [], 0.0
    for p50, label, p99 in sorted(marks):
        rows.append([label, _ms(p50), _ms(p50 - previous), _ms(p99)])
        previous = p50
    _table(["mark", "p50 ms", "after the previous mark", "p99 ms"], rows)
    turn_queries = [s.steps["turn task queries"] for s in scenario.samples if "turn task queries" in s.steps]
    if turn_queries:
        print(
            f"\nQueries of the turn task alone: mean {statistics.mean(turn_queries):.1f}, max {max(turn_queries):.0f}."
        )


def _print_by_message(scenario: Scenario) -> None:
    print("\nBy patient message (the script's step):\n")
    rows = []
    for step, text in enumerate(SCRIPT):
        group = [s for s in scenario.samples if s.step == step]
        if not group:
            continue
        rows.append([
            f"{step + 1}. {text}", str(len(group)), _ms(percentile([s.latency for s in group], 50)),
            _ms(percentile([s.latency for s in group], 99)), f"{statistics.mean(s.queries for s in group):.1f}",
            f"{statistics.mean(len(s.sends) for s in group):.1f}",
        ])  # fmt: skip
    _table(["patient message (script step)", "n", "p50 ms", "p99 ms", "queries", "sends"], rows)


def _print_claims(scenario: Scenario) -> None:
    latencies = [s.latency for s in scenario.samples]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    floor_p50, floor_p99 = percentile(scenario.floor.one_hop, 50), percentile(scenario.floor.one_hop, 99)
    chain_p50, chain_p99 = percentile(scenario.floor.chain, 50), percentile(scenario.floor.chain, 99)

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    print(f"\nTargets ({scenario.engine}; one turn in flight, debounce off):")
    print(f"  {verdict(p50 <= TARGET_P50_MS / 1000)}  p50 ≤ {TARGET_P50_MS:.0f} ms: {_ms(p50)} ms")
    print(f"  {verdict(p99 <= TARGET_P99_MS / 1000)}  p99 ≤ {TARGET_P99_MS:.0f} ms: {_ms(p99)} ms")
    print(
        f"  Against the floor: an empty task's round trip p50 {_ms(floor_p50)} ms / p99 {_ms(floor_p99)} ms — the turn "
        f"is {p50 / floor_p50:.1f}× / {p99 / floor_p99:.1f}×; the empty {CHAIN_HOPS}-hop chain p50 {_ms(chain_p50)} "
        f"ms / p99 {_ms(chain_p99)} ms — the turn is {p50 / chain_p50:.1f}× / {p99 / chain_p99:.1f}×."
    )
