"""`python -m cecilia.dev run` and `python -m cecilia.dev exec -- CMD...`: the README's run and test commands.

run   Services (see `services`), DEBUG=1 unless DEBUG is set, `manage.py migrate --noinput`, `manage.py seed_demo`,
      then web (daphne), worker and beat (Celery) together, each output line prefixed with the process name. Once
      /health/ready answers, a banner shows the admin URL and the demo logins. Ctrl-C, SIGTERM or SIGHUP stop the
      children (SIGTERM, then SIGKILL after a grace period), then the embedded servers; exit status 0. A child that
      exits on its own stops everything, with a message naming it and exit status 1.
exec  Services, then CMD with DATABASE_URL / REDIS_URL exported (and this interpreter's folder first on PATH, so
      `python` is the venv's); the exit status is CMD's. The embedded servers stop afterwards, also on Ctrl-C.

Children run with this interpreter (sys.executable), so nothing needs the venv activated.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

from cecilia.dev.services import ServiceError, Services, ensure_services, port_free, read_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DEFAULT_SETTINGS_MODULE = "cecilia.settings"

# How long children get to exit after SIGTERM before SIGKILL (Celery finishes its running task in a warm shutdown);
# one more Ctrl-C cuts it short.
STOP_GRACE_SECONDS = 10.0
BEAT_GRACE_SECONDS = 3.0
POLL_SECONDS = 0.1
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PROBE_EVERY_SECONDS = 0.5
# After this long with /health/live answering but /health/ready not, say so (the processes keep running).
NOT_READY_WARNING_SECONDS = 60.0

BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

DEMO_PASSWORD = "cecilia-demo"  # noqa: S105 - the demo logins' published password, printed on purpose
# (role, login) pairs created by `manage.py seed_demo`; all share DEMO_PASSWORD. Development data only.
DEMO_LOGINS = (("receptionist", "recepcao"), ("manager", "gestao"), ("superuser", "admin"))

_COLORS = {"web": "36", "worker": "33", "beat": "35", "migrate": "34", "seed": "34", "cecilia": "32;1"}
_NAME_WIDTH = 7


# --- output -------------------------------------------------------------------------------------------------------


class Console:
    """Line-prefixed output shared by the reader threads and the main thread (one lock, whole lines)."""

    def __init__(self, stream: TextIO, errors: TextIO) -> None:
        self._stream = stream
        self._errors = errors
        self._lock = threading.Lock()
        self._color = stream.isatty() and not os.environ.get("NO_COLOR")

    def line(self, name: str, text: str) -> None:
        """Write one line of process `name`'s output, prefixed with the name."""
        prefix = f"{name:<{_NAME_WIDTH}}|"
        if self._color:
            prefix = f"\033[{_COLORS.get(name, '0')}m{prefix}\033[0m"
        with self._lock:
            self._stream.write(f"{prefix} {text}\n")
            self._stream.flush()

    def say(self, text: str) -> None:
        """A message from the runner itself."""
        for part in text.splitlines() or [""]:
            self.line("cecilia", part)

    def note(self, text: str) -> None:
        """A message from the runner on stderr, where it does not mix with a command's own output (`exec`)."""
        with self._lock:
            self._errors.write(f"cecilia.dev: {text}\n")
            self._errors.flush()

    def error(self, text: str) -> None:
        """An error for the person at the terminal, on stderr (no traceback: the text says what to do)."""
        with self._lock:
            self._errors.write(f"cecilia.dev: error: {text}\n")
            self._errors.flush()


# --- signals ------------------------------------------------------------------------------------------------------


