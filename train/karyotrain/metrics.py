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


MAX_SWAP_ROUNDS = 64


def pair_swaps(logp, homolog, pred, weight):
    """The pairing term after the slot assignment: swap the classes of two objects while that
    lowers  sum of -log p  +  weight * sum over classes held by exactly two objects of
    (1 - cosine of their homolog vectors). A swap keeps every class's count, so the karyotype's
    numbers stay the slot step's; it only decides which object is which. Best swap first, the
    first (i, j) in order among equals, as src/analyse.rs."""
    pred, n = pred.copy(), len(pred)
    homolog = homolog.astype(np.float64)
    cosine = homolog @ homolog.T
    upper = np.triu(np.ones((n, n), bool), 1)
    for _ in range(MAX_SWAP_ROUNDS):
        # partner[i]: the other object of i's class when the class holds exactly two
        same = pred[:, None] == pred[None, :]
        pair = same & ~np.eye(n, dtype=bool) & (same.sum(1) == 2)[:, None]
        has = pair.any(1)
        partner = pair.argmax(1)
        q = logp[:, pred]                           # q[i, j] = log p(object i is pred[j])
        d = np.diag(q)
        likelihood = d[:, None] + d[None, :] - q - q.T
        # i takes j's class: i's old pair cost w(1 - cos(i, partner i)) becomes j's with i's
        # partner, w(1 - cos(j, partner i)); and the same for j
        gain = np.where(has[:, None], cosine[np.arange(n), partner][:, None] - cosine[:, partner].T, 0.0)
        delta = np.where(upper & ~same, likelihood + weight * (gain + gain.T), np.inf)
        k = int(np.argmin(delta))
        if not delta.flat[k] < -1e-9:
            break
        i, j = divmod(k, n)
        pred[i], pred[j] = pred[j], pred[i]
    return pred


def assign_cells(logp, cells, homolog=None, homolog_weight=0.0):
    """The cell step per cell: slots, then the pairing term when the model has homolog vectors."""
    pred = logp.argmax(1).copy()
    for c in np.unique(cells):
        i = np.nonzero(cells == c)[0]
        pred[i] = assign_cell(logp[i])
        if homolog is not None and homolog_weight > 0:
            pred[i] = pair_swaps(logp[i], homolog[i], pred[i], homolog_weight)
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


def evaluate(logits, y, cells, per_class=True, homolog=None, homolog_weight=0.0):
    """-> {"crop": report, "cell": report} from identity logits (and homolog vectors)."""
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    cell = assign_cells(logp, cells, homolog, homolog_weight)
    return dict(crop=classification_report(y, logp.argmax(1), per_class=per_class),
                cell=classification_report(y, cell, per_class=per_class))


def summary(r):
    return {k: v for k, v in r.items() if k not in ("per_class", "confusion")}


# ---------------------------------------------------------------- structure head (SYNTHETIC)
def auroc(neg, pos):
    """Area under the ROC curve of scores, positives vs negatives (Mann-Whitney, ties halved)."""
    from scipy.stats import rankdata
    neg, pos = np.asarray(neg, np.float64), np.asarray(pos, np.float64)
    if not len(neg) or not len(pos):
        return float("nan")
    r = rankdata(np.concatenate([neg, pos]))[len(neg):]
    return float((r.sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def abnormal_score(structure_logits):
    """1 - P(normal) from the structure logits."""
    z = structure_logits - structure_logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return 1.0 - p[:, 0]


def threshold_for_fpr(normal_scores, fpr=0.005):
    """Smallest threshold t (flag when score > t) with at most `fpr` of the normals flagged."""
    s = np.sort(np.asarray(normal_scores, np.float64))[::-1]
    k = int(np.floor(fpr * len(s)))         # this many may be above t
    return float(s[k]) if k < len(s) else 0.0


def structure_report(normal_logits, syn, threshold, labels=None):
    """Metrics of the structure/arm/position heads on real normal crops + a synthetic set.

    normal_logits: structure logits [n,5] of the real (unedited) normal crops; syn: dict with
    `structure_logits`, `arm_logits`, `position_pred` and the synthetic set's `structure`, `subtype`,
    `arm`, `position`. Abnormal = structure > 0. All numbers are on SYNTHETIC abnormalities."""
    from .model import STRUCTURE_LABELS
    sn = abnormal_score(normal_logits)
    ss = abnormal_score(syn["structure_logits"])
    ab = syn["structure"] > 0
    ctrl = ~ab                                      # straightened, unedited crops (normal)
    r = dict(synthetic=True, n_normal=int(len(sn)), n_abnormal=int(ab.sum()),
             auroc=auroc(sn, ss[ab]), threshold=float(threshold),
             normal_flagged_rate=float((sn > threshold).mean()) if len(sn) else float("nan"),
             recall_any=float((ss[ab] > threshold).mean()) if ab.any() else float("nan"))
    if ctrl.any():
        r["auroc_vs_straightened_normals"] = auroc(ss[ctrl], ss[ab])
        r["straightened_normal_flagged_rate"] = float((ss[ctrl] > threshold).mean())
    pred = syn["structure_logits"][:, 1:].argmax(1) + 1
    r["per_type"] = {}
    for name in list(dict.fromkeys(syn["subtype"][ab])):
        m = ab & (syn["subtype"] == name)
        r["per_type"][str(name)] = dict(n=int(m.sum()), recall=float((ss[m] > threshold).mean()),
                                        type_accuracy=float((pred[m] == syn["structure"][m]).mean()))
    for c in range(1, len(STRUCTURE_LABELS)):
        m = ab & (syn["structure"] == c)
        if m.any():
            r["per_type"][STRUCTURE_LABELS[c]] = dict(
                n=int(m.sum()), recall=float((ss[m] > threshold).mean()),
                type_accuracy=float((pred[m] == c).mean()))
    r["type_accuracy"] = float((pred[ab] == syn["structure"][ab]).mean()) if ab.any() else float("nan")
    r["arm_accuracy"] = float((syn["arm_logits"][ab].argmax(1) == syn["arm"][ab]).mean()) if ab.any() else float("nan")
    r["position_mae"] = float(np.abs(syn["position_pred"][ab].ravel() - syn["position"][ab]).mean()) if ab.any() else float("nan")
    return r
