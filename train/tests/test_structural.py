"""Synthetic structural abnormalities: geometry of each edit on small synthetic arrays (no data)."""
import numpy as np
import pytest

from karyotrain import metrics as Mx
from karyotrain import preprocess as P
from karyotrain import structural as St


def strip(L=100, W=12):
    """Rows numbered by their index: row r has value r (so every edit is readable)."""
    return np.repeat(np.arange(L, dtype=np.float64)[:, None], W, 1)


def test_terminal_deletion_shortens_by_the_fraction_from_the_right_end():
    b = strip(100)
    p = St.terminal_deletion(b, 0.25, "p")
    q = St.terminal_deletion(b, 0.25, "q")
    assert len(p) == 75 and len(q) == 75
    assert p[0, 0] == 25 and p[-1, 0] == 99          # p-ter (top rows) gone
    assert q[0, 0] == 0 and q[-1, 0] == 74           # q-ter (bottom rows) gone


def test_interstitial_deletion_and_duplication_change_length_by_the_segment():
    b = strip(100)
    d = St.interstitial_deletion(b, 0.40, 0.60)
    assert len(d) == 80 and d[39, 0] == 39 and d[40, 0] == 60
    u = St.duplication(b, 0.40, 0.60)
    assert len(u) == 120
    assert np.array_equal(u[40:60, 0], u[60:80, 0]) and np.array_equal(u[40:60, 0], np.arange(40, 60))


def test_inversion_preserves_length_and_reverses_the_rows():
    b = strip(100)
    v = St.inversion(b, 0.30, 0.70)
    assert v.shape == b.shape
    assert np.array_equal(v[30:70, 0], np.arange(69, 29, -1))
    assert np.array_equal(v[:30], b[:30]) and np.array_equal(v[70:], b[70:])
    assert sorted(v[:, 0]) == sorted(b[:, 0])


@pytest.mark.parametrize("arm", ["p", "q"])
def test_translocation_preserves_total_length_and_keeps_each_centromere(arm):
    a, b = strip(100, 10), strip(60, 14) + 1000       # b's rows are 1000..1059
    fa, fb = (0.2, 0.3) if arm == "p" else (0.7, 0.6)
    da, db = St.translocation(a, b, fa, fb, arm, bgv=255.0)
    assert len(da) + len(db) == 160
    assert da.shape[1] == db.shape[1] == 14           # widths matched by centre padding
    ca, cb = 50, 1030                                 # a centromere row of each (proximal part)
    assert ca in da and ca not in db and cb in db and cb not in da
    if arm == "q":
        assert da[0, 5] == 0 and da[-1, 5] == 1059    # a's p-ter ... b's q-ter
    else:
        assert da[0, 5] == 1000 and da[-1, 5] == 99   # b's p-ter ... a's q-ter


def test_recorded_arm_matches_breakpoint_vs_centromere():
    rng = np.random.default_rng(0)
    body = strip(120, 16) * 2 % 255
    n = 0
    for label in ("1", "9", "13", "21", "X"):
        cen = St.CEN[label]
        for st in St.SUBTYPES[:-1]:
            for _ in range(10):
                ev = St.single_event(rng, body, 255.0, label, st)
                if ev is None:
                    continue
                out, info = ev
                n += 1
                assert 0 < info["position"] < 1
                assert info["arm"] == ("p" if info["position"] < cen else "q"), (label, st, info)
                if st == "terminal_deletion":
                    assert len(out) < len(body)
                if st.endswith("inversion"):
                    assert out.shape == body.shape
                if st == "pericentric_inversion":
                    assert info["arm"] == "p"
    assert n > 50


def test_centromeres_from_the_ideogram():
    cen = St.centromere_fractions()
    assert set(cen) == set(St.LABELS)
    assert all(0.1 < v < 0.55 for v in cen.values())
    for acro in ("13", "14", "15", "21", "22"):
        assert cen[acro] < 0.3
    assert abs(cen["1"] - 0.5) < 0.02


def test_straighten_and_back_through_preprocessing():
    # a dark bar on white, tilted: straightening makes it vertical with the same length
    g = np.full((80, 80), 250, np.uint8)
    yy, xx = np.mgrid[:80, :80]
    t = ((xx - 40) * 0.3 + (yy - 40) * 0.95)
    s = ((xx - 40) * 0.95 - (yy - 40) * 0.3)
    g[(np.abs(t) < 25) & (np.abs(s) < 5)] = 40
    body, bgv = St.straighten(g, P.DARK_ON_LIGHT)
    assert bgv == 250
    assert body.shape[0] > 3 * body.shape[1]
    r0 = P.preprocess_full(g, P.DARK_ON_LIGHT)
    r1 = P.preprocess_full(St.to_image(body, bgv), P.DARK_ON_LIGHT)
    assert abs(r1["length"] - r0["length"]) <= 2
    cut = P.preprocess_full(St.to_image(St.terminal_deletion(body, 0.3, "p"), bgv), P.DARK_ON_LIGHT)
    assert abs(cut["length"] / r1["length"] - 0.7) < 0.05


def test_structure_metrics():
    assert Mx.auroc([0, 1, 2], [3, 4]) == 1.0
    assert Mx.auroc([3, 4], [0, 1]) == 0.0
    assert Mx.auroc([1, 1], [1]) == 0.5
    s = np.linspace(0, 1, 1000)
    t = Mx.threshold_for_fpr(s, 0.005)
    assert (s > t).mean() <= 0.005 and (s > t).mean() > 0.003


def test_composed_frame_truth_writes_structural_flags_as_the_device_does():
    from karyotrain.compose import karyotype_of
    normal = [str(c) for c in range(1, 23) for _ in range(2)]
    assert karyotype_of(normal + ["X", "Y"]) == "46,XY"
    assert karyotype_of(normal + ["X", "X"], [("deletion", [("5", "p")])]) == "46,XX,del(5)(p)"
    assert karyotype_of(normal + ["X", "X"], [("translocation", [("11", "q"), ("4", "q")])]) == \
        "46,XX,t(4;11)(q;q)"
    # as src/analyse.rs flags_follow_iscn_order_after_numerical_changes
    flags = [("inversion", [("9", "q")]), ("duplication", [("21", "q")]), ("deletion", [("X", "p")])]
    assert karyotype_of(normal + ["21", "X", "Y"], flags) == "47,XY,del(X)(p),inv(9)(q),+21,dup(21)(q)"
