"""The plots of a run, drawn from its log: `curves.png` (losses, D's outputs) and `scores.png`
(every evaluation score, the best marked)."""

from __future__ import annotations

from pathlib import Path

from .atomic import save_figure
from .metrics import registry
from .runlog import best_point, read_metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(metrics_path: str | Path, out: str | Path) -> Path | None:
    """Losses and D's outputs against step, as one PNG."""
    rows = read_metrics(metrics_path)
    if not rows:
        return None
    plt = _pyplot()
    steps = [r["step"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    ax1.plot(steps, [r["loss_d"] for r in rows], label="D loss")
    ax1.plot(steps, [r["loss_g"] for r in rows], label="G loss")
    ax1.set_xlabel("step")
    ax1.set_title("losses (mean over each log window)")
    ax1.legend()
    ax2.plot(steps, [r["d_real"] for r in rows], label="D(x)")
    ax2.plot(steps, [r["d_fake"] for r in rows], label="D(G(z)) before D step")
    ax2.plot(steps, [r["d_fake_after"] for r in rows], label="D(G(z)) after D step")
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("step")
    ax2.set_title("discriminator outputs")
    ax2.legend()
    fig.tight_layout()
    save_figure(fig, out, dpi=100)
    plt.close(fig)
    return Path(out)


def plot_scores(metrics_path: str | Path, out: str | Path, best_key: str) -> Path | None:
    """Every evaluation score of the run against step (one panel each), the best of `best_key` marked."""
    rows = read_metrics(metrics_path, "eval")
    keys = [k for k in registry.ranked_keys() if any(isinstance(r.get(k), (int, float)) for r in rows)]
    if not rows or not keys:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    for ax, k in zip(axes[0], keys):
        pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
        ax.plot(*zip(*pts), marker="o", ms=3)
        best = best_point(rows, k) if k == best_key else None
        if best is not None:
            ax.plot(best["step"], best[k], marker="*", ms=14, color="tab:red",
                    label=f"best: {best[k]:.3g} @ {best['step']}")
            ax.legend(fontsize=8)
        ax.set_xlabel("step")
        arrow = "lower is better" if registry.lower_is_better(k) else "higher is better"
        ax.set_title(f"{k} ({arrow})", fontsize=9)
    last = rows[-1]
    fig.suptitle(f"{last.get('features', '')}: {last.get('n_gen', '?')} generated vs {last.get('n_real', '?')} "
                 f"real {last.get('split', '')} images, {last.get('image_size', '?')}px", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out, dpi=100)
    plt.close(fig)
    return Path(out)
