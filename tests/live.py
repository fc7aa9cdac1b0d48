"""A module-scoped live server: `python -m service` started once for a whole test module."""

from __future__ import annotations

import os
from pathlib import Path

from .conftest import Server, free_port


def start_server(tmp: Path, config: str) -> Server:
    path = tmp / "config.toml"
    path.write_text(config)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOL_")}
    env.update({"SPOOL_SERVER__BIND": f"127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"})
    server = Server(path, port, tmp / "server.log", env)
    server.start()
    return server
