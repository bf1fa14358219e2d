"""Report figures, drawn with matplotlib's non-interactive Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_confusion_matrix(matrix: np.ndarray, classes: list[str], path: Path) -> None:
    """Counts, with each cell shaded by its share of the true class (row-normalised)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.45 * n + 2.0)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(n), labels=classes, rotation=45 if n > 6 else 0, ha="right")
    ax.set_yticks(range(n), labels=classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix (test split)")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                colour = "white" if shares[i, j] > 0.5 else "black"
                ax.text(
                    j, i, str(matrix[i, j]), ha="center", va="center", color=colour, fontsize=8
                )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
