//! `import-karyograms` through the real binary, on karyograms rendered here from the real
//! pki-3 G-band test crops (`$KARYOSCREEN_DATA/pki3_gband`) in both layouts it reads (one frame
//! per class; one underline per class with its label below), on light and dark backgrounds:
//! every rendered chromosome must come back with its class. A mirrored karyogram and a
//! metaphase frame are refused with their reasons; box files (YOLO, VOC) label what they box.

use std::collections::BTreeMap;
use std::path::Path;

use image::{imageops, GrayImage, Luma, Rgb, RgbImage};
use karyoscreen::tools::karyogram::CLASS_NAMES;
use karyoscreen::tools::report::draw_text;
use serde::Deserialize;

mod common;
use common::{data_set, karyoscreen, LabelRow};

/// Rows of classes as karyograms lay them out.
const ROWS: [&[usize]; 4] =
    [&[0, 1, 2, 3, 4], &[5, 6, 7, 8, 9, 10, 11], &[12, 13, 14, 15, 16, 17], &[18, 19, 20, 21, 22, 23]];

/// The first `n` cells of the test split (by cell id): each cell's crops by class.
fn test_cells(n: usize) -> BTreeMap<String, Vec<Vec<GrayImage>>> {
    let set = data_set("pki3_gband");
    let rows: Vec<LabelRow> =
        csv::Reader::from_path(set.join("labels.csv")).unwrap().deserialize().map(|r| r.unwrap()).collect();
    let mut ids: Vec<&str> = rows.iter().filter(|r| r.split == "test").map(|r| r.cell_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(n);
    let mut cells: BTreeMap<String, Vec<Vec<GrayImage>>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.split == "test" && ids.contains(&r.cell_id.as_str())) {
        let crop = image::open(set.join(&row.path)).unwrap().into_luma8();
        cells.entry(row.cell_id.clone()).or_insert_with(|| vec![Vec::new(); 24])[row.label_idx].push(crop);
    }
    cells
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Frames,
    Underlines,
}

/// A karyogram of one cell (dark chromosomes on white), and each chromosome's class and box.
fn render(cell: &[Vec<GrayImage>], style: Style) -> (GrayImage, Vec<(usize, [u32; 4])>) {
    let (gap, margin) = (8u32, 10u32);
    let slot_width = |class: usize| {
        let widths: u32 = cell[class].iter().map(|c| c.width() + gap).sum();
        widths.max(40) + 2 * margin
    };
    let width = ROWS.iter().map(|row| row.iter().map(|&c| slot_width(c) + gap).sum::<u32>()).max().unwrap() + gap;
    let row_height = |row: &[usize]| {
        row.iter().flat_map(|&c| cell[c].iter().map(|i| i.height())).max().unwrap_or(20) + 3 * margin + 12
    };
    let height = ROWS.iter().map(|r| row_height(r) + gap).sum::<u32>() + gap;
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let mut truth = Vec::new();
    let mut top = gap;
    for row in ROWS {
        let h = row_height(row);
        let mut left = gap;
        for &class in row {
            let w = slot_width(class);
            let base = top + h - margin - 12; // chromosomes stand on this line
            let grey = Rgb([110, 110, 110]);
            match style {
                Style::Frames => {
                    for x in left..left + w {
                        canvas.put_pixel(x, top, grey);
                        canvas.put_pixel(x, top + h - 1, grey);
                    }
                    for y in top..top + h {
                        canvas.put_pixel(left, y, grey);
                        canvas.put_pixel(left + w - 1, y, grey);
                    }
                    draw_text(
                        &mut canvas,
                        left as i32 + 2,
                        (top + h - 10) as i32,
                        CLASS_NAMES[class],
                        1,
                        Rgb([60, 60, 60]),
                    );
                }
                Style::Underlines => {
                    for x in left + 4..left + w - 4 {
                        canvas.put_pixel(x, base + 2, Rgb([40, 40, 40]));
                        canvas.put_pixel(x, base + 3, Rgb([40, 40, 40]));
                    }
                    draw_text(
                        &mut canvas,
                        (left + w / 2) as i32 - 6,
                        (base + 6) as i32,
                        CLASS_NAMES[class],
                        1,
                        Rgb([0, 0, 0]),
                    );
                }
            }
            let mut x = left + margin + (w - 2 * margin - cell[class].iter().map(|c| c.width() + gap).sum::<u32>()) / 2;
            for crop in &cell[class] {
                let y = base - crop.height();
                for (cx, cy, &Luma([v])) in crop.enumerate_pixels() {
                    let p = canvas.get_pixel_mut(x + cx, y + cy);
                    p.0 = [p.0[0].min(v); 3];
                }
                truth.push((class, [x, y, crop.width(), crop.height()]));
                x += crop.width() + gap;
            }
            left += w + gap;
        }
        top += h + gap;
    }
    (imageops::grayscale(&canvas), truth)
}

#[derive(Deserialize)]
struct Imported {
    label_idx: usize,
    cell_id: String,
    x: u32,
    y: u32,
    box_width: u32,
    box_height: u32,
}

fn imported(out: &Path) -> Vec<Imported> {
    csv::Reader::from_path(out.join("labels.csv")).unwrap().deserialize().map(|r| r.unwrap()).collect()
}

/// Rendered chromosomes whose box holds exactly one imported crop's centre, of the right class.
fn right(truth: &[(usize, [u32; 4])], rows: &[&Imported]) -> usize {
    truth
        .iter()
        .filter(|(class, [x, y, w, h])| {
            let inside: Vec<&&Imported> = rows
                .iter()
                .filter(|r| {
                    let (cx, cy) = (r.x + r.box_width / 2, r.y + r.box_height / 2);
                    cx >= *x && cx < x + w && cy >= *y && cy < y + h
                })
                .collect();
            inside.len() == 1 && inside[0].label_idx == *class
        })
        .count()
}

