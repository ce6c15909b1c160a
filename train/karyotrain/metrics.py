"""Per-crop metrics and the cell-level assignment."""
import numpy as np
from scipy.optimize import linear_sum_assignment

from .data import LABELS

# Cell step, the same as the device's (src/analyse.rs): the expected karyotype as slots -- two
# per autosome, one X and one X-or-Y -- each costing MISSING_SLOT_COST when left empty, plus one
# extra slot per class at EXTRA_SLOT_COST, so a gain (a trisomy, XXY) or a loss must each be
# worth 4 nats of evidence; objects cost -log p in the slot they take.
CAPACITY = {l: 2 for l in LABELS}
CAPACITY["Y"] = 1
EXTRA_SLOT_COST = 4.0
MISSING_SLOT_COST = 4.0
X, Y = LABELS.index("X"), LABELS.index("Y")


def _slots():
    """-> list of (accepted classes, extra cost, missing cost)."""
    slots = []
    for c, l in enumerate(LABELS):
        if c not in (X, Y):
            slots += [([c], 0.0, MISSING_SLOT_COST)] * CAPACITY[l]
        slots.append(([c], EXTRA_SLOT_COST, 0.0))
    slots += [([X], 0.0, MISSING_SLOT_COST), ([X, Y], 0.0, MISSING_SLOT_COST)]
    return slots


def assign_cell(logp):
    """logp [n,24] log-probabilities of one cell's crops -> assigned class per crop."""
    slots, n = _slots(), len(logp)
    if n > len(slots):                   # more objects than any karyotype we model: argmax
        return logp.argmax(1)
    cost = np.empty((len(slots), len(slots)))
    best = np.empty((n, len(slots)), np.int64)
    for j, (classes, extra, missing) in enumerate(slots):
        k = np.asarray(classes)[np.argmax(logp[:, classes], 1)]
        best[:, j] = k
        cost[:n, j] = -logp[np.arange(n), k] + extra
        cost[n:, j] = missing             # rows past the objects: "nobody" fills the slot
    r, j = linear_sum_assignment(cost)
    out = np.empty(n, np.int64)
    out[r[:n]] = best[r[:n], j[:n]]
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
