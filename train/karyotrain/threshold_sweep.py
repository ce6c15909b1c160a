"""How the learned segmenter's count depends on its core threshold, frame by frame: from
`karyoscreen eval-frames --json` reports of one frames set run at several `--core-logit` values,
the mean |count error| at each value, and at the best value for each frame (which needs the
truth, so it bounds any way of choosing the threshold per frame; it is not a method).

    for t in 0 0.5 1 1.5 2 2.5 3; do
      karyoscreen eval-frames DATA/frames_bioimlab_q --split train --min-count 40 \\
          --segmenter learned --core-logit $t --json > sweep/bioimlab-train-$t.json
    done
    python -m karyotrain.threshold_sweep sweep/bioimlab-train-*.json
"""
import argparse
import json
import os


def sweep(reports):
    """reports: eval-frames reports, each with `core_logit` -> {(set, split): summary}."""
    errors = {}
    for report in reports:
        key = (os.path.basename(os.path.normpath(report["data"])), report["split"])
        for row in report["rows"]:
            errors.setdefault(key, {}).setdefault(row["image"], {})[report["core_logit"]] = row["abs_error"]
    out = {}
    for key, frames in sorted(errors.items()):
        thresholds = sorted(set.intersection(*(set(tried) for tried in frames.values())))
        n = len(frames)
        best = [min(tried[t] for t in thresholds) for tried in frames.values()]
        out[key] = dict(frames=n,
                        mean_abs={t: sum(tried[t] for tried in frames.values()) / n for t in thresholds},
                        per_frame_best=dict(mean_abs=sum(best) / n, exact=sum(b == 0 for b in best) / n,
                                            within2=sum(b <= 2 for b in best) / n))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", help="eval-frames --json outputs, each run with --core-logit")
    args = ap.parse_args(argv)
    reports = []
    for path in args.reports:
        with open(path) as f:
            report = json.load(f)
        if report.get("core_logit") is None:
            raise SystemExit(f"{path}: no core_logit in the report (run eval-frames with --core-logit)")
        reports.append(report)
    for (name, split), s in sweep(reports).items():
        best = s["per_frame_best"]
        print(f"{name} {split}: {s['frames']} frames; mean |count error| at core logit "
              + ", ".join(f"{t:g}: {e:.2f}" for t, e in s["mean_abs"].items())
              + f"; at each frame's best: {best['mean_abs']:.2f} (exact {100 * best['exact']:.1f} %,"
              f" within 2 {100 * best['within2']:.1f} %)")


if __name__ == "__main__":
    main()
