"""The settings that belong to the whole Python process, not to one app or runtime.

They are set here and nowhere else: never at import, never from inside a Runtime, since a
process may hold more than one app (the tests build several side by side) and a setting
changed from inside one of them would change it for all. `python -m service` (cli.py) calls
the two phases in order; a program that embeds `create_app` and runs a `Runtime` itself
calls them the same way:

    configure_process(settings)       # once, before the runtime starts
    ...                               # build the runtime, wait for runtime.ready
    freeze_startup_objects()          # once, when everything long-lived exists

Prometheus' `*_created` series are not switched off here (prometheus_client's
disable_created_metrics() is process-wide): metrics.py uses only families that never write
them, so every app's exposition is the same whoever set what.
"""

from __future__ import annotations

import gc
import logging
import sys

from .config import Settings
from .fdlimit import raise_open_files_limit

log = logging.getLogger(__name__)


def configure_process(settings: Settings) -> None:
    """Phase one, before the runtime starts.

    - The GIL switch interval (executor.switch_interval_ms): how long a thread handler may
      hold the GIL while the event loop waits for it. Python's 5 ms lets a CPU-bound thread
      handler keep the loop from answering; the default 1 ms keeps it answering.
    - The soft limit of open files, raised to the hard one: each connection holds an fd, and
      the usual soft limit of 1024 is a few seconds of busy clients, under a hard limit that
      is ours for the asking."""
    sys.setswitchinterval(settings.executor.switch_interval_ms / 1000)
    raise_open_files_limit()


def freeze_startup_objects() -> None:
    """Phase two, once the runtime is ready (its broker has loaded what a previous run left).

    What exists now lives as long as the process, the broker's tables above all, which hold
    every message. Frozen, the cyclic collector no longer walks them at each full collection:
    a walk that grew with the messages held and, at a million held, cost batch publishing
    half its speed. (Messages themselves are never tracked: model.py.) Frozen before that
    point, the broker's tables would be missing; so it is a second phase, not part of the
    first."""
    gc.collect()
    gc.freeze()


def stop_helper_processes() -> None:
    """At process exit: stop and reap multiprocessing's forkserver and resource tracker.

    Both would exit on their own once this process is gone, but as orphans nobody may
    reap (a container whose init does not wait): `docker stop` must leave no process
    behind. The stdlib has no public call for this; its own tests use these two.
    """
    from multiprocessing import forkserver, resource_tracker

    for helper in (
        getattr(forkserver, "_forkserver", None),
        getattr(resource_tracker, "_resource_tracker", None),
    ):
        stop = getattr(helper, "_stop", None)
        if stop is None:
            continue
        try:
            stop()
        except (OSError, ChildProcessError) as exc:
            log.debug("stopping a multiprocessing helper failed: %s", exc)
