from karyotrain.threshold_sweep import sweep


def report(logit, errors, split="train"):
    rows = [dict(image=image, abs_error=error) for image, error in errors.items()]
    return dict(data="../data/frames_q/", split=split, core_logit=logit, rows=rows)


def test_each_threshold_and_each_frames_best_are_summarised_per_set_and_split():
    reports = [
        report(0.5, {"a.png": 0, "b.png": 3, "c.png": 5}),
        report(1.0, {"a.png": 2, "b.png": 1, "c.png": 4}),
        report(2.0, {"a.png": 1, "b.png": 0, "c.png": 3}),
        report(1.0, {"a.png": 2}, split="val"),
    ]
    out = sweep(reports)
    train = out[("frames_q", "train")]
    assert train["mean_abs"] == {0.5: 8 / 3, 1.0: 7 / 3, 2.0: 4 / 3}
    # bests 0, 0, 3
    assert train["per_frame_best"] == dict(mean_abs=1.0, exact=2 / 3, within2=2 / 3)
    assert out[("frames_q", "val")]["mean_abs"] == {1.0: 2.0}
