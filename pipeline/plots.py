"""Plots of a run: the per-stage funnel (kept vs rejected by reason), drawn with matplotlib into a PNG."""

from __future__ import annotations


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
    ax.barh(names, kept, color="#4c9f70", label="kept")
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


# tab20 without its two greens (4, 5), which read as "kept" (#4c9f70) beside the kept bar
_REASON_COLORS = [i for i in range(20) if i not in (4, 5)]


def reason_color(reason: str):
    """The colour of a rejection reason: chosen by the reason's name (a stable hash), so a reason has the same colour
    in every plot and every report, whatever other reasons a run has."""
    import hashlib

    import matplotlib.pyplot as plt

    j = int.from_bytes(hashlib.blake2b(reason.encode("utf-8", "surrogatepass"), digest_size=4).digest(), "big")
    return plt.get_cmap("tab20")(_REASON_COLORS[j % len(_REASON_COLORS)])
