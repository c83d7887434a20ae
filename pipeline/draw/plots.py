"""Plots of a run: the per-stage funnel (kept vs rejected by reason), drawn with matplotlib into a PNG."""

from __future__ import annotations

from pipeline.draw.charts import KEPT_COLOR, reason_color


def pyplot():
    """matplotlib's pyplot, off-screen, with every label plain text: a ``$`` in a stage, column or reason name is a
    dollar sign, not the start of a formula that mathtext fails to parse."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"text.parse_math": False, "text.usetex": False})
    return plt


def plot_funnel(stats: dict, path: str) -> None:
    plt = pyplot()
    stages = stats["stages"]
    names = [s["stage"] for s in stages]
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(names) + 1.5))
    kept = [s["kept"] for s in stages]
    ax.barh(names, kept, color=KEPT_COLOR, label="kept")
    left = list(kept)
    reasons = sorted({r for s in stages for r in s["reasons"]})
    for reason in reasons:
        vals = [s["reasons"].get(reason, 0) for s in stages]
        ax.barh(names, vals, left=left, color=reason_color(reason), label=reason)
        left = [a + b for a, b in zip(left, vals)]
    ax.invert_yaxis()
    ax.set_xlabel("records")
    ax.set_title("records per stage: kept and rejected by reason")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
