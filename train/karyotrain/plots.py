"""Loss/accuracy curves and confusion matrices."""
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from .data import LABELS


def plot_all(hist, results, run_dir):
    ep = [h["epoch"] for h in hist]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(ep, [h["train_loss"] for h in hist], label="train")
    ax[0].plot(ep, [h["val_loss"] for h in hist], label="val")
    ax[0].set_title("loss"); ax[0].legend()
    ax[1].plot(ep, [h["train_acc"] for h in hist], label="train (augmented)")
    ax[1].plot(ep, [h["val_acc"] for h in hist], label="val")
    ax[1].set_title("per-crop accuracy"); ax[1].legend()
    for a in ax:
        a.set_xlabel("epoch")
    fig.tight_layout(); fig.savefig(os.path.join(run_dir, "curves.png"), dpi=100); plt.close(fig)
    for name, r in results.items():
        for kind in ("crop", "cell"):
            cm = np.array(r["test"][kind]["confusion"], dtype=float)
            cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
            fig, a = plt.subplots(figsize=(7, 6))
            im = a.imshow(cm, cmap="Blues", vmin=0, vmax=1)
            a.set_xticks(range(24)); a.set_xticklabels(LABELS, fontsize=7)
            a.set_yticks(range(24)); a.set_yticklabels(LABELS, fontsize=7)
            a.set_xlabel("predicted"); a.set_ylabel("true")
            a.set_title(f"{name} test, per {kind}: acc {r['test'][kind]['accuracy']:.3f}")
            fig.colorbar(im); fig.tight_layout()
            fig.savefig(os.path.join(run_dir, f"confusion_{name}_{kind}.png"), dpi=100); plt.close(fig)