@dataclass
class StopSignals:
    """SIGINT, SIGTERM and SIGHUP become a flag the main loop polls, so that shutdown happens in one place, in order.

    The handler only records (it must not print: the main thread may hold the console lock when it runs).
    """

    received: list[str] = field(default_factory=list)

    def install(self) -> None:
        """Replace the default handlers (which would raise KeyboardInterrupt anywhere, or kill us without cleanup)."""
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._record)

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum).name)

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived."""
        return bool(self.received)


# --- child processes ----------------------------------------------------------------------------------------------


@dataclass
class Child:
    """A started process; `reader` copies its output to the console once started (see `spawn_all`)."""

    name: str
    process: subprocess.Popen[bytes]
    reader: threading.Thread


def spawn_all(commands: dict[str, list[str]], env: dict[str, str], console: Console) -> list[Child]:
    """Start each command (name -> argv), then the threads copying their output, and return the children.

    Each child gets its own session, so the terminal's Ctrl-C reaches only the runner, which stops children in
    order; stdin is closed; stdout and stderr go to the console line by line under the child's name. On Linux a
    child is also sent SIGTERM if the runner dies without stopping it (even by SIGKILL). All forks happen before any
    reader thread starts: the code run in the child between fork and exec is only safe without other threads.
    """
    children: list[Child] = []
    for name, argv in commands.items():
        process = subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_terminate_with_parent(os.getpid()),  # safe: no other thread runs yet (see above)
        )
        assert process.stdout is not None
        reader = threading.Thread(
            target=_copy_lines, args=(process.stdout, name, console), name=f"out-{name}", daemon=True
        )
        children.append(Child(name, process, reader))
    for child in children:
        child.reader.start()
    return children


def _terminate_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when the runner dies (None elsewhere: then nothing does)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the runner died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child


def _copy_lines(stream: IO[bytes], name: str, console: Console) -> None:
    """Copy a child's output to the console until the child closes it."""
    with stream:
        for raw in iter(stream.readline, b""):
            console.line(name, raw.decode("utf-8", "replace").rstrip("\r\n"))


def stop_children(children: Sequence[Child], console: Console, signals: StopSignals) -> None:
    """Stop every child: SIGTERM to each, wait for it up to its grace period (`grace_seconds`; one more stop signal
    cuts every wait short), then SIGKILL its whole process group, which also removes helpers a child left behind
    (Celery's pool processes). Returns when all are reaped."""
    running = [child for child in children if child.process.poll() is None]
    for child in running:
        # Only the leader: Celery's main process stops its pool itself; signalling the pool too makes noise.
        with contextlib.suppress(ProcessLookupError):
            child.process.terminate()
    signals_before = len(signals.received)
    started_at = time.monotonic()
    while running:
        hurry = len(signals.received) > signals_before
        for child in list(running):
            if child.process.poll() is not None:
                running.remove(child)
            elif hurry or time.monotonic() - started_at >= grace_seconds(child.name):
                console.say(f"{child.name} is still running; killing it")
                _kill_group(child)
                running.remove(child)
        if running:
            time.sleep(POLL_SECONDS)
    for child in children:
        _kill_group(child)  # whatever a child that did exit left in its group
        child.process.wait()
        child.reader.join(timeout=2)


def grace_seconds(name: str) -> float:
    """How long process `name` gets to exit after SIGTERM before SIGKILL.

    Celery beat gets little: it has no work in flight, and a SIGTERM that arrives while its database scheduler is
    still loading makes it deadlock (its handler queries the connection that the interrupted query holds).
    """
    return BEAT_GRACE_SECONDS if name == "beat" else STOP_GRACE_SECONDS


def _kill_group(child: Child) -> None:
    """SIGKILL the child's process group (it leads one: start_new_session), ignoring a group already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.process.pid, signal.SIGKILL)


def _wait_for_step(child: Child, signals: StopSignals, console: Console) -> int | None:
    """Wait for a setup step; its exit status, or None when a stop signal interrupted it (it is then stopped)."""
    while child.process.poll() is None:
        if signals.requested:
            console.say(f"{signals.received[0]} received; stopping {child.name}")
            stop_children([child], console, signals)
            return None
        time.sleep(POLL_SECONDS)
    child.reader.join(timeout=2)
    return child.process.returncode


# --- run ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """Where the web process listens and how the banner names it."""

    host: str
    port: int
    admin_path: str

    @property
    def local_host(self) -> str:
        """The address to reach the web process from this machine (a wildcard bind is reached on loopback)."""
        return "127.0.0.1" if self.host in ("", "0.0.0.0", "::", "localhost") else self.host  # noqa: S104

    @property
    def admin_url(self) -> str:
        """The admin's address as the person types it into a browser."""
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        return f"http://{host}:{self.port}/{self.admin_path.lstrip('/')}"


def settings_environ() -> dict[str, str]:
    """The variables as settings.py sees them: the environment, over the `.env` file beside manage.py."""
    return {**read_dotenv(BASE_DIR / ".env"), **os.environ}


