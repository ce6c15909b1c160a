//! `analyze --report DIR`: the annotated frame and the karyogram are written, decode, and show
//! the boxes in colour over the gray frame.

use std::path::PathBuf;

mod common;
use common::karyoscreen;

fn scratch(name: &str) -> PathBuf {
    common::scratch("report", name)
}

fn coloured(p: &image::Rgb<u8>) -> bool {
    let [r, g, b] = p.0;
    r.max(g).max(b) - r.min(g).min(b) > 60
}

#[test]
fn report_writes_an_annotated_frame_and_a_karyogram() {
    let dir = scratch("demo2");
    let frame = dir.join("cell.png");
    let out = karyoscreen(&["demo", "--write-frame", "2", "--out", frame.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = dir.join("report");
    let out = karyoscreen(&["analyze", frame.to_str().unwrap(), "--json", "--report", report.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout stays pure JSON");

    let gray = image::open(&frame).unwrap().to_luma8();
    let annotated = image::open(report.join("cell.annotated.png")).expect("annotated decodes").to_rgb8();
    let karyogram = image::open(report.join("cell.karyogram.png")).expect("karyogram decodes").to_rgb8();
    // the frame under a header band, at its own width
    assert_eq!(annotated.width(), gray.width());
    assert!(annotated.height() > gray.height() && annotated.height() < gray.height() + 200);
    assert!(karyogram.width() >= 400 && karyogram.height() >= 300, "{:?}", karyogram.dimensions());
    assert!(karyogram.width() <= 4000 && karyogram.height() <= 4000, "{:?}", karyogram.dimensions());
    assert!(karyogram.pixels().any(|p| p.0[0] < 128), "karyogram has no dark pixels (no crops)");

    // every object's box edge is coloured where the gray frame was gray
    let header = annotated.height() - gray.height();
    let objects = result["objects"].as_array().unwrap();
    assert!(objects.len() >= 40);
    for object in objects {
        let b = &object["bbox"];
        let (x, y) = (b["x"].as_u64().unwrap() as u32, b["y"].as_u64().unwrap() as u32);
        // left edge of the box, 3 px outside the object, half way down
        let h = b["height"].as_u64().unwrap() as u32;
        let (ex, ey) = (x.saturating_sub(3), y + h / 2 + header);
        assert!(coloured(annotated.get_pixel(ex, ey)), "no coloured box edge at ({ex},{ey}) for {object}");
    }
}

#[test]
fn report_dir_that_cannot_be_written_is_a_one_line_error_naming_it() {
    let dir = scratch("blocked");
    let frame = dir.join("cell.png");
    assert!(karyoscreen(&["demo", "--write-frame", "1", "--out", frame.to_str().unwrap()]).status.success());
    let blocker = dir.join("not-a-dir");
    std::fs::write(&blocker, b"a file").unwrap();
    let out = karyoscreen(&["analyze", frame.to_str().unwrap(), "--report", blocker.join("sub").to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("not-a-dir"), "{err}");
}
