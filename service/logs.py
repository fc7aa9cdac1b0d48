"""Logging: one line per event, as text or JSON; context fields ride in `extra=`."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import msgspec

from .config import LogSettings
from .tracing import CURRENT

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_BLANK = logging.LogRecord("", 0, "", 0, "", (), None)
_STANDARD = frozenset(vars(_BLANK)) | {"message", "asctime"}
# makeRecord() adds `extra=` after the attributes LogRecord.__init__ sets, so a record's
# own fields start here in its __dict__: no need to test the ~20 standard ones each time.
_FIRST_EXTRA = len(vars(_BLANK))


def extra_fields(record: logging.LogRecord) -> Iterator[tuple[str, Any]]:
    for key, value in itertools.islice(record.__dict__.items(), _FIRST_EXTRA, None):
        if key not in _STANDARD and not key.startswith("_"):
            yield key, value


class _SecondClock:
    """strftime() once a second rather than once a line (a line is a few µs all told)."""

    def __init__(self, fmt: str, convert: Callable[[float], time.struct_time]) -> None:
        self._fmt = fmt
        self._convert = convert
        self._last: tuple[int, str] = (-1, "")  # one tuple: threads read it whole

    def __call__(self, created: float) -> str:
        second = int(created)
        last = self._last
        if last[0] != second:
            last = self._last = (second, time.strftime(self._fmt, self._convert(second)))
        return last[1]


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._clock = _SecondClock("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": f"{self._clock(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(extra_fields(record))
        trace = CURRENT.get()
        if trace is not None:  # a line of an attempt of a traced message
            doc["trace_id"], doc["span_id"] = trace.trace_id, trace.span_id
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(doc, enc_hook=str).decode()


class TextFormatter(logging.Formatter):
    """`2026-11-26 17:48:02,123 INFO    service.consumer: message succeeded [queue=…]`."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _SecondClock("%Y-%m-%d %H:%M:%S", time.localtime)

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{self._clock(record.created)},{int(record.msecs):03d} "
            f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        )
        fields = " ".join(f"{k}={v}" for k, v in extra_fields(record))
        trace = CURRENT.get()
        if trace is not None:
            ids = f"trace_id={trace.trace_id} span_id={trace.span_id}"
            fields = f"{fields} {ids}" if fields else ids
        if fields:
            first, sep, rest = line.partition("\n")
            line = f"{first} [{fields}]{sep}{rest}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


class LoopBufferedHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler that writes the event loop's routine lines together.

    Each write to stderr is a system call that lets go of the GIL, and while handler threads
    run, the loop waits its turn to take it back: one write per processed message cost the
    loop more than the rest of the message's bookkeeping. So INFO and DEBUG lines logged on
    a thread running an event loop are kept and written in one go at most FLUSH_AFTER_S
    later (or at MAX_LINES). Anything at WARNING or above, and any line from another thread,
    first writes what is kept and then itself at once, so the order of lines never changes
    and nothing important waits. logging.shutdown() (at exit) writes what is left; a kill -9
    can lose at most the last FLUSH_AFTER_S of routine lines.
    """

    FLUSH_AFTER_S = 0.05
    MAX_LINES = 512

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._kept: list[str] = []
        self._kept_on: asyncio.AbstractEventLoop | None = None  # whose timer writes _kept

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            # Handler.handle() holds self.lock around emit(), so _kept needs no other lock.
            loop = _running_loop() if record.levelno < logging.WARNING else None
            if loop is None:
                self._write_kept()
                self.stream.write(line + self.terminator)
                self.stream.flush()
                return
            if self._kept and loop is not self._kept_on:
                # Kept on another loop (a handler thread's own asyncio.run, a loop that has
                # since stopped): its timer may never come, so write them now, in order.
                self._write_kept()
            if not self._kept:
                loop.call_later(self.FLUSH_AFTER_S, self.flush)
                self._kept_on = loop
            self._kept.append(line)
            if len(self._kept) >= self.MAX_LINES:
                self._write_kept()
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_kept()
            super().flush()
        except Exception:  # a closed or broken stream: logging must never raise
            self._kept.clear()
        finally:
            self.release()

    def _write_kept(self) -> None:
        if self._kept:
            text = self.terminator.join(self._kept) + self.terminator
            self._kept.clear()
            self.stream.write(text)
            self.stream.flush()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def setup_logging(settings: LogSettings) -> None:
    # Per-record facts no formatter here prints: documented switches (Python's logging
    # HOWTO, "Optimization") that spare every record a frame walk and three lookups.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LoopBufferedHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())
    # Hypercorn's own loggers would print a second access line in another format.
    for name in ("hypercorn.access", "hypercorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
