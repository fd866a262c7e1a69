"""The report's plots: matplotlib figures drawn on the Agg canvas, returned as PNG data URIs.

Each function takes plain data (from :mod:`.read`) and returns ``data:image/png;base64,...``
for an ``<img src>``, so the page embeds its images and has no external references.
``matplotlib.figure.Figure`` is used directly, never pyplot: no global figure state, no
GUI backend, safe in a build's worker process. Names from the build (stages, teachers)
are drawn as plain text: ``$`` is escaped so a name never turns into mathtext.
"""
from __future__ import annotations

import base64
import io
from collections import Counter


def _figure(width=6.4, height=3.2):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _label(text) -> str:
    return str(text).replace("$", r"\$")  # no mathtext from names


def hist(values, title: str, xlabel: str, bins=20, extra=None, ylabel="clips") -> str:
    """A histogram of ``values``; ``extra=(label, other_values)`` is drawn in grey behind them on the
    same bins (all candidate scores behind the selected ones)."""
    import numpy as np

    fig = _figure()
    ax = fig.add_subplot()
    edges = np.histogram_bin_edges(np.concatenate([values, extra[1]]) if extra is not None else values, bins=bins)
    if extra is not None:
        ax.hist(extra[1], bins=edges, color="#bbbbbb", label=_label(extra[0]))
    ax.hist(values, bins=edges, color="#3b75af", label="selected" if extra is not None else None, alpha=0.9)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if extra is not None:
        fig.legend(loc="outside right upper")
    return _png(fig)


def stage_counts(stages: list[dict]) -> str:
    """Records in, out and rejected per stage (rows of :func:`.read.stages`), first stage on top."""
    import numpy as np

    rows = stages[::-1]
    y = np.arange(len(rows))
    fig = _figure(height=max(2.4, 0.45 * len(rows) + 1))
    ax = fig.add_subplot()
    for offset, key, color in ((0.27, "in", "#3b75af"), (0.0, "out", "#519e3e"), (-0.27, "rejected", "#c53a32")):
        ax.barh(y + offset, [r[key] for r in rows], height=0.27, color=color, label=key)
    ax.set_yticks(y, [_label(r["stage"]) for r in rows])
    ax.set(title="records per stage", xlabel="records")
    fig.legend(loc="outside right upper")
    return _png(fig)


def stage_seconds(stages: list[dict]) -> str:
    """Process seconds per timed stage, setup seconds stacked after them."""
    rows = [r for r in stages if r["process"] is not None][::-1]
    fig = _figure(height=max(2.4, 0.35 * len(rows) + 1))
    ax = fig.add_subplot()
    names = [_label(r["stage"]) for r in rows]
    ax.barh(names, [r["process"] for r in rows], color="#3b75af", label="process")
    ax.barh(names, [r["setup"] or 0.0 for r in rows], left=[r["process"] for r in rows], color="#bbbbbb",
            label="setup")
    ax.set(title="time per stage", xlabel="seconds")
    fig.legend(loc="outside right upper")
    return _png(fig)


def teachers(wins: Counter, clips_with_caption: int, teachers: dict) -> str:
    """Win rate per teacher (left) and its candidates and rejected outputs (right), most wins on top."""
    names = sorted(set(wins) | set(teachers), key=lambda t: (-wins.get(t, 0), t))
    fig = _figure(width=7.6, height=max(2.4, 0.4 * len(names) + 1.2))
    left, right = fig.subplots(1, 2, sharey=True)
    labels = [_label(t) for t in names][::-1]
    left.barh(labels, [wins.get(t, 0) / clips_with_caption * 100 if clips_with_caption else 0
                       for t in names][::-1], color="#3b75af")
    left.set(title="win rate (% of captioned clips)", xlabel="%")
    right.barh(labels, [teachers.get(t, {}).get("candidates", 0) for t in names][::-1], color="#519e3e",
               label="candidates")
    right.barh(labels, [teachers.get(t, {}).get("rejected_outputs", 0) for t in names][::-1],
               left=[teachers.get(t, {}).get("candidates", 0) for t in names][::-1], color="#c53a32",
               label="rejected outputs")
    right.set(title="candidates per teacher", xlabel="candidates")
    fig.legend(loc="outside lower center", ncols=2)
    return _png(fig)
