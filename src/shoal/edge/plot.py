"""PNG plots of sensor series (matplotlib, Agg backend; imported only when a plot is drawn).

One function for every face: ``shoal edge plot``, the node's dashboard and the
hub's Nodes view all draw with ``render``, so the pictures agree.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Sequence

#: (label, unit, points as (t_ms, mean, min, max))
Series = tuple[str, str, Sequence[tuple[int, float, float, float]]]


def render(series: Sequence[Series], *, title: str = "", width: float = 9.0, height_per: float = 2.0, dark: bool = True) -> bytes:
    """One panel per series: the mean as a line over a min–max band; returns PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fg, bg, band, line = ("#e6edf7", "#121e33", "#22b8a6", "#22b8a6") if dark else ("#222", "#fff", "#1c9c8d", "#1c9c8d")
    n = max(1, len(series))
    fig, axes = plt.subplots(n, 1, figsize=(width, height_per * n + (0.4 if title else 0)), sharex=True, squeeze=False)
    fig.patch.set_facecolor(bg)
    for ax, (label, unit, pts) in zip(axes[:, 0], series or [("no data", "", [])]):
        ax.set_facecolor(bg)
        for side in ax.spines.values():
            side.set_color("#22334f" if dark else "#ccc")
        ax.tick_params(colors=fg, labelsize=8)
        ax.set_ylabel(f"{label}" + (f" ({unit})" if unit else ""), color=fg, fontsize=9)
        if pts:
            t = [datetime.fromtimestamp(p[0] / 1000.0) for p in pts]
            ax.fill_between(t, [p[2] for p in pts], [p[3] for p in pts], color=band, alpha=0.18, linewidth=0)
            ax.plot(t, [p[1] for p in pts], color=line, linewidth=1.2)
        else:
            ax.text(0.5, 0.5, "no readings in this range", color=fg, ha="center", va="center", transform=ax.transAxes)
        ax.grid(True, color="#22334f" if dark else "#eee", linewidth=0.5)
    loc = mdates.AutoDateLocator()
    axes[-1, 0].xaxis.set_major_locator(loc)
    axes[-1, 0].xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
    if title:
        fig.suptitle(title, color=fg, fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor=bg)
    plt.close(fig)
    return buf.getvalue()
