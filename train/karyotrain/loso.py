"""Leave one source out: what a lab the model never saw gets. For each source, train on every
other source, then test on the one left out; one run on all of them gives the in-domain figures.

    python -m karyotrain.loso --data ../shared/data/pki3_gband --data ../shared/data/bioimlab_qband \
        --data runs/sets/akshan --data runs/sets/adir_dapi --name loso -- --epochs 20 --repeat-small 3

Arguments after `--` go to every `karyotrain.train` run (identity only, no export). `--jobs N`
trains N runs at once (one GPU holds several of these small networks). `--evaluate-only` reads
the runs' best.pt again. Writes runs/NAME/loso.json and prints a markdown table: each source's
test split, per crop and after the cell step (torch float), by the model that never saw it and
by the model trained on all sources. `--by-group SOURCE` also prints that source's val and test
splits case by case (`group_id`), per crop, by both models.
"""
import argparse
import csv
import json
import os
import subprocess
import sys

import numpy as np
import torch

from . import data as D
from . import metrics as Mx
from .model import DEFAULT_ARCH, KaryoNet
from .train import RUNS, identity_and_homolog

ALL = "all"


def set_name(path):
    return os.path.basename(os.path.abspath(path).rstrip("/"))


def train_command(data, run_name, train_args):
    return [sys.executable, "-m", "karyotrain.train", *sum((["--data", p] for p in data), []),
            "--name", run_name, "--no-export", *train_args]


def train_option(train_args, flag, default):
    """The value a `karyotrain.train` option had in the runs (its default when absent)."""
    return train_args[train_args.index(flag) + 1] if flag in train_args else default


def test_figures(model, d, homolog_weight):
    """Test split of one set -> {"n", "crop", "cell"} accuracies (torch float)."""
    m = d["split"] == "test"
    logits, homolog = identity_and_homolog(model, d["image"][m], d["size"][m])
    r = Mx.evaluate(logits, d["label"][m], d["cell"][m], per_class=False, homolog=homolog,
                    homolog_weight=homolog_weight)
    return dict(n=int(m.sum()), crop=r["crop"]["accuracy"], cell=r["cell"]["accuracy"])


def group_figures(model, d, set_dir):
    """Val and test splits of one set, case by case -> {split: {group_id: (crops, per-crop accuracy)}}."""
    with open(os.path.join(set_dir, "labels.csv")) as f:
        group_of = {r["path"]: r["group_id"] for r in csv.DictReader(f)}
    out = {}
    for split in ("val", "test"):
        m = d["split"] == split
        logits, _ = identity_and_homolog(model, d["image"][m], d["size"][m])
        right = logits.argmax(1) == d["label"][m]
        groups = np.array([group_of[p] for p in d["path"][m]])
        out[split] = {g: (int((groups == g).sum()), float(right[groups == g].mean())) for g in sorted(set(groups))}
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ours, train_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", required=True, help="a source's set dir (at least two)")
    ap.add_argument("--name", default="loso", help="runs/NAME/ holds the runs and loso.json")
    ap.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    ap.add_argument("--evaluate-only", action="store_true")
    ap.add_argument("--by-group", metavar="SOURCE", help="also print this source's val and test cases one by one")
    args = ap.parse_args(ours)
    if len(args.data) < 2:
        ap.error("leaving a source out needs at least two sources")
    names = [set_name(p) for p in args.data]
    runs = {n: [p for p in args.data if set_name(p) != n] for n in names}
    runs[ALL] = list(args.data)
    run_name = lambda left_out: os.path.join(args.name, "without-" + left_out if left_out != ALL else ALL)

    if not args.evaluate_only:
        pending, active, failed = list(runs), [], []
        while pending or active:
            while pending and len(active) < args.jobs:
                left_out = pending.pop(0)
                log = os.path.join(RUNS, run_name(left_out) + ".log")
                os.makedirs(os.path.dirname(log), exist_ok=True)
                with open(log, "w") as f:
                    active.append((left_out, subprocess.Popen(
                        train_command(runs[left_out], run_name(left_out), train_args), stdout=f, stderr=f)))
            left_out, proc = active.pop(0)
            if proc.wait() != 0:
                failed.append(left_out)
            print(f"run {run_name(left_out)}: exit {proc.returncode}", flush=True)
        if failed:
            sys.exit(f"runs failed: {', '.join(failed)} (see runs/{args.name}/*.log)")

    sets = {n: D.load_set(p) for n, p in zip(names, args.data)}
    if args.by_group is not None and args.by_group not in names:
        ap.error(f"--by-group {args.by_group}: not one of the sources ({', '.join(names)})")
    table, by_group = {}, {}
    for left_out in runs:
        model = KaryoNet(train_option(train_args, "--arch", DEFAULT_ARCH),
                         pair_dim=int(train_option(train_args, "--pair-dim", 0)))
        model.load_state_dict(torch.load(os.path.join(RUNS, run_name(left_out), "best.pt"), map_location="cpu"))
        tested = names if left_out == ALL else [left_out]
        weight = float(train_option(train_args, "--homolog-weight", 1.0))
        table[left_out] = {n: test_figures(model.eval(), sets[n], weight) for n in tested}
        if args.by_group is not None and left_out in (args.by_group, ALL):
            by_group[left_out] = group_figures(model, sets[args.by_group], args.data[names.index(args.by_group)])
    with open(os.path.join(RUNS, args.name, "loso.json"), "w") as f:
        json.dump(dict(train_args=train_args, sources=names, test=table), f, indent=1)
    pct = lambda v: f"{100 * v:.1f} %"
    print("| source (test split) | crops | left out: per crop | left out: cell step | all sources: per crop | all sources: cell step |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for n in names:
        out, ins = table[n][n], table[ALL][n]
        print(f"| {n} | {out['n']} | {pct(out['crop'])} | {pct(out['cell'])} | {pct(ins['crop'])} | {pct(ins['cell'])} |")
    if by_group:
        print(f"\n| {args.by_group} split | case | crops | all sources: per crop | left out: per crop |")
        print("| --- | --- | ---: | ---: | ---: |")
        for split, groups in by_group[ALL].items():
            for g, (n, acc) in groups.items():
                print(f"| {split} | {g} | {n} | {pct(acc)} | {pct(by_group[args.by_group][split][g][1])} |")


if __name__ == "__main__":
    main()
