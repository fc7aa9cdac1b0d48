"""Logging: one line per event, as text or JSON; context fields ride in `extra=`."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, TextIO

import msgspec

from .config import LogSettings

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(doc, enc_hook=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(
            f"{k}={v}"
            for k, v in vars(record).items()
            if k not in _STANDARD and not k.startswith("_")
        )
        if fields:
            first, sep, rest = line.partition("\n")
            line = f"{first} [{fields}]{sep}{rest}"
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

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        # Handler.handle() holds self.lock around emit(), so _kept needs no other lock.
        if record.levelno < logging.WARNING:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                if not self._kept:
                    loop.call_later(self.FLUSH_AFTER_S, self.flush)
                self._kept.append(line)
                if len(self._kept) >= self.MAX_LINES:
                    self._write_kept()
                return
        try:
            self._write_kept()
            self.stream.write(line + self.terminator)
            self.stream.flush()
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
