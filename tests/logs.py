"""Reading what Cecilia logs, through the handler settings.LOGGING configures (its masking filters included)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from cecilia.observability.logging import JsonFormatter


@contextmanager
def default_handler_output() -> Iterator[io.StringIO]:
    """Point the configured "default" handler at a buffer, in JSON whatever LOG_FORMAT says, for the block."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "default")
    stream = io.StringIO()
    previous_stream, previous_formatter = handler.setStream(stream), handler.formatter
    handler.setFormatter(JsonFormatter())
    try:
        yield stream
    finally:
        handler.setStream(previous_stream)
        handler.setFormatter(previous_formatter)