def run_config(environ: dict[str, str]) -> RunConfig:
    """HOST (default 127.0.0.1), PORT (default 8000) and ADMIN_URL (default admin/, as settings.py reads it).

    Raises ValueError with a readable message on a PORT that is not a port number.
    """
    raw_port = environ.get("PORT", "8000")
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise ValueError(f"PORT must be a TCP port number, not {raw_port!r}")
    return RunConfig(
        host=environ.get("HOST", "127.0.0.1"), port=int(raw_port), admin_path=environ.get("ADMIN_URL", "admin/")
    )


def process_commands(python: str, config: RunConfig) -> dict[str, list[str]]:
    """The three long-running processes, by name, in start order."""
    return {
        # -v 0: daphne's own access log prints paths unmasked; cecilia.access logs each request, masked.
        "web": [
            python,
            "-m",
            "daphne",
            "-v",
            "0",
            "-b",
            config.host,
            "-p",
            str(config.port),
            "cecilia.asgi:application",
        ],
        # Two pool processes for a two-core laptop; gossip and mingle only matter between several workers, and
        # mingle alone adds a second to every start.
        "worker": [
            python,
            "-m",
            *shlex.split("celery -A cecilia worker -l INFO --concurrency 2 --without-gossip --without-mingle"),
        ],
        "beat": [python, "-m", *shlex.split("celery -A cecilia beat -l INFO --scheduler " + BEAT_SCHEDULER)],
    }


def child_environ(services: Services, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus the service URLs, unbuffered Python output (lines reach the console as they
    are written) and this interpreter's folder first on PATH (so `python` means the venv's)."""
    env = {**os.environ, **services.environ(), "PYTHONUNBUFFERED": "1", **(extra or {})}
    # Importing the `cecilia` package (to reach this module) ran cecilia/celery.py, which sets this default in our
    # environment. Passing it on would override pytest's own choice (settings_test, from pyproject.toml); every
    # other entry point (manage.py, asgi, celery) sets the same default itself.
    if env.get("DJANGO_SETTINGS_MODULE") == DEFAULT_SETTINGS_MODULE:
        del env["DJANGO_SETTINGS_MODULE"]
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", os.defpath)])
    return env


def probe(host: str, port: int, path: str, timeout: float = 2.0) -> int | None:
    """GET http://host:port/path directly (no proxy from the environment); the status, or None when unreachable."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def banner(config: RunConfig, demo_password_known: bool) -> str:
    """What the person needs once everything answers: where to go, and how to log in.

    seed_demo gives new logins DEMO_PASSWORD only with DEBUG on (a random one, printed in its output, otherwise).
    """
    password = DEMO_PASSWORD if demo_password_known else "<the password seed_demo printed above>"
    logins = [f"    {role:<13} {login} / {password}" for role, login in DEMO_LOGINS]
    rule = "-" * 64
    head = [rule, "Cecilia is running.", f"  Admin: {config.admin_url}", "  Demo logins:"]
    return "\n".join([*head, *logins, "  Press Ctrl-C to stop.", rule])


def _truthy(value: str) -> bool:
    """A boolean environment value as settings.py (django-environ) reads it."""
    return value.strip().lower() in ("true", "on", "ok", "y", "yes", "1")


def run(console: Console, signals: StopSignals) -> int:
    """The `run` command (see the module docstring). Returns the process exit status."""
    try:
        config = run_config(settings_environ())
    except ValueError as exc:
        console.error(str(exc))
        return 2
    if not port_free(config.port, config.local_host):
        console.error(
            f"port {config.port} on {config.local_host} is in use (another `make run`?). Stop that, or "
            f"choose another port: make run PORT={config.port + 1}"
        )
        return 1
    try:
        services = ensure_services(BASE_DIR, report=console.say)
    except ServiceError as exc:
        console.error(str(exc))
        return 1
    children: list[Child] = []
    try:
        return _run_with(services, config, console, signals, children)
    finally:
        if children:
            console.say("stopping web, worker and beat")
        stop_children(children, console, signals)
        if services.embedded:
            console.say(f"stopping the embedded {' and '.join(services.embedded)}")
        services.stop(console.say)
        console.say("stopped")


