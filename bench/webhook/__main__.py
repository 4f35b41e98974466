"""Benchmark of the Evolution webhook on the real server: throughput and latency against a bare view, same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cecilia_bench_webhook REDIS_URL=redis://127.0.0.1:6379 \\
        .venv/bin/python -m bench.webhook [--duration 15] [--warmup 5] [--connections 100] [--low-connections 10]

Starts the production web server on a free loopback port: gunicorn with `cecilia/gunicorn_conf.py` (gthread, one
worker per core, 4 threads, `cecilia.wsgi`), or with `--server daphne` daphne as `make run` starts it (`-v 0`,
`cecilia.asgi:application`), with DEBUG off, the bench's database, Redis database `--redis-db` (default 11; flushed
before and after, nothing else is touched) and `bench.webhook.settings` (the product's settings with a urlconf that
adds a bare view). A bench clinic (Evolution instance, webhook secret, API key, set through the ORM) receives distinct
`messages.upsert` webhooks (the 2.3.7 text fixture, a new message id per request) authenticated with the static
secret header: each one verified, stored as an InboundEvent and its task published to Redis on commit. No Celery
worker runs: the tasks wait in Redis, where the bench counts them. The bare view gets the same POSTs and answers "ok".

Load: wrk (`-t 2`, `--latency`, `load.lua` varying the message id), or the Python generator in `load.py` when wrk is
missing (`--load-tool`). Phases, all on the same server: warm-up of both, then webhook and bare view at
`--connections` (100), then both at `--low-connections` (10, latency without queueing), then an open-loop phase:
`--paced-rate` (300) webhooks/s offered over up to `--connections` connections by the Python generator, each latency
counted from when the request was due. For each: requests/s, p50/p90/p99/max, non-2xx answers, socket errors, rows
stored and tasks enqueued, and where the CPU went (server, load generator, PostgreSQL, Redis, the rest of the
machine). `--processes N`: gunicorn workers (default: one per core), or N daphne processes on one listening socket
(`--fd`, Channels' supervisor recipe; default 1).

Claims (at `--connections`): ≥ 300 webhooks/s; p99 < 100 ms, closed loop (which Little's law ties to 1,000/s) and at
the offered rate; at least half the bare view's throughput. Each is printed PASS or MISS, with the integrity checks
(every 2xx answer stored, every stored row enqueued, no errors) and the server's log lines at WARNING and above.
Exit status 0 whatever the numbers; 2 when the bench cannot run (setup, server start, smoke test); 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
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
    machine_busy_seconds,
    package_version,
    production_env,
    redis_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent
HERE = Path(__file__).resolve().parent
FIXTURE = BASE_DIR / "tests" / "fixtures" / "evolution" / "2.3.7" / "messages_upsert_text.json"
LUA_SCRIPT = HERE / "load.lua"

SETTINGS_MODULE = "bench.webhook.settings"
CLINIC_SLUG = "bench-webhook"
INSTANCE = "bench-webhook"
# The fixture's `apikey`: Evolution sends the instance token in every body, and the webhook checks it against the
# clinic's API key, so the bench keeps it (a public sample value, not a credential).
API_KEY = "3F6A9C1E-7B2D-4E8F-A051-9C3D7E2B4F60"
WEBHOOK_PATH = "/webhooks/whatsapp/evolution/"
BARE_PATH = "/bench-bare/"  # bench/webhook/urls.py
ID_PLACEHOLDER = "__MESSAGE_ID__"

TARGET_RATE = 300.0  # webhooks/s at --connections
TARGET_P99_MS = 100.0
TARGET_SHARE_OF_BARE = 0.5
# Busier than this before the start (% of all cores; the load average also counts the threads of a bench that just
# ended), the machine is shared: say so.
BUSY_PERCENT = 20.0
BUSY_SAMPLE_SECONDS = 2.0
SERVER_START_SECONDS = 30.0
SERVER_STOP_SECONDS = 10.0
DRAIN_SECONDS = 15.0


@dataclass
class Phase:
    label: str
    target: str  # "webhook" or "bare"
    connections: int
    seconds: int
    measured: bool = True
    rate: float | None = None  # requests/s offered (open loop, Python generator); None: closed loop

    @property
    def name(self) -> str:
        if not self.measured:
            return f"{self.label} ({self.target})"
        return f"{self.label}, {self.rate:.0f}/s offered" if self.rate else self.label

    @property
    def path(self) -> str:
        return WEBHOOK_PATH if self.target == "webhook" else BARE_PATH


@dataclass
class Cpu:
    """CPU seconds consumed so far, per party, and the machine's busy time (all cores)."""

    wall: float
    server: float
    load: float
    postgres: float | None
    redis: float | None
    machine: float


