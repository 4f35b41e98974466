"""The Python load generators of bench.webhook: closed loop when wrk is not installed, and open loop (paced).

`run`: the same traffic as `load.lua`: `connections` keep-alive HTTP/1.1 connections, each sending one request after
the other for `seconds`, every body the template with a new message id. Plain asyncio streams, not an HTTP client
library: on two cores the load generator competes with the server for CPU, and the lighter it is the less it steals.
Still heavier per request than wrk (C): its numbers are a lower bound of what the server does. Unlike wrk, a request
in flight when time is up is finished, not cut.

`run_paced`: open loop, what wrk (4.x) cannot do. Requests are due at a fixed rate whatever the server does, sent on
up to `connections` keep-alive connections (a due request waits for a free one), and each latency runs from the
moment the request was due, so a server that falls behind shows it in the percentiles instead of slowing the load
down (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time

from bench import percentile

REQUEST_TIMEOUT_SECONDS = 10.0


async def _one_connection(
    number: int,
    host: str,
    port: int,
    path: str,
    template: bytes,
    prefix: str,
    secret: str,
    deadline: float,
    stats: dict,
) -> None:
    head = _head(host, port, path, secret)
    generated = 0
    reader = writer = None
    while time.perf_counter() < deadline:
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                stats["connect"] += 1
                await asyncio.sleep(0.05)
                continue
        generated += 1
        stats["generated"] += 1
        body = template.replace(b"__MESSAGE_ID__", f"{prefix}{number:02X}{generated:08X}".encode(), 1)
        started = time.perf_counter()
        try:
            status = await _send(reader, writer, head, body)
        except TimeoutError:
            stats["timeout"] += 1
            writer.close()
            writer = None
            continue
        except (OSError, ValueError, asyncio.IncompleteReadError):
            stats["read"] += 1
            writer.close()
            writer = None
            continue
        stats["latencies"].append(time.perf_counter() - started)
        stats["requests"] += 1
        if status >= 400:
            stats["status"] += 1
    if writer is not None:
        writer.close()


async def _send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: str, body: bytes) -> int:
    writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT_SECONDS)


async def _read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
    length = None
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise ValueError("response without Content-Length")
    await reader.readexactly(length)
    return int(parts[1])


def _head(host: str, port: int, path: str, secret: str) -> str:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
    if secret:
        head += f"X-Cecilia-Webhook-Secret: {secret}\r\n"
    return head


def _new_stats() -> dict:
    stats: dict = {"requests": 0, "generated": 0, "connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    stats["unsent"] = 0  # open loop only: requests due that never got a connection before the end
    stats["latencies"] = []
    return stats


async def _run(**kwargs) -> dict:
    connections = kwargs.pop("connections")
    seconds = kwargs.pop("seconds")
    stats = _new_stats()
    began = time.perf_counter()
    deadline = began + seconds
    await asyncio.gather(
        *(_one_connection(number, deadline=deadline, stats=stats, **kwargs) for number in range(connections))
    )
    stats["duration_us"] = int((time.perf_counter() - began) * 1e6)
    return stats


def run(
    *, host: str, port: int, path: str, template: bytes, prefix: str, secret: str, connections: int, seconds: float
) -> dict:
    """Drive the load; return the numbers in the shape of load.lua's BENCH_RESULT line (microseconds)."""
    stats = asyncio.run(
        _run(
            host=host,
            port=port,
            path=path,
            template=template,
            prefix=prefix,
            secret=secret,
            connections=connections,
            seconds=seconds,
        )
    )
    return _summary(stats)


def _summary(stats: dict) -> dict:
    latencies = stats.pop("latencies") or [0.0]
    stats.update({f"p{pct}_us": int(percentile(latencies, pct) * 1e6) for pct in (50, 90, 99)})
    stats["max_us"] = int(max(latencies) * 1e6)
    stats["mean_us"] = sum(latencies) / len(latencies) * 1e6
    return stats


async def _run_paced(
    *,
    host: str,
    port: int,
    path: str,
    template: bytes,
    prefix: str,
    secret: str,
    connections: int,
    rate: float,
    seconds: float,
) -> dict:
    head = _head(host, port, path, secret)
    stats = _new_stats()
    idle: asyncio.Queue = asyncio.Queue()
    opened = 0

    async def one(number: int, due: float) -> None:
        nonlocal opened
        if idle.empty() and opened < connections:
            opened += 1
            try:
                idle.put_nowait(await asyncio.open_connection(host, port))
            except OSError:
                opened -= 1
                stats["connect"] += 1
                return
        try:
            reader, writer = await idle.get()
        except asyncio.CancelledError:
            stats["unsent"] += 1  # due, but every connection stayed busy until the end
            raise
        body = template.replace(b"__MESSAGE_ID__", f"{prefix}00{number:08X}".encode(), 1)
        try:
            status = await _send(reader, writer, head, body)
        except asyncio.CancelledError:
            stats["timeout"] += 1  # sent, still unanswered at the end
            writer.close()
            raise
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError) as exc:
            stats["timeout" if isinstance(exc, TimeoutError) else "read"] += 1
            writer.close()
            try:  # a replacement, so that requests waiting for a connection do not wait forever
                idle.put_nowait(await asyncio.open_connection(host, port))
            except OSError:
                opened -= 1
                stats["connect"] += 1
            return
        stats["latencies"].append(time.perf_counter() - due)
        stats["requests"] += 1
        if status >= 400:
            stats["status"] += 1
        idle.put_nowait((reader, writer))

    began = time.perf_counter()
    tasks = []
    number = 0
    while (due := began + number / rate) < began + seconds:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        stats["generated"] += 1
        tasks.append(asyncio.create_task(one(number, due)))
        number += 1
    if tasks:
        _, late = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_SECONDS + 5)
        for task in late:  # still waiting for a connection or an answer long after the end
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    stats["duration_us"] = int((time.perf_counter() - began) * 1e6)
    while not idle.empty():
        idle.get_nowait()[1].close()
    return _summary(stats)


def run_paced(
    *,
    host: str,
    port: int,
    path: str,
    template: bytes,
    prefix: str,
    secret: str,
    connections: int,
    rate: float,
    seconds: float,
) -> dict:
    """Offer `rate` requests/s for `seconds` over up to `connections` connections; numbers as `run` gives them."""
    return asyncio.run(
        _run_paced(
            host=host,
            port=port,
            path=path,
            template=template,
            prefix=prefix,
            secret=secret,
            connections=connections,
            rate=rate,
            seconds=seconds,
        )
    )
