"""The pattern Spool replaces: a Flask route puts onto a queue.Queue and worker threads work
it off. Served the way such apps are: Werkzeug's threaded server (`app.run(threaded=True)`).

`POST /enqueue` (JSON body) → 202 {"id"}; `GET /stats` → {"accepted", "done"}.
"""

from __future__ import annotations

import argparse
import logging
import queue
import threading
import uuid
from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from .work import small

WORKERS = 4


def build() -> Flask:
    app = Flask(__name__)
    jobs: queue.Queue[tuple[str, Any]] = queue.Queue()
    results: dict[str, Any] = {}
    counts = {"accepted": 0, "done": 0}
    lock = threading.Lock()

    def worker() -> None:
        while True:
            job_id, body = jobs.get()
            results[job_id] = small(body)
            with lock:
                counts["done"] += 1

    for _ in range(WORKERS):
        threading.Thread(target=worker, daemon=True).start()

    @app.post("/enqueue")
    def enqueue() -> ResponseReturnValue:
        body = request.get_json()
        job_id = str(uuid.uuid4())
        jobs.put((job_id, body))
        with lock:
            counts["accepted"] += 1
        return jsonify({"id": job_id}), 202

    @app.get("/stats")
    def stats() -> ResponseReturnValue:
        return jsonify(counts)

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return jsonify({"status": "ok"})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)  # a line per request, as Werkzeug logs them
    build().run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