def _run_with(
    services: Services, config: RunConfig, console: Console, signals: StopSignals, children: list[Child]
) -> int:
    """Set up the database, start the processes into `children` and watch them until a signal or a death."""
    configured = settings_environ()
    env = child_environ(
        services, {"DEBUG": configured.get("DEBUG", "1"), "LOG_FORMAT": configured.get("LOG_FORMAT", "console")}
    )
    python = sys.executable
    steps = {
        "migrate": [python, "manage.py", "migrate", "--noinput"],
        "seed": [python, "manage.py", "seed_demo"],  # idempotent: creates what is missing, keeps the rest
    }
    for name, argv in steps.items():
        if signals.requested:
            return 0
        [step] = spawn_all({name: argv}, env, console)
        status = _wait_for_step(step, signals, console)
        if status is None:
            return 0
        if status != 0:
            console.error(f"`{' '.join(argv[1:])}` failed with exit status {status} (its output is above)")
            return 1

    children.extend(spawn_all(process_commands(python, config), env, console))
    return _watch(children, config, _truthy(env["DEBUG"]), console, signals)


def _watch(
    children: list[Child], config: RunConfig, demo_password_known: bool, console: Console, signals: StopSignals
) -> int:
    """Poll until a stop signal (0) or a child's exit (1); print the banner once the web process is ready."""
    started_at = time.monotonic()
    next_probe = started_at
    ready = warned = False
    while True:
        if signals.requested:
            console.say(f"{signals.received[0]} received; stopping (Ctrl-C again to stop at once)")
            return 0
        for child in children:
            status = child.process.poll()
            if status is not None:
                how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
                console.error(f"{child.name} {how}; stopping everything (its output is above)")
                return 1
        now = time.monotonic()
        if not ready and now >= next_probe:
            next_probe = now + PROBE_EVERY_SECONDS
            if probe(config.local_host, config.port, "/health/ready") == 200:
                ready = True
                console.say(banner(config, demo_password_known))
            elif not warned and now - started_at > NOT_READY_WARNING_SECONDS:
                warned = True
                live = probe(config.local_host, config.port, "/health/live")
                console.say(
                    f"warning: /health/ready has not answered 200 after {NOT_READY_WARNING_SECONDS:.0f}s "
                    f"(/health/live: {live or 'no answer'}); the admin is at {config.admin_url}"
                )
        time.sleep(POLL_SECONDS)


# --- exec ---------------------------------------------------------------------------------------------------------


def exec_command(command: Sequence[str], console: Console, signals: StopSignals) -> int:
    """The `exec` command (see the module docstring). Returns CMD's exit status (128 + N when killed by signal N)."""
    if not command:
        console.error("exec needs a command, e.g.: python -m cecilia.dev exec -- python -m pytest")
        return 2
    try:
        services = ensure_services(BASE_DIR, report=console.note)
    except ServiceError as exc:
        console.error(str(exc))
        return 1
    try:
        if signals.requested:
            return 130
        return _exec_child(command, child_environ(services), console)
    finally:
        services.stop(console.note)


def _exec_child(command: Sequence[str], env: dict[str, str], console: Console) -> int:
    """Run `command` in the foreground (same process group and terminal as us) and return its exit status.

    The terminal's Ctrl-C reaches the command directly, so SIGINT is ignored here while it runs (as a shell does);
    SIGTERM and SIGHUP, which may be meant for us alone, are passed on.
    """
    try:
        process = subprocess.Popen(list(command), cwd=os.getcwd(), env=env)
    except OSError as exc:
        console.error(f"cannot run {command[0]!r}: {exc.strerror or exc}")
        return 127

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)

    previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous[signum] = signal.signal(signum, forward)
    try:
        status = process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 - status if status < 0 else status


# --- entry point --------------------------------------------------------------------------------------------------


USAGE = """usage: python -m cecilia.dev run
       python -m cecilia.dev exec -- COMMAND [ARG...]

run   start PostgreSQL and Redis (embedded under ./.data/ unless DATABASE_URL / REDIS_URL are set), migrate, load the
      demo data, then serve web + worker + beat until Ctrl-C (HOST, PORT: where the web listens; default
      127.0.0.1:8000)
exec  run COMMAND with DATABASE_URL / REDIS_URL pointing at those services; exit with its status"""


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command; returns the exit status."""
    signals = StopSignals()
    signals.install()  # first, so that an early Ctrl-C cannot leave a server behind or print a traceback
    args = list(sys.argv[1:] if argv is None else argv)
    console = Console(sys.stdout, sys.stderr)
    if args[:1] == ["run"] and len(args) == 1:
        return run(console, signals)
    if args[:1] == ["exec"]:
        command = args[1:]
        return exec_command(command[1:] if command[:1] == ["--"] else command, console, signals)
    if args[:1] in (["-h"], ["--help"], ["help"]):
        print(USAGE)
        return 0
    print(USAGE, file=sys.stderr)
    return 2