#[test]
fn rendered_karyograms_come_back_with_every_class_right() {
    let dir = common::scratch("import_karyograms", "rendered");
    let cells = test_cells(12);
    let mut truth_of = BTreeMap::new();
    let mut paths = Vec::new();
    for (k, (cell, crops)) in cells.iter().enumerate() {
        let style = if k % 2 == 0 { Style::Frames } else { Style::Underlines };
        let (mut image, truth) = render(crops, style);
        if k % 4 >= 2 {
            imageops::invert(&mut image); // light chromosomes on a dark ground
        }
        let path = dir.join(format!("{cell}.png"));
        image.save(&path).unwrap();
        truth_of.insert(cell.clone(), truth);
        paths.push(path);
    }
    let out = dir.join("set");
    let mut args = vec!["import-karyograms".to_string(), "--out".into(), out.to_str().unwrap().into()];
    args.extend(paths.iter().map(|p| p.to_str().unwrap().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = karyoscreen(&args);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("frames layout") && stdout.contains("underlines layout"), "{stdout}");

    let rows = imported(&out);
    let (mut total, mut correct) = (0, 0);
    for (cell, truth) in &truth_of {
        let mine: Vec<&Imported> = rows.iter().filter(|r| &r.cell_id == cell).collect();
        assert_eq!(mine.len(), truth.len(), "{cell}: crops cut (truth {truth:?})");
        total += truth.len();
        correct += right(truth, &mine);
    }
    assert_eq!(rows.len(), total);
    eprintln!("{correct} of {total} rendered chromosomes came back with their class");
    assert!(correct * 100 >= total * 99, "{correct} of {total} chromosomes with their class");

    // The set is one `eval` reads: every crop a file, one cell per karyogram.
    let eval = karyoscreen(&["eval", out.to_str().unwrap(), "--json"]);
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
}

#[test]
fn a_mirrored_karyogram_and_a_metaphase_are_refused_with_the_reason() {
    let dir = common::scratch("import_karyograms", "refused");
    let cells = test_cells(1);
    let (image, _) = render(cells.values().next().unwrap(), Style::Frames);
    let mirrored = dir.join("mirrored.png");
    imageops::flip_horizontal(&image).save(&mirrored).unwrap();
    let frame = dir.join("metaphase.png");
    let run = karyoscreen(&["demo", "--write-frame", "1", "--out", frame.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let out = dir.join("set");
    let run = karyoscreen(&[
        "import-karyograms",
        mirrored.to_str().unwrap(),
        frame.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(!run.status.success(), "{stdout}");
    assert!(stdout.contains("mirrored.png: refused: chromosome lengths do not fall"), "{stdout}");
    assert!(stdout.contains("metaphase.png: refused: neither 24 class frames nor 24 underlines"), "{stdout}");
    assert!(stdout.contains("imported 0 of 2 karyograms (2 refused)"), "{stdout}");
    assert!(imported(&out).is_empty());

    let run = karyoscreen(&["import-karyograms", frame.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && err.contains("not empty") && err.lines().count() == 1, "{err}");
}

#[test]
fn box_files_label_what_they_box() {
    let dir = common::scratch("import_karyograms", "boxes");
    let (image, truth) = render(test_cells(1).values().next().unwrap(), Style::Frames);
    let (w, h) = (image.width() as f64, image.height() as f64);
    let yolo = dir.join("yolo.png");
    image.save(&yolo).unwrap();
    let lines: Vec<String> = truth
        .iter()
        .map(|(c, [x, y, bw, bh])| {
            let (bw, bh) = (*bw as f64, *bh as f64);
            format!("{c} {} {} {} {}", (*x as f64 + bw / 2.0) / w, (*y as f64 + bh / 2.0) / h, bw / w, bh / h)
        })
        .collect();
    std::fs::write(dir.join("yolo.txt"), lines.join("\n")).unwrap();
    let voc = dir.join("voc.png");
    image.save(&voc).unwrap();
    let objects: String = truth
        .iter()
        .map(|(c, [x, y, bw, bh])| {
            format!(
                "<object><name>chr{}</name><bndbox><xmin>{x}</xmin><ymin>{y}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>",
                CLASS_NAMES[*c],
                x + bw,
                y + bh
            )
        })
        .collect();
    std::fs::write(dir.join("voc.xml"), format!("<annotation>{objects}</annotation>")).unwrap();
    let broken = dir.join("broken.png");
    image.save(&broken).unwrap();
    std::fs::write(dir.join("broken.txt"), "25 0.5 0.5 0.1 0.1\n").unwrap();

    let out = dir.join("set");
    let run = karyoscreen(&[
        "import-karyograms",
        yolo.to_str().unwrap(),
        voc.to_str().unwrap(),
        broken.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("yolo.png: yolo layout") && stdout.contains("voc.png: voc layout"), "{stdout}");
    assert!(stdout.contains("broken.txt: line 1: not `class cx cy w h`"), "{stdout}");
    let rows = imported(&out);
    for cell in ["yolo", "voc"] {
        let mine: Vec<&Imported> = rows.iter().filter(|r| r.cell_id == cell).collect();
        assert_eq!((mine.len(), right(&truth, &mine)), (truth.len(), truth.len()), "{cell}");
    }
    assert_eq!(rows.len(), 2 * truth.len());
}
