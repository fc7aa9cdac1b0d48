"""PNG charts for the README's Performance section, drawn from the results document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _flat(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for result in doc["results"]:
        out.append(result)
        out.extend(result.get("extra", []))
    return out


def _target(text: str) -> float | None:
    for token in text.replace(">=", " ").replace("<=", " ").split():
        try:
            return float(token)
        except ValueError:
            continue
    return None


def draw(doc: dict[str, Any], folder: Path, suffix: str = "") -> list[Path]:
    paths = []
    flat = _flat(doc)
    bars = [r for r in flat if r.get("ratio") is not None and r.get("met") is not None]
    bars = [r for r in bars if not (r.get("extra") and r["id"] in ("B4", "B5"))]
    if bars:
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(bars) + 1.4))
        scores, labels = [], []
        for r in bars:
            target = _target(r.get("target", "")) or 1.0
            at_most = r.get("target", "").startswith("<=")
            scores.append(target / r["ratio"] if at_most else r["ratio"] / target)
            labels.append(f"{r['id']} {r['title']}")
        y = list(range(len(bars)))
        ax.barh(
            y,
            [min(s, 2.0) for s in scores],
            color=["#2e7d32" if r.get("met") else "#c62828" for r in bars],
        )
        ax.axvline(1.0, color="black", linewidth=1.5)
        for i, r in enumerate(bars):
            ax.text(
                min(scores[i], 2.0) + 0.02,
                i,
                f"{r['ratio']:.3g} (target {r['target']})",
                va="center",
                fontsize=8,
            )
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 2.6)
        ax.set_xlabel("share of the target reached (1 = target met; capped at 2)")
        ax.set_title("Spool against its targets (ratios measured side by side)")
        fig.tight_layout()
        paths.append(_save(fig, folder / f"ratios{suffix}.png"))
    peers = [r for r in flat if r["id"].startswith("B4-") and "subject" in r.get("figures", {})]
    if peers:
        fig, ax = plt.subplots(figsize=(8, 3))
        names, values = [], []
        for r in peers:
            names += [f"Spool ({r['id'][3:]} run)", r["title"]]
            values += [r["figures"]["subject"], r["figures"]["reference"]]
        ax.barh(names, values, color=["#1565c0", "#9e9e9e"] * len(peers))
        ax.invert_yaxis()
        ax.set_xlabel("messages handled per second (~20 µs handler, 4 threads)")
        ax.set_title("B4: Spool and what users would pick instead")
        fig.tight_layout()
        paths.append(_save(fig, folder / f"peers{suffix}.png"))
    b5 = [r for r in flat if r["id"].startswith("B5-") and "subject" in r.get("figures", {})]
    if b5:
        fig, ax = plt.subplots(figsize=(8, 3))
        names = [r["title"] for r in b5]
        idle = [r["figures"]["reference"] for r in b5]
        loaded = [r["figures"]["subject"] for r in b5]
        x = range(len(b5))
        ax.bar([i - 0.2 for i in x], idle, width=0.4, label="idle", color="#9e9e9e")
        ax.bar([i + 0.2 for i in x], loaded, width=0.4, label="CPU-bound handlers busy")
        ax.set_xticks(list(x), names)
        ax.set_yscale("log")
        ax.set_ylabel("/healthz p99 (ms, log scale)")
        ax.set_title("B5: the event loop while handlers burn CPU")
        ax.legend()
        fig.tight_layout()
        paths.append(_save(fig, folder / f"latency{suffix}.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
