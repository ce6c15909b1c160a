//! `eval-frames` end to end through the real binary, on a frames set built here from drawn
//! bars (every object's pixels known) and a demo frame (a known karyotype): exact counts,
//! true / false positives and misses against polygons, a label map and boxes.

use std::path::{Path, PathBuf};

use image::{GrayImage, Luma};
use serde_json::{json, Value};

mod common;
use common::karyoscreen;

const BACKGROUND: u8 = 230;
const INK: u8 = 50;

/// `[x, y, w, h]` rectangles of ink on a light frame.
fn draw(width: u32, height: u32, bars: &[[u32; 4]]) -> GrayImage {
    let mut frame = GrayImage::from_pixel(width, height, Luma([BACKGROUND]));
    for &[x0, y0, w, h] in bars {
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                frame.put_pixel(x, y, Luma([INK]));
            }
        }
    }
    frame
}

fn polygon([x, y, w, h]: [u32; 4]) -> Value {
    let (x, y, w, h) = (x as f64, y as f64, w as f64, h as f64);
    json!({ "polygon": [[x, y], [x + w, y], [x + w, y + h], [x, y + h]], "label": null })
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// Frames (all 320×240 but the demo frame):
/// - `bars` (test): six separate bars; truth polygons for five of them and for one place
///   where nothing is drawn: 5 matched, 1 found object unmatched, 1 true one missed;
/// - `mapped` (test): a label map: two separate class-1 bars, a class-2 bar, a cross of a
///   class-3 and a class-4 bar (centre 255: one blob, which matches the longer bar only) and
///   two class-5 bars side by side (one blob, and one instance in this truth): 5 found,
///   6 true instances, 5 matched; true count 7;
/// - `demo` (test): demo frame 1, 46,XX, count and karyotype only;
/// - `boxed` (val): the `bars` frame with box truth, one box moved off its bar.
fn build_set(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("ann")).unwrap();
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("labelmaps")).unwrap();
    let bars: [[u32; 4]; 6] =
        [[20, 20, 8, 40], [60, 20, 8, 40], [100, 20, 8, 40], [140, 20, 8, 40], [180, 20, 8, 40], [220, 20, 8, 40]];
    draw(320, 240, &bars).save(dir.join("images/bars.png")).unwrap();
    let mut truth: Vec<Value> = bars[..5].iter().map(|&b| polygon(b)).collect();
    truth.push(polygon([40, 150, 8, 40]));
    write_json(
        &dir.join("ann/bars.json"),
        &json!({ "image": "images/bars.png", "width": 320, "height": 240, "count": 6, "instances": truth }),
    );
    let mut boxes: Vec<Value> =
        bars.iter().map(|&[x, y, w, h]| json!({ "bbox": [x, y, w, h], "label": "1" })).collect();
    boxes[5] = json!({ "bbox": [260, 150, 8, 40], "label": "2" });
    write_json(
        &dir.join("ann/boxed.json"),
        &json!({ "image": "images/bars.png", "width": 320, "height": 240, "count": 6, "instances": boxes }),
    );

    // label map: [x, y, w, h, class]
    let classed: [[u32; 5]; 7] = [
        [20, 20, 8, 40, 1],
        [60, 20, 8, 40, 1],
        [100, 20, 8, 40, 2],
        [150, 46, 60, 8, 3],
        [176, 30, 8, 40, 4],
        [240, 20, 8, 40, 5],
        [248, 20, 8, 40, 5],
    ];
    let rects: Vec<[u32; 4]> = classed.iter().map(|&[x, y, w, h, _]| [x, y, w, h]).collect();
    draw(320, 240, &rects).save(dir.join("images/mapped.png")).unwrap();
    let mut map = GrayImage::new(320, 240);
    for &[x0, y0, w, h, class] in &classed {
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                let v = if map.get_pixel(x, y)[0] == 0 { class as u8 } else { 255 };
                map.put_pixel(x, y, Luma([v]));
            }
        }
    }
    map.save(dir.join("labelmaps/mapped.png")).unwrap();
    write_json(
        &dir.join("ann/mapped.json"),
        &json!({ "image": "images/mapped.png", "width": 320, "height": 240, "count": 7, "instances": [],
                 "labelmap": "labelmaps/mapped.png" }),
    );

    let demo = dir.join("images/demo.png");
    let out = karyoscreen(&["demo", "--write-frame", "1", "--out", demo.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    write_json(&dir.join("ann/demo.json"), &json!({ "image": "images/demo.png", "count": 46, "karyotype": "46,XX" }));

    std::fs::write(
        dir.join("frames.csv"),
        "image,ann,group_id,split,count,karyotype,band\n\
         images/bars.png,ann/bars.json,a,test,6,,G\n\
         images/mapped.png,ann/mapped.json,b,test,7,,G\n\
         images/demo.png,ann/demo.json,c,test,46,\"46,XX\",G\n\
         images/bars.png,ann/boxed.json,d,val,6,,G\n",
    )
    .unwrap();
    dir.to_path_buf()
}

/// `eval-frames DIR --json --segmenter SEGMENTER EXTRA…`, parsed.
fn run_json(dir: &Path, segmenter: &str, extra: &[&str]) -> Value {
    let mut args = vec!["eval-frames", dir.to_str().unwrap(), "--json", "--segmenter", segmenter];
    args.extend(extra);
    let out = karyoscreen(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn counts(figures: &Value) -> (u64, u64, u64) {
    (figures["tp"].as_u64().unwrap(), figures["fp"].as_u64().unwrap(), figures["fn"].as_u64().unwrap())
}

#[test]
fn frames_are_scored_against_polygons_label_maps_boxes_and_karyotypes() {
    let dir = build_set(&common::scratch("eval_frames", "set"));

    // the classic segmenter, whose result on these drawn frames the figures below expect
    let report = run_json(&dir, "classic", &["--split", "test"]);
    assert_eq!((&report["frames"], &report["segmenter"]), (&Value::from(3), &Value::from("classic")));
    let rows = report["rows"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["segmenter"] == "classic"), "{rows:?}");
    let row = |image: &str| rows.iter().find(|r| r["image"] == image).unwrap_or_else(|| panic!("{image}: no row"));
    let bars = row("images/bars.png");
    assert_eq!((bars["truth_count"].as_u64(), bars["found"].as_u64()), (Some(6), Some(6)), "{bars}");
    assert_eq!(counts(bars), (5, 1, 1), "{bars}");
    assert_eq!(bars["determined"], false);
    assert!(bars.get("karyotype_exact").is_none());
    let mapped = row("images/mapped.png");
    assert_eq!((mapped["found"].as_u64(), mapped["abs_error"].as_u64()), (Some(5), Some(2)), "{mapped}");
    assert_eq!(counts(mapped), (5, 0, 1), "{mapped}");
    let demo = row("images/demo.png");
    assert_eq!(demo["found"], 46, "{demo}");
    assert_eq!(demo["karyotype_exact"], true, "{demo}");
    assert!(demo.get("tp").is_none(), "no instance truth, no instance figures: {demo}");

    let close = |v: &Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-9;
    assert!(close(&report["count_exact_pct"], 200.0 / 3.0), "{}", report["count_exact_pct"]);
    assert!(close(&report["count_within_2_pct"], 100.0));
    assert!(close(&report["mean_abs_count_error"], 2.0 / 3.0));
    assert_eq!((report["karyotype"]["frames"].as_u64(), report["karyotype"]["exact"].as_u64()), (Some(1), Some(1)));
    let instances = report["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2, "{instances:?}");
    assert_eq!(instances[0]["truth"], "polygons");
    assert_eq!(counts(&instances[0]), (5, 1, 1));
    assert!(close(&instances[0]["precision"], 5.0 / 6.0) && close(&instances[0]["recall"], 5.0 / 6.0));
    assert_eq!(instances[1]["truth"], "label_map");
    assert_eq!(counts(&instances[1]), (5, 0, 1));
    assert!(close(&instances[1]["precision"], 1.0) && close(&instances[1]["recall"], 5.0 / 6.0));
    assert!(close(&instances[1]["f1"], 2.0 * (5.0 / 6.0) / (1.0 + 5.0 / 6.0)));

    // boxes: box IoU, said so
    let report = run_json(&dir, "classic", &["--split", "val"]);
    assert_eq!(report["instances"][0]["truth"], "boxes");
    assert_eq!(counts(&report["instances"][0]), (5, 1, 1));

    // whole spreads only: no instance truth left, and the text says n/a rather than 0
    let out = karyoscreen(&["eval-frames", dir.to_str().unwrap(), "--min-count", "40"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("frames evaluated        1"), "{text}");
    assert!(text.contains("karyotype exact         100.0 %"), "{text}");
    assert!(text.contains("n/a (no polygons/label maps)"), "{text}");
    let out = karyoscreen(&["eval-frames", dir.to_str().unwrap(), "--split", "test"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("touching homologs merge"), "{text}");
    assert!(text.contains("precision 0.833  recall 0.833"), "{text}");
}

/// One frame: demo frame 1 inverted, so light on dark (fluorescent), where `--core-logit` applies.
fn build_fluorescent_set(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("ann")).unwrap();
    let frame = dir.join("demo.png");
    let out = karyoscreen(&["demo", "--write-frame", "1", "--out", frame.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut gray = image::open(&frame).unwrap().to_luma8();
    image::imageops::invert(&mut gray);
    gray.save(&frame).unwrap();
    write_json(&dir.join("ann/demo.json"), &json!({ "image": "demo.png", "count": 46, "karyotype": "46,XX" }));
    std::fs::write(
        dir.join("frames.csv"),
        "image,ann,group_id,split,count,karyotype,band\ndemo.png,ann/demo.json,a,test,46,\"46,XX\",Q\n",
    )
    .unwrap();
    dir.to_path_buf()
}

#[test]
fn a_core_logit_override_cuts_fluorescent_frames_only_and_is_reported() {
    let learned = |dir: &Path, extra: &[&str]| run_json(dir, "learned", &[&["--split", "test"], extra].concat());
    let found =
        |report: &Value| report["rows"].as_array().unwrap().iter().map(|r| r["found"].clone()).collect::<Vec<_>>();

    let fluorescent = build_fluorescent_set(&common::scratch("eval_frames", "core_logit_fluorescent"));
    let card = learned(&fluorescent, &[]);
    assert!(card.get("core_logit").is_none(), "the card's own value is not reported as an override");
    assert_eq!(found(&card), [46]);
    // a threshold above most of the network's core logits breaks chromosomes into pieces
    let high = learned(&fluorescent, &["--core-logit", "4"]);
    assert_eq!(high["core_logit"], 4.0);
    assert!(high["rows"][0]["found"].as_u64().unwrap() > 46, "{}", high["rows"][0]);

    // dark-on-light frames are cut at the card's dark_on_light value either way
    let drawn = build_set(&common::scratch("eval_frames", "core_logit_drawn"));
    assert_eq!(found(&learned(&drawn, &[])), found(&learned(&drawn, &["--core-logit", "4"])));
}