@dataclass
class Outcome:
    phase: Phase
    prefix: str
    load_average: float
    result: dict[str, Any]
    stored: int | None = None
    enqueued: int | None = None
    cpu: dict[str, float | None] = field(default_factory=dict)
    peak_threads: int = 0
    peak_db_connections: int = 0
    peak_all_connections: int = 0

    @property
    def seconds(self) -> float:
        return self.result["duration_us"] / 1e6

    @property
    def rate(self) -> float:
        return self.result["requests"] / self.seconds

    @property
    def answered_2xx(self) -> int:
        return self.result["requests"] - self.result["status"]

    @property
    def socket_errors(self) -> int:
        return sum(self.result[key] for key in ("connect", "read", "write", "timeout"))

    def ms(self, key: str) -> float:
        return self.result[key] / 1000


@dataclass
class Context:
    env: dict[str, str]
    port: int
    secret: str
    clinic_id: int
    run_tag: str
    body_file: Path
    template: bytes
    load_tool: str
    threads: int
    redis: Any
    processes: int = 1
    server: str = "gunicorn"
    servers: list[subprocess.Popen] = field(default_factory=list)
    log_path: Path | None = None


# --- entry point --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds of each measured phase (default 15)")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of warm-up, webhook and bare each (default 5)")
    parser.add_argument("--connections", type=int, default=100, help="concurrent connections (default 100)")
    parser.add_argument(
        "--low-connections", type=int, default=10, help="the low-concurrency phases, 0 to skip (default 10)"
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=TARGET_RATE,
        help=f"webhooks/s offered in the open-loop phase at --connections, 0 to skip (default {TARGET_RATE:.0f})",
    )
    parser.add_argument(
        "--server",
        choices=("gunicorn", "daphne"),
        default="gunicorn",
        help="gunicorn (production's web process, the default) or daphne (`make run`'s)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="gunicorn workers (default: one per core, as in production) or daphne processes sharing the listening "
        "socket (--fd, Channels' supervisor recipe; default 1, like `make run`)",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--load-tool", choices=("auto", "wrk", "python"), default="auto", help="default: wrk if found")
    parser.add_argument("--redis-db", type=int, default=11, help="Redis database of the bench, flushed (default 11)")
    parser.add_argument("--log-level", default="WARNING", help="the server's LOG_LEVEL (default WARNING)")
    parser.add_argument("--verbose", "-v", action="store_true", help="print wrk's own report of every phase")
    parser.add_argument(
        "--any-database", action="store_true", help="allow a database whose name does not contain 'bench'"
    )
    args = parser.parse_args(argv)
    if args.processes is None:
        args.processes = (os.cpu_count() or 1) if args.server == "gunicorn" else 1
    if args.duration < 1 or args.connections < 1 or args.processes < 1:
        parser.error("--duration, --connections and --processes must be at least 1")
    if args.warmup < 0 or args.low_connections < 0 or args.paced_rate < 0:
        parser.error("--warmup, --low-connections and --paced-rate cannot be negative")
    if args.redis_db == 0:
        parser.error("--redis-db 0 is the development database; the bench flushes its own, pick another")

    signal.signal(signal.SIGTERM, _interrupt)
    began = time.perf_counter()
    context: Context | None = None
    workdir = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    try:
        context = _prepare(args, workdir)
        _server_start(context, workdir)
        _smoke(context)
        outcomes = _run_phases(args, context)
        log_summary = _log_summary(context)
    except BenchSetupError as exc:
        print(f"bench.webhook: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbench.webhook: interrupted; server stopped, Redis database flushed.", file=sys.stderr)
        return 130
    finally:
        if context is not None:
            _cleanup(context)
        shutil.rmtree(workdir, ignore_errors=True)

    _print_results(outcomes, args)
    print(f"\n{log_summary}")
    print(f"\nTotal {time.perf_counter() - began:.0f} s; load average {os.getloadavg()[0]:.2f} at the end.")
    return 0


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


# --- setup --------------------------------------------------------------------------------------------------------


def _prepare(args: argparse.Namespace, workdir: Path) -> Context:
    load_tool = args.load_tool
    if load_tool == "auto":
        load_tool = "wrk" if shutil.which("wrk") else "python"
    elif load_tool == "wrk" and not shutil.which("wrk"):
        raise BenchSetupError("wrk is not installed (Debian: apt-get install wrk); or use --load-tool python")

    redis_db_url = redis_url(args.redis_db)
    env = {
        **production_env(
            settings_module=SETTINGS_MODULE, workdir=workdir, redis_url=redis_db_url, log_level=args.log_level
        ),
        # Persistent connections under gunicorn's fixed threads, as in production; none under daphne, whose
        # thread per request would leave one behind each time (the README's DB_CONN_MAX_AGE).
        "DB_CONN_MAX_AGE": "60" if args.server == "gunicorn" else "0",
        "WEB_WORKERS": str(args.processes),
    }
    os.environ.update(env)
    database = django_start(require_bench_database=not args.any_database)

    import django
    import redis
    from django.conf import settings
    from django.db import connection

    client = redis.Redis.from_url(redis_db_url, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        raise BenchSetupError(f"Cannot reach Redis at {redis_db_url}: {exc}") from exc

    secret = secrets.token_urlsafe(32)
    clinic_id, removed = _clinic_prepare(secret)
    template = _body_template()
    body_file = workdir / "body.json"
    body_file.write_bytes(template)

    print(
        f"Database {database} (PostgreSQL {connection.pg_version // 10000}, max_connections "
        f"{_pg_setting('max_connections')}), Redis {redis_db_url} (flushed); clinic {CLINIC_SLUG!r}, instance "
        f"{INSTANCE!r}, {removed:,} events of earlier runs removed."
    )
    print(
        f"{os.cpu_count()} cores, load average {_load_averages()}; Python {platform.python_version()}, "
        f"Django {django.get_version()}, {args.server} {package_version(args.server)}; "
        f"load tool: {_tool_version(load_tool)}."
    )
    processes = _server_label(args)
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    print(
        f"Server: {processes}, DEBUG off, CONN_MAX_AGE {settings.DATABASES['default']['CONN_MAX_AGE']}"
        f"{f', connection pool {pool}' if pool else ''}, LOG_LEVEL {args.log_level}; body {len(template):,} bytes "
        "(Evolution 2.3.7 messages.upsert text), static secret header."
    )
    busy = machine_busy_now(BUSY_SAMPLE_SECONDS)
    print(f"Machine {busy:.0f} % busy over the {BUSY_SAMPLE_SECONDS:.0f} s before the start (all cores).")
    if busy > BUSY_PERCENT:
        print(
            f"NOTE: the machine is already {busy:.0f} % busy: it is shared right now, the numbers will be low and "
            "noisy; rerun when it is quiet."
        )
    return Context(
        env=env,
        port=free_port(),
        secret=secret,
        clinic_id=clinic_id,
        run_tag=secrets.token_hex(3).upper(),
        body_file=body_file,
        template=template,
        load_tool=load_tool,
        threads=args.threads,
        redis=client,
        processes=args.processes,
        server=args.server,
    )


def _server_label(args: argparse.Namespace) -> str:
    if args.server == "gunicorn":
        threads = os.environ.get("WEB_THREADS", "4")
        return f"gunicorn, {args.processes} worker{'s' if args.processes > 1 else ''} × {threads} threads (gthread)"
    return "one daphne process" if args.processes == 1 else f"{args.processes} daphne processes on one socket"


def _clinic_prepare(secret: str) -> tuple[int, int]:
    """The bench clinic, created or re-keyed (the encryption key is new every run); its old events removed."""
    from cecilia.models import Clinic, WhatsAppProvider
    from conversations.models import InboundEvent

    channel = {
        "whatsapp_provider": WhatsAppProvider.EVOLUTION,
        "whatsapp_instance": INSTANCE,
        "whatsapp_api_url": "http://127.0.0.1:9/",  # never called: no worker runs
        "whatsapp_api_key": API_KEY,
        "whatsapp_webhook_secret": secret,
    }
    # values_list: the stored secrets were encrypted with an earlier run's key and are not read, only overwritten.
    clinic_id = Clinic.objects.filter(slug=CLINIC_SLUG).values_list("pk", flat=True).first()
    if clinic_id is None:
        clinic = Clinic.objects.create(
            name="Clínica Bench (webhooks)", slug=CLINIC_SLUG, timezone="America/Sao_Paulo", **channel
        )
        return clinic.pk, 0
    Clinic.objects.filter(pk=clinic_id).update(whatsapp_verify_token="", **channel)
    removed, _ = InboundEvent.objects.filter(clinic_id=clinic_id).only("pk").delete()
    return clinic_id, removed


def _body_template() -> bytes:
    payload = json.loads(FIXTURE.read_text())
    payload["instance"] = INSTANCE
    payload["apikey"] = API_KEY
    payload["data"]["key"]["id"] = ID_PLACEHOLDER
    return json.dumps(payload, ensure_ascii=False).encode()


def _body(template: bytes, message_id: str) -> bytes:
    return template.replace(ID_PLACEHOLDER.encode(), message_id.encode(), 1)


def _pg_setting(name: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        return cursor.fetchone()[0]


def _tool_version(tool: str) -> str:
    if tool == "python":
        return "Python asyncio generator (bench/webhook/load.py; wrk not used)"
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False).stdout
    return out.split(" [")[0].strip() or "wrk"


def _load_averages() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


# --- the server ---------------------------------------------------------------------------------------------------


def _server_start(context: Context, workdir: Path) -> None:
    """gunicorn as production starts it (its config file, WEB_WORKERS); or daphne as `make run` starts it (`-b -p`);
    with several daphne processes, each adopts one listening socket (`--fd`), which is how Channels' deployment docs
    run several daphne processes behind one port."""
    context.log_path = workdir / "server.log"
    daphne = [sys.executable, "-m", "daphne", "-v", "0"]
    application = "cecilia.asgi:application"
    listener = None
    if context.server == "gunicorn":
        commands = [
            [sys.executable, "-m", "gunicorn", "-c", "python:cecilia.gunicorn_conf",
             "--bind", f"127.0.0.1:{context.port}", "cecilia.wsgi:application"]
        ]  # fmt: skip
    elif context.processes == 1:
        commands = [[*daphne, "-b", "127.0.0.1", "-p", str(context.port), application]]
    else:
        listener = socket.create_server(("127.0.0.1", context.port), backlog=128)
        commands = [[*daphne, "--fd", str(listener.fileno()), application]] * context.processes
    try:
        with open(context.log_path, "wb") as log:
            for command in commands:
                context.servers.append(
                    subprocess.Popen(
                        command, cwd=BASE_DIR, env=context.env, stdout=log, stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL, preexec_fn=die_with_parent,
                        pass_fds=(listener.fileno(),) if listener else (),
                    )
                )  # fmt: skip
    finally:
        if listener is not None:
            listener.close()  # the servers hold their copies
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        _servers_check(context, "at start")
        with contextlib.suppress(OSError):
            status, _ = _request(context, "GET", "/health/live")
            if status == 200:
                pids = ", ".join(str(server.pid) for server in context.servers)
                print(f"{context.server} (pid {pids}) answering on 127.0.0.1:{context.port}.\n")
                return
        time.sleep(0.1)
    raise BenchSetupError(
        f"{context.server} did not answer /health/live within {SERVER_START_SECONDS:.0f} s:\n{_log_tail(context)}"
    )


def _servers_check(context: Context, when: str) -> None:
    for server in context.servers:
        if server.poll() is not None:
            raise BenchSetupError(
                f"{context.server} exited {when} with status {server.returncode}:\n{_log_tail(context)}"
            )


def _log_tail(context: Context, lines: int = 30) -> str:
    if context.log_path is None or not context.log_path.exists():
        return "(no log)"
    return "\n".join(context.log_path.read_text(errors="replace").splitlines()[-lines:])


def _request(
    context: Context, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", context.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _smoke(context: Context) -> None:
    """One webhook stored, its redelivery a duplicate, a wrong secret refused, the bare view up: else nothing to
    measure."""
    body = _body(context.template, f"SMOKE{context.run_tag}")
    headers = {"Content-Type": "application/json", "X-Cecilia-Webhook-Secret": context.secret}
    checks = [
        ("webhook", _request(context, "POST", WEBHOOK_PATH, body, headers), 200, b'"stored"'),
        ("redelivery", _request(context, "POST", WEBHOOK_PATH, body, headers), 200, b'"duplicate"'),
        (
            "wrong secret",
            _request(context, "POST", WEBHOOK_PATH, body, {**headers, "X-Cecilia-Webhook-Secret": "wrong"}),
            401,
            b"",
        ),
        ("bare view", _request(context, "POST", BARE_PATH, body, headers), 200, b"ok"),
    ]
    for name, (status, answer), expected, fragment in checks:
        if status != expected or fragment not in answer:
            raise BenchSetupError(
                f"smoke test {name!r}: expected {expected} with {fragment!r}, got {status} {answer[:300]!r}\n"
                f"{_log_tail(context)}"
            )


def _log_summary(context: Context) -> str:
    """The server's log lines at WARNING or above, counted by message (the smoke test's refusal is one)."""
    from collections import Counter

    if context.log_path is None or not context.log_path.exists():
        return "Server log: none."
    counts: Counter[str] = Counter()
    for line in context.log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
            key = f"{record.get('level', '?')} {record.get('logger', '?')}: {str(record.get('message', ''))[:100]}"
        except (json.JSONDecodeError, AttributeError):
            key = f"(not JSON) {line[:100]}"
        counts[key] += 1
    if not counts:
        return "Server log: empty (nothing at WARNING or above)."
    lines = [f"  {count:>6} × {key}" for key, count in counts.most_common(8)]
    return "Server log, lines by message (WARNING and above with the default --log-level):\n" + "\n".join(lines)


def _cleanup(context: Context) -> None:
    for server in context.servers:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
    for server in context.servers:
        try:
            server.wait(SERVER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    with contextlib.suppress(Exception):
        context.redis.flushdb()
    with contextlib.suppress(Exception):
        from django.db import connection

        connection.close()


# --- phases -------------------------------------------------------------------------------------------------------


def _run_phases(args: argparse.Namespace, context: Context) -> list[Outcome]:
    phases = []
    if args.warmup:
        phases += [
            Phase("warm-up", "webhook", args.connections, args.warmup, measured=False),
            Phase("warm-up", "bare", args.connections, args.warmup, measured=False),
        ]
    phases += [Phase("webhook", "webhook", args.connections, args.duration)]
    phases += [Phase("bare view", "bare", args.connections, args.duration)]
    if args.low_connections:
        phases += [Phase("webhook", "webhook", args.low_connections, args.duration)]
        phases += [Phase("bare view", "bare", args.low_connections, args.duration)]
    if args.paced_rate:
        phases += [Phase("webhook", "webhook", args.connections, args.duration, rate=args.paced_rate)]
    outcomes = []
    for number, phase in enumerate(phases):
        how = f"{phase.rate:.0f}/s offered over up to" if phase.rate else "at"
        print(f"{phase.label} → {phase.path} {how} {phase.connections} connections for {phase.seconds} s …", flush=True)
        outcome = _run_phase(context, phase, prefix=f"{context.run_tag}{number:02X}", verbose=args.verbose)
        outcomes.append(outcome)
        _servers_check(context, f"during {phase.name}")
        time.sleep(1)  # let the server settle between phases
    return outcomes


def _run_phase(context: Context, phase: Phase, *, prefix: str, verbose: bool) -> Outcome:
    load_average = os.getloadavg()[0]
    queued_before = _queued(context)
    sampler = _Sampler(context)
    in_process = phase.rate is not None or context.load_tool == "python"  # the Python generators run in the bench
    before = _cpu(context, in_process)
    sampler.start()
    try:
        result = _load(context, phase, prefix, verbose)
    finally:
        sampler.stop()
    after = _cpu(context, in_process)
    outcome = Outcome(phase=phase, prefix=prefix, load_average=load_average, result=result)
    outcome.cpu = _cpu_shares(before, after)
    outcome.peak_threads = sampler.peak_threads
    outcome.peak_db_connections = sampler.peak_db
    outcome.peak_all_connections = sampler.peak_all
    if phase.target == "webhook":
        outcome.stored = _stored_after_drain(context, prefix)
    outcome.enqueued = _queued(context) - queued_before
    return outcome


def _load(context: Context, phase: Phase, prefix: str, verbose: bool) -> dict[str, Any]:
    if phase.rate is not None:
        from bench.webhook.load import run_paced

        return run_paced(
            host="127.0.0.1",
            port=context.port,
            path=phase.path,
            template=context.template,
            prefix=prefix,
            secret=context.secret,
            connections=phase.connections,
            rate=phase.rate,
            seconds=phase.seconds,
        )
    if context.load_tool == "python":
        from bench.webhook.load import run

        return run(
            host="127.0.0.1",
            port=context.port,
            path=phase.path,
            template=context.template,
            prefix=prefix,
            secret=context.secret,
            connections=phase.connections,
            seconds=phase.seconds,
        )
    command = [
        "wrk", "-t", str(min(context.threads, phase.connections)), "-c", str(phase.connections),
        "-d", f"{phase.seconds}s", "--timeout", "10s", "--latency", "-s", str(LUA_SCRIPT),
        f"http://127.0.0.1:{context.port}{phase.path}", "--", str(context.body_file), prefix, context.secret,
    ]  # fmt: skip
    completed = subprocess.run(
        command, capture_output=True, text=True, check=False, preexec_fn=die_with_parent, timeout=phase.seconds + 60
    )
    if verbose:
        print(completed.stdout.replace(context.secret, "<secret>"))
    for line in completed.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line.removeprefix("BENCH_RESULT "))
    raise BenchSetupError(
        f"wrk gave no result (status {completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
    )


def _stored_after_drain(context: Context, prefix: str) -> int:
    """Rows of this phase once the server has finished what was in flight when the load stopped."""
    from conversations.models import InboundEvent

    rows = InboundEvent.objects.filter(
        clinic_id=context.clinic_id, dedupe_key__startswith=f"{INSTANCE}|messages.upsert|{prefix}"
    )
    deadline = time.monotonic() + DRAIN_SECONDS
    count, same = -1, 0
    while time.monotonic() < deadline and same < 3:
        time.sleep(0.2)
        now = rows.count()
        same = same + 1 if now == count else 0
        count = now
    return count


def _queued(context: Context) -> int:
    """Messages waiting in the bench's Redis database (Celery's queues are lists; nothing else there is)."""
    return sum(context.redis.llen(key) for key in context.redis.scan_iter(_type="LIST"))


# --- where the CPU goes -------------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_times(pid: int | str, *, children: bool = False) -> float:
    """CPU seconds of a process (all its threads); with `children`, also those of the children it has reaped."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def _descendants(pid: int) -> list[int]:
    """The process and every process below it (gunicorn's master and its workers)."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{entry.name}/stat") as stat:
            parents.setdefault(int(stat.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def _server_seconds(context: Context) -> float:
    """CPU of every server process, workers included (gunicorn's are the master's children)."""
    total = 0.0
    for server in context.servers:
        for pid in _descendants(server.pid):
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += _proc_times(pid)
    return total


def _postgres_seconds() -> float | None:
    """Every PostgreSQL process's CPU time, plus what the postmaster reaped (a backend lives one request here)."""
    total, found = 0.0, False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm") as comm:
                if comm.read().strip() != "postgres":
                    continue
            total += _proc_times(entry.name, children=True)
            found = True
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return total if found else None


def _cpu(context: Context, in_process: bool) -> Cpu:
    redis_seconds = None
    with contextlib.suppress(Exception):
        info = context.redis.info("cpu")
        redis_seconds = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    usage = resource.getrusage(resource.RUSAGE_SELF if in_process else resource.RUSAGE_CHILDREN)
    return Cpu(
        wall=time.monotonic(),
        server=_server_seconds(context),
        load=usage.ru_utime + usage.ru_stime,
        postgres=_postgres_seconds(),
        redis=redis_seconds,
        machine=machine_busy_seconds(),
    )


def _cpu_shares(before: Cpu, after: Cpu) -> dict[str, float | None]:
    """Each party's CPU over the phase, in % of one core (the machine's total can reach cores × 100)."""
    wall = after.wall - before.wall

    def share(first: float | None, last: float | None) -> float | None:
        return None if first is None or last is None else max(0.0, (last - first) / wall * 100)

    shares = {
        "server": share(before.server, after.server),
        "load": share(before.load, after.load),
        "postgres": share(before.postgres, after.postgres),
        "redis": share(before.redis, after.redis),
        "machine": share(before.machine, after.machine),
    }
    known = sum(value for key, value in shares.items() if key != "machine" and value is not None)
    shares["other"] = max(0.0, (shares["machine"] or 0.0) - known)
    return shares


class _Sampler(threading.Thread):
    """Peak thread count of the server and peak PostgreSQL connections (this database; all) during a phase."""

    def __init__(self, context: Context) -> None:
        super().__init__(daemon=True)
        self.roots = [server.pid for server in context.servers]
        self.peak_threads = self.peak_db = self.peak_all = 0
        self._stop_event = threading.Event()
        self._conninfo = _conninfo()

    def run(self) -> None:
        import psycopg

        try:
            conn = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error:
            conn = None
        query = (
            "SELECT count(*) FILTER (WHERE datname = current_database()) - 1, count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend'"
        )
        while not self._stop_event.wait(0.25):
            pids = [pid for root in self.roots for pid in _descendants(root)]
            self.peak_threads = max(self.peak_threads, sum(_threads(pid) for pid in pids))
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    mine, everyone = conn.execute(query).fetchone()
                    self.peak_db = max(self.peak_db, mine)
                    self.peak_all = max(self.peak_all, everyone)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _threads(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def _conninfo() -> str:
    from django.db import connection

    params = connection.get_connection_params()
    return " ".join(
        f"{key}={value}"
        for key, value in (
            ("dbname", params.get("dbname")),
            ("host", params.get("host")),
            ("port", params.get("port")),
            ("user", params.get("user")),
            ("password", params.get("password")),
        )
        if value
    )


# --- report -------------------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table, the first column left-aligned, the others right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        padded = [
            cells[0].ljust(widths[0]),
            *(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)),
        ]
        return "| " + " | ".join(padded) + " |"

    print(line(header))
    print("|" + "|".join(["-" * (widths[0] + 2)] + ["-" * (width + 1) + ":" for width in widths[1:]]) + "|")
    for row in rows:
        print(line(row))


def _print_results(outcomes: list[Outcome], args: argparse.Namespace) -> None:
    print()
    _table(
        ["phase", "conns", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "non-2xx", "socket err",
         "stored", "enqueued"],
        [
            [
                outcome.phase.name, str(outcome.phase.connections), f"{outcome.result['requests']:,}",
                f"{outcome.rate:.0f}", f"{outcome.ms('p50_us'):.1f}", f"{outcome.ms('p90_us'):.1f}",
                f"{outcome.ms('p99_us'):.1f}", f"{outcome.ms('max_us'):.0f}", str(outcome.result["status"]),
                str(outcome.socket_errors), _fmt(outcome.stored), _fmt(outcome.enqueued),
            ]
            for outcome in outcomes
        ],
    )  # fmt: skip
    print(
        "\nCPU during each measured phase in % of one core (the machine has "
        f"{os.cpu_count()} × 100 %); 'other' is the machine's busy time outside the four (other work on the "
        "machine, the bench's own process). Load average before the phase (the server's runnable threads count "
        "in it)."
    )
    print()
    _table(
        ["phase", "conns", "server", "load gen", "PostgreSQL", "Redis", "other", "machine", "load avg",
         "server threads", "DB conns (all)"],
        [
            [
                outcome.phase.name, str(outcome.phase.connections), _fmt(outcome.cpu["server"]),
                _fmt(outcome.cpu["load"]), _fmt(outcome.cpu["postgres"]), _fmt(outcome.cpu["redis"]),
                _fmt(outcome.cpu["other"]), _fmt(outcome.cpu["machine"]), f"{outcome.load_average:.2f}",
                str(outcome.peak_threads), f"{outcome.peak_db_connections} ({outcome.peak_all_connections})",
            ]
            for outcome in outcomes
            if outcome.phase.measured
        ],
    )  # fmt: skip
    _print_claims(outcomes, args)


def _print_claims(outcomes: list[Outcome], args: argparse.Namespace) -> None:
    measured = [outcome for outcome in outcomes if outcome.phase.measured]

    def pick(target: str, connections: int, *, paced: bool = False) -> Outcome | None:
        return next(
            (
                o
                for o in measured
                if o.phase.target == target
                and o.phase.connections == connections
                and (o.phase.rate is not None) == paced
            ),
            None,
        )

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    conns = args.connections
    webhook, bare = pick("webhook", conns), pick("bare", conns)
    if webhook is None or bare is None:
        return
    print(f"\nTargets ({_server_label(args)}; closed loop: wrk keeps all {conns} connections busy):")
    print(
        f"  {verdict(webhook.rate >= TARGET_RATE)}  ≥ {TARGET_RATE:.0f} webhooks/s at {conns} connections: "
        f"{webhook.rate:.0f}/s"
    )
    p99 = webhook.ms("p99_us")
    mean_ms = _fmt(conns / webhook.rate * 1000 if webhook.rate else None)
    print(
        f"  {verdict(webhook.result['requests'] > 0 and p99 < TARGET_P99_MS)}  p99 < {TARGET_P99_MS:.0f} ms at "
        f"{conns} connections, closed loop: "
        f"{p99:.1f} ms (p50 {webhook.ms('p50_us'):.1f} ms). With {conns} requests always in flight the mean latency "
        f"is {conns} / throughput = {mean_ms} ms: under a closed loop this target needs more "
        f"than {conns / TARGET_P99_MS * 1000:.0f} webhooks/s"
    )
    paced = pick("webhook", conns, paced=True)
    if paced is not None and paced.phase.rate:
        p99 = paced.ms("p99_us")
        print(
            f"  {verdict(paced.result['requests'] > 0 and p99 < TARGET_P99_MS)}  p99 < {TARGET_P99_MS:.0f} ms at "
            f"{paced.phase.rate:.0f} webhooks/s "
            f"offered over up to {conns} connections, open loop: {p99:.1f} ms (p50 {paced.ms('p50_us'):.1f} ms; "
            f"{paced.rate:.0f}/s answered; latency counted from when each request was due)"
        )
    share = webhook.rate / bare.rate if bare.rate else 0.0
    print(
        f"  {verdict(share >= TARGET_SHARE_OF_BARE)}  ≥ {TARGET_SHARE_OF_BARE:.0%} of the bare view's throughput: "
        f"{webhook.rate:.0f}/s against {bare.rate:.0f}/s = {share:.0%}"
    )
    low, low_bare = pick("webhook", args.low_connections), pick("bare", args.low_connections)
    if low is not None and low_bare is not None:
        print(
            f"  (at {args.low_connections} connections: webhook {low.rate:.0f}/s, p50 {low.ms('p50_us'):.1f} ms, "
            f"p99 {low.ms('p99_us'):.1f} ms; bare view {low_bare.rate:.0f}/s, p50 {low_bare.ms('p50_us'):.1f} ms)"
        )

    print("\nChecks (every webhook phase, warm-up included):")
    for outcome in outcomes:
        if outcome.phase.target == "webhook":
            _print_checks(outcome)


def _print_checks(outcome: Outcome) -> None:
    name = f"{outcome.phase.name} c={outcome.phase.connections}"
    answered = outcome.answered_2xx
    stored = outcome.stored or 0
    in_flight = stored - answered
    generated = outcome.result.get("generated", 0)
    # wrk stops at the deadline without reading the answers still in flight; the server stores those too. So
    # `stored` may exceed the 2xx answers by at most one request per connection, never fall below them.
    lossless = 0 <= in_flight <= outcome.phase.connections and stored <= max(generated, answered)
    print(
        f"  {'ok  ' if lossless else 'FAIL'}  {name}: {answered:,} answered 2xx, {stored:,} rows stored"
        + (f" ({in_flight} answered after the load tool stopped reading)" if in_flight > 0 else "")
        + ("" if lossless else f" — LOST {-in_flight}" if in_flight < 0 else "")
    )
    enqueued = outcome.enqueued or 0
    print(
        f"  {'ok  ' if enqueued == stored else 'FAIL'}  {name}: {enqueued:,} tasks enqueued for {stored:,} rows stored"
    )
    clean = outcome.result["status"] == 0 and outcome.socket_errors == 0
    unsent = outcome.result.get("unsent", 0)
    print(
        f"  {'ok  ' if clean else 'FAIL'}  {name}: {outcome.result['status']} non-2xx answers, "
        f"{outcome.socket_errors} socket errors (connect/read/write/timeout)"
        + (f"; {unsent:,} requests due never sent (every connection busy until the end)" if unsent else "")
    )


if __name__ == "__main__":
    sys.exit(main())
