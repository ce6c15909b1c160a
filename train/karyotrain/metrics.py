"""Per-crop metrics and the cell-level assignment."""
import numpy as np
from scipy.optimize import linear_sum_assignment

from .data import LABELS

# Cell step: every class gets `capacity` slots at cost -log p, plus ONE extra slot at cost
# -log p + EXTRA_SLOT_COST, so a third copy (a real trisomy, or XXY) can still be assigned when
# the evidence for it beats the evidence for any free normal slot by more than 4 nats.
CAPACITY = {l: 2 for l in LABELS}
CAPACITY["Y"] = 1
EXTRA_SLOT_COST = 4.0


def assign_cell(logp):
    """logp [n,24] log-probabilities of one cell's crops -> assigned class per crop."""
    cols, cost = [], []
    for c, l in enumerate(LABELS):
        for _ in range(CAPACITY[l]):
            cols.append(c); cost.append(-logp[:, c])
        cols.append(c); cost.append(-logp[:, c] + EXTRA_SLOT_COST)
    cost = np.stack(cost, 1)
    out = logp.argmax(1).copy()          # only used if a cell has more crops than slots
    r, k = linear_sum_assignment(cost)
    out[r] = np.asarray(cols)[k]
    return out


def assign_cells(logp, cells):
    pred = logp.argmax(1).copy()
    for c in np.unique(cells):
        i = np.nonzero(cells == c)[0]
        pred[i] = assign_cell(logp[i])
    return pred


def classification_report(y, p, n_classes=24, per_class=True):
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (y, p), 1)
    tp = np.diag(cm).astype(float)
    prec = np.divide(tp, cm.sum(0), out=np.zeros(n_classes), where=cm.sum(0) > 0)
    rec = np.divide(tp, cm.sum(1), out=np.zeros(n_classes), where=cm.sum(1) > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros(n_classes), where=(prec + rec) > 0)
    present = cm.sum(1) > 0
    r = dict(n=int(len(y)), accuracy=float((y == p).mean()) if len(y) else 0.0,
             macro_precision=float(prec[present].mean()), macro_recall=float(rec[present].mean()),
             macro_f1=float(f1[present].mean()))
    if per_class:
        r["per_class"] = {LABELS[c]: dict(precision=float(prec[c]), recall=float(rec[c]),
                                          f1=float(f1[c]), support=int(cm[c].sum()))
                          for c in range(n_classes)}
        r["confusion"] = cm.tolist()
    return r


def evaluate(logits, y, cells, per_class=True):
    """-> {"crop": report, "cell": report} from identity logits."""
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return dict(crop=classification_report(y, logp.argmax(1), per_class=per_class),
                cell=classification_report(y, assign_cells(logp, cells), per_class=per_class))


def summary(r):
    return {k: v for k, v in r.items() if k not in ("per_class", "confusion")}
