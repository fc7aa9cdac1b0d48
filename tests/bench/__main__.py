"""python -m tests.bench [B1 B2 …] [--quick] [--json PATH] [--no-charts] [--strict]

Spool against the physical limit and against what users would pick instead, every figure a
ratio of runs made side by side (subject and reference alternately, A B A B). Prints a table,
writes tests/bench/results/bench.json and the PNG charts. Exit 1 when a correctness check
fails (a message lost, a 5xx); with --strict also when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from . import engine_cases, fanout, http_cases
from .harness import RESULTS, BenchFailure, Mode, Result, load_average, machine, versions

BENCHMARKS: dict[str, Callable[[Mode], Result]] = {
    "B1": http_cases.b1,
    "B2": http_cases.b2,
    "B3": engine_cases.b3,
    "B4": engine_cases.b4,
    "B5": http_cases.b5,
    "B6": engine_cases.b6,
    "B7": http_cases.b7,
    "B8": engine_cases.b8,
    "B9": http_cases.b9,
    "B10": fanout.b10,
    "B11": engine_cases.b11,
}


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def rows(result: Result) -> list[list[str]]:
    out = []
    for r in [result, *result.extra]:
        if r is result and result.extra and r.ratio is None:
            continue
        spread = f"{fmt(r.spread[0])}-{fmt(r.spread[1])}" if r.spread else ""
        met = {True: "yes", False: "NO", None: ""}[r.met]
        figures = ""
        if "subject" in r.figures:
            unit = r.figures.get("unit", "")
            figures = f"{fmt(r.figures['subject'])} vs {fmt(r.figures['reference'])} {unit}"
        out.append([r.id, r.title, fmt(r.ratio), spread, r.target, met, figures, r.note])
    return out


def table(results: list[Result]) -> str:
    head = ["id", "benchmark", "ratio", "spread", "target", "met", "subject vs reference", "note"]
    body = [row for r in results for row in rows(r)]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [line.format(*head), line.format(*("-" * w for w in widths))]
        + [line.format(*row) for row in body]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test)")
    parser.add_argument("--json", help="write the results here (default: results/bench.json)")
    parser.add_argument("--no-charts", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    names = [n.upper() for n in args.names] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    mode = Mode(quick=args.quick)
    started = time.monotonic()
    doc: dict[str, Any] = {
        "command": "python -m tests.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": mode.quick,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_before": load_average(),
        "machine": machine(),
        "versions": versions(),
        "results": [],
    }
    results: list[Result] = []
    failures: list[str] = []
    for name in names:
        print(f"== {name} …", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            result = BENCHMARKS[name](mode)
        except BenchFailure as exc:
            failures.append(f"{name}: {exc}")
            result = Result(name, "FAILED", str(exc), note="correctness check failed")
        except Exception as exc:
            traceback.print_exc()
            failures.append(f"{name}: {exc!r}")
            result = Result(name, "ERROR", repr(exc), note="did not run")
        result.figures["seconds"] = round(time.monotonic() - t0, 1)
        results.append(result)
        print(table([result]).splitlines()[-1], file=sys.stderr, flush=True)
    doc["load_average_after"] = load_average()
    doc["seconds"] = round(time.monotonic() - started, 1)
    doc["results"] = [asdict(r) for r in results]
    print(table(results))
    print(
        f"\nload average before {doc['load_average_before']}, after {doc['load_average_after']};"
        f" {doc['seconds']} s; " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items())
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.json or str(RESULTS / ("bench-quick.json" if mode.quick else "bench.json"))
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"results: {out}")
    if not args.no_charts:
        from .charts import draw

        for path in draw(doc, RESULTS, suffix="-quick" if mode.quick else ""):
            print(f"chart: {path}")
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    missed = [s.id for r in results for s in [r, *r.extra] if s.met is False]
    if missed:
        print(f"targets missed: {', '.join(missed)}", file=sys.stderr)
    return 1 if failures or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
