//! Pictures of one analysed cell for the person who signs off: the frame with every object's
//! box and class, and a karyogram of crops cut from the frame, arranged in ISCN order.
//!
//! Colours: green = confident call, amber = low-confidence call (below the verdict's
//! `min_confidence`), red = structural flag (or a class with a copy number other than two in the
//! karyogram). On the frame, a dashed box is an object cut from a larger blob (touching
//! chromosomes split at their neck) and a purple box a cluster segmentation left unresolved
//! (not counted, not classified). Text is drawn with the `font8x8` bitmap glyphs, so no font file is needed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::{imageops, GrayImage, Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_hollow_rect_mut};
use imageproc::rect::Rect;

use crate::pipeline::analyse::{iscn_abbreviation, Call};
use crate::pipeline::decide::{Thresholds, Verdict};
use crate::pipeline::segment::BBox;
use crate::pipeline::CellResult;

pub const GREEN: Rgb<u8> = Rgb([0, 160, 60]);
pub const AMBER: Rgb<u8> = Rgb([245, 160, 0]);
pub const RED: Rgb<u8> = Rgb([220, 0, 0]);
/// Clusters segmentation did not separate.
pub const PURPLE: Rgb<u8> = Rgb([150, 0, 200]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);

/// Karyogram rows as laid out on a standard karyotype form.
pub const KARYOGRAM_ROWS: [&[&str]; 4] = [
    &["1", "2", "3", "4", "5"],
    &["6", "7", "8", "9", "10", "11", "12", "X"],
    &["13", "14", "15", "16", "17", "18"],
    &["19", "20", "21", "22", "Y"],
];

/// The two files written for one frame.
#[derive(Debug, Clone)]
pub struct ReportPaths {
    pub annotated: PathBuf,
    pub karyogram: PathBuf,
}

/// Writes `DIR/<stem>.annotated.png` and `DIR/<stem>.karyogram.png`, creating DIR.
pub fn write_report(
    frame: &GrayImage,
    result: &CellResult,
    limits: &Thresholds,
    dir: &Path,
    stem: &str,
) -> Result<ReportPaths> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create report folder", dir.display()))?;
    let paths = ReportPaths {
        annotated: dir.join(format!("{stem}.annotated.png")),
        karyogram: dir.join(format!("{stem}.karyogram.png")),
    };
    annotated(frame, result, limits)
        .save(&paths.annotated)
        .with_context(|| format!("{}: cannot write report image", paths.annotated.display()))?;
    karyogram(frame, result, limits)
        .save(&paths.karyogram)
        .with_context(|| format!("{}: cannot write report image", paths.karyogram.display()))?;
    Ok(paths)
}

fn colour_of(call: &Call, limits: &Thresholds) -> Rgb<u8> {
    if call.is_flagged() {
        RED
    } else if call.confidence < limits.min_confidence {
        AMBER
    } else {
        GREEN
    }
}

/// The text beside an object: its class, `?` when low confidence, the structural flag.
fn object_label(call: &Call, limits: &Thresholds) -> String {
    let mut text = call.label.clone();
    if call.confidence < limits.min_confidence {
        text.push('?');
    }
    if call.is_flagged() {
        text = format!(
            "{}({}){}",
            iscn_abbreviation(&call.structure),
            text,
            call.arm.as_deref().map(|a| format!("({a})")).unwrap_or_default()
        );
    }
    text
}

fn verdict_colour(verdict: Verdict) -> Rgb<u8> {
    match verdict {
        Verdict::Normal => GREEN,
        Verdict::Abnormal => RED,
        Verdict::Indeterminate => AMBER,
    }
}

/// The frame in colour under a header band, every object boxed and labelled.
pub fn annotated(frame: &GrayImage, result: &CellResult, limits: &Thresholds) -> RgbImage {
    let (w, h) = frame.dimensions();
    let scale = if w >= 600 { 2 } else { 1 };
    let line = 10 * scale;
    let header_lines = [
        header_line(result),
        format!("verdict {}", result.verdict.to_string().to_uppercase()),
        result.reasons.join("; "),
        format!("green: call   amber: confidence < {:.2}   red: structural flag", limits.min_confidence),
        "dashed: split from a blob   purple: unresolved (not counted)   screening aid - requires sign-off".to_string(),
    ];
    let text_scale = |s: &str| if (s.len() as u32) * 8 * scale + 16 <= w.max(400) { scale } else { 1 };
    let header = 8 + header_lines.iter().map(|l| 10 * text_scale(l)).sum::<u32>() + 6;
    let width = w.max(400);
    let mut out = RgbImage::from_pixel(width, h + header, WHITE);
    let mut y = 6;
    for (i, text) in header_lines.iter().enumerate() {
        let s = text_scale(text);
        let colour = if i == 1 { verdict_colour(result.verdict) } else { BLACK };
        draw_text(&mut out, 8, y as i32, text, s, colour);
        y += 10 * s;
    }
    draw_filled_rect_mut(&mut out, Rect::at(0, header as i32 - 3).of_size(width, 2), BLACK);
    imageops::replace(&mut out, &image::DynamicImage::ImageLuma8(frame.clone()).to_rgb8(), 0, header as i64);
    // boxes first, labels over them, so no box line crosses a label
    let around = |b: BBox| Rect::at(b.x as i32 - 3, (b.y + header) as i32 - 3).of_size(b.width + 6, b.height + 6);
    let boxes: Vec<(Rect, Rgb<u8>, String, bool)> = result
        .objects
        .iter()
        .map(|o| (around(o.bbox), colour_of(&o.call, limits), object_label(&o.call, limits), o.split_from.is_some()))
        .chain(result.unresolved_boxes.iter().map(|&b| (around(b), PURPLE, "unresolved".to_string(), false)))
        .collect();
    for (rect, colour, _, split) in &boxes {
        draw_hollow_rect_mut(&mut out, *rect, *colour);
        if *split {
            // a part of a split blob: a dashed second line outside the box
            let outer = Rect::at(rect.left() - 2, rect.top() - 2).of_size(rect.width() + 4, rect.height() + 4);
            draw_dashed_rect(&mut out, outer, *colour);
        } else {
            let inner = Rect::at(rect.left() + 1, rect.top() + 1).of_size(rect.width() - 2, rect.height() - 2);
            draw_hollow_rect_mut(&mut out, inner, *colour);
        }
    }
    for (rect, colour, text, _) in &boxes {
        let tw = text.len() as u32 * 8 * scale + 4;
        let th = line;
        let x = rect.left().clamp(0, (width - tw.min(width)) as i32);
        let mut ty = rect.top() - th as i32;
        if ty < header as i32 {
            ty = rect.bottom() + 1;
        }
        draw_filled_rect_mut(&mut out, Rect::at(x, ty).of_size(tw, th), *colour);
        draw_text(&mut out, x + 2, ty + scale as i32, text, scale, WHITE);
    }
    out
}

/// The first header line: the count and the karyotype, or why there is none ("karyotype not
/// determined: N objects found" already says "karyotype").
fn header_line(result: &CellResult) -> String {
    if result.karyotype_determined {
        format!("{} objects   karyotype {}", result.count, result.karyotype)
    } else {
        format!("{} objects   {}", result.count, result.karyotype)
    }
}

/// A rectangle's outline in dashes of 4 pixels with gaps of 3.
fn draw_dashed_rect(image: &mut RgbImage, rect: Rect, colour: Rgb<u8>) {
    let (w, h) = (image.width() as i32, image.height() as i32);
    let mut put = |x: i32, y: i32, step: i32| {
        if step % 7 < 4 && (0..w).contains(&x) && (0..h).contains(&y) {
            image.put_pixel(x as u32, y as u32, colour);
        }
    };
    for x in rect.left()..=rect.right() {
        put(x, rect.top(), x - rect.left());
        put(x, rect.bottom(), x - rect.left());
    }
    for y in rect.top()..=rect.bottom() {
        put(rect.left(), y, y - rect.top());
        put(rect.right(), y, y - rect.top());
    }
}

/// Crops cut from the frame by box, in ISCN order, pairs side by side, each class labelled.
pub fn karyogram(frame: &GrayImage, result: &CellResult, limits: &Thresholds) -> RgbImage {
    let background =
        crate::pipeline::preprocess::border_median(frame.width() as usize, frame.height() as usize, frame.as_raw());
    let bg = Rgb([background; 3]);
    let ink = if background >= 128 { BLACK } else { WHITE };
    // each crop stands upright: wider-than-tall ones turn a quarter
    let crops: Vec<(String, RgbImage, Rgb<u8>, String)> = result
        .objects
        .iter()
        .map(|o| {
            let b = o.bbox;
            let (x0, y0) = (b.x.saturating_sub(2), b.y.saturating_sub(2));
            let x1 = (b.x + b.width + 2).min(frame.width());
            let y1 = (b.y + b.height + 2).min(frame.height());
            let mut crop = imageops::crop_imm(frame, x0, y0, x1 - x0, y1 - y0).to_image();
            if crop.width() as f32 > crop.height() as f32 * 1.2 {
                crop = imageops::rotate90(&crop);
            }
            let rgb = image::DynamicImage::ImageLuma8(crop).to_rgb8();
            let mark = if o.call.is_flagged() {
                iscn_abbreviation(&o.call.structure).to_string()
            } else if o.call.confidence < limits.min_confidence {
                format!("{:.2}", o.call.confidence)
            } else {
                String::new()
            };
            (o.call.label.clone(), rgb, colour_of(&o.call, limits), mark)
        })
        .collect();
    // one scale for the whole cell, so relative sizes stay true
    let tallest = crops.iter().map(|c| c.1.height()).max().unwrap_or(1).max(1);
    let zoom = (160.0 / tallest as f32).clamp(1.0, 4.0);
    let crops: Vec<(String, RgbImage, Rgb<u8>, String)> = crops
        .into_iter()
        .map(|(label, img, colour, mark)| {
            let (w, h) = img.dimensions();
            let (zw, zh) = (((w as f32) * zoom).round() as u32, ((h as f32) * zoom).round() as u32);
            let img = imageops::resize(&img, zw.max(1), zh.max(1), imageops::FilterType::Triangle);
            (label, img, colour, mark)
        })
        .collect();

    const GAP: u32 = 6; // between crops of one class
    const SLOT_GAP: u32 = 28; // between classes
    const MARGIN: u32 = 16;
    const LABEL: u32 = 42; // below the crops: class name (scale 2), copy number, marks
    let slot_width = |label: &str| -> u32 {
        let members: Vec<_> = crops.iter().filter(|c| c.0 == label).collect();
        let crops_w: u32 =
            members.iter().map(|c| c.1.width() + 4).sum::<u32>() + GAP * members.len().saturating_sub(1) as u32;
        crops_w.max(40).max(label.len() as u32 * 16 + 8)
    };
    let row_height = |row: &[&str]| -> u32 {
        crops.iter().filter(|c| row.contains(&c.0.as_str())).map(|c| c.1.height() + 4).max().unwrap_or(24) + LABEL
    };
    let unplaced: Vec<&(String, RgbImage, Rgb<u8>, String)> =
        crops.iter().filter(|c| !KARYOGRAM_ROWS.iter().any(|r| r.contains(&c.0.as_str()))).collect();
    let rows_width = KARYOGRAM_ROWS
        .iter()
        .map(|row| row.iter().map(|l| slot_width(l)).sum::<u32>() + SLOT_GAP * (row.len() as u32 - 1))
        .max()
        .unwrap_or(0);
    let header_lines = [
        format!("Karyogram   {}   verdict {}", result.karyotype, result.verdict.to_string().to_uppercase()),
        "screening aid - requires sign-off".to_string(),
        result.reasons.join("; "),
        "red box: structural flag   amber box: low confidence (value shown)   red label: copies != 2".to_string(),
    ];
    let width = (rows_width + 2 * MARGIN)
        .max(header_lines.iter().map(|l| l.len() as u32 * 8 + 2 * MARGIN).max().unwrap_or(0).min(1600));
    let header = MARGIN + 20 + 20 + 10 + 10 + 12;
    let body: u32 = KARYOGRAM_ROWS.iter().map(|r| row_height(r) + 12).sum();
    let extra = if unplaced.is_empty() { 0 } else { 30 + unplaced.iter().map(|c| c.1.height() + 4).max().unwrap_or(0) };
    let mut out = RgbImage::from_pixel(width, header + body + extra + MARGIN, bg);
    draw_filled_rect_mut(&mut out, Rect::at(0, 0).of_size(width, header - 6), WHITE);
    draw_text(&mut out, MARGIN as i32, MARGIN as i32 - 6, &header_lines[0], 2, verdict_colour(result.verdict));
    draw_text(&mut out, MARGIN as i32, MARGIN as i32 + 14, &header_lines[1], 2, BLACK);
    draw_text(&mut out, MARGIN as i32, MARGIN as i32 + 34, &header_lines[2], 1, BLACK);
    draw_text(&mut out, MARGIN as i32, MARGIN as i32 + 46, &header_lines[3], 1, BLACK);

    let mut y = header;
    for row in KARYOGRAM_ROWS {
        let rh = row_height(row);
        let row_w = row.iter().map(|l| slot_width(l)).sum::<u32>() + SLOT_GAP * (row.len() as u32 - 1);
        let mut x = (width - row_w) / 2;
        for label in row {
            let sw = slot_width(label);
            let members: Vec<_> = crops.iter().filter(|c| c.0 == *label).collect();
            let crops_w: u32 =
                members.iter().map(|c| c.1.width() + 4).sum::<u32>() + GAP * members.len().saturating_sub(1) as u32;
            let mut cx = x + (sw - crops_w) / 2;
            let base = y + rh - LABEL; // crops stand on this line
            for (_, img, colour, mark) in &members {
                let top = base - img.height() - 2;
                imageops::replace(&mut out, img, cx as i64 + 2, top as i64);
                if *colour != GREEN {
                    let rect = Rect::at(cx as i32, top as i32 - 2).of_size(img.width() + 4, img.height() + 4);
                    draw_hollow_rect_mut(&mut out, rect, *colour);
                    if !mark.is_empty() {
                        draw_text(&mut out, cx as i32, top as i32 - 12, mark, 1, *colour);
                    }
                }
                cx += img.width() + 4 + GAP;
            }
            // the baseline under the class, then its name and, when not two, its copy number
            draw_filled_rect_mut(&mut out, Rect::at(x as i32, base as i32 + 2).of_size(sw, 2), ink);
            let autosome = label.parse::<u32>().is_ok();
            let unusual = autosome && members.len() != 2;
            let name_colour = if unusual { RED } else { ink };
            let name_x = x + (sw - label.len() as u32 * 16) / 2;
            draw_text(&mut out, name_x as i32, base as i32 + 8, label, 2, name_colour);
            if unusual || !autosome {
                let copies = format!("x{}", members.len());
                let cx = x + (sw - copies.len() as u32 * 8) / 2;
                draw_text(&mut out, cx as i32, base as i32 + 28, &copies, 1, name_colour);
            }
            x += sw + SLOT_GAP;
        }
        y += rh + 12;
    }
    if !unplaced.is_empty() {
        draw_text(&mut out, MARGIN as i32, y as i32 + 4, "other objects", 1, ink);
        let mut x = MARGIN;
        for (_, img, colour, _) in unplaced {
            imageops::replace(&mut out, img, x as i64, y as i64 + 20);
            draw_hollow_rect_mut(
                &mut out,
                Rect::at(x as i32, y as i32 + 20).of_size(img.width(), img.height()),
                *colour,
            );
            x += img.width() + GAP;
        }
    }
    out
}

/// Draws ASCII text with the 8×8 bitmap font, each glyph pixel a `scale`×`scale` square.
/// Characters outside ASCII are drawn as `?`.
pub fn draw_text(image: &mut RgbImage, x: i32, y: i32, text: &str, scale: u32, colour: Rgb<u8>) {
    let (w, h) = (image.width() as i32, image.height() as i32);
    let s = scale.max(1) as i32;
    for (i, c) in text.chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY[if c.is_ascii() { c as usize } else { b'?' as usize }];
        let gx = x + i as i32 * 8 * s;
        if gx >= w {
            break;
        }
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..s {
                    for dx in 0..s {
                        let (px, py) = (gx + col * s + dx, y + row as i32 * s + dy);
                        if (0..w).contains(&px) && (0..h).contains(&py) {
                            image.put_pixel(px as u32, py as u32, colour);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_draws_glyph_pixels_inside_the_image_only() {
        let mut image = RgbImage::from_pixel(40, 12, WHITE);
        draw_text(&mut image, 2, 2, "A1", 1, RED);
        assert!(image.pixels().any(|p| *p == RED));
        draw_text(&mut image, 35, 8, "WWWW", 3, RED); // runs off the edge: clipped, no panic
    }

    fn cell(determined: bool) -> CellResult {
        use crate::pipeline::analyse::Karyotype;
        use crate::pipeline::{ObjectResult, Timings};
        let call = Call {
            class: 0,
            label: "1".into(),
            confidence: 0.99,
            argmax: 0,
            structure: "normal".into(),
            structure_confidence: 0.99,
            arm: None,
            position: None,
        };
        let object = |x, split_from| ObjectResult {
            bbox: BBox { x, y: 20, width: 10, height: 30 },
            split_from,
            call: call.clone(),
            mask: vec![true; 300],
        };
        let karyotype = if determined { "46,XX" } else { "karyotype not determined: 14 objects found" };
        CellResult {
            count: 14,
            karyotype: karyotype.into(),
            karyotype_determined: determined,
            verdict: Verdict::Indeterminate,
            reasons: vec!["too few objects".into()],
            objects: vec![object(20, None), object(60, Some(0))],
            polarity: crate::pipeline::preprocess::Polarity::DarkOnLight,
            debris: 0,
            nuclei: 0,
            unresolved: 1,
            unresolved_boxes: vec![BBox { x: 100, y: 20, width: 40, height: 40 }],
            segmenter: crate::pipeline::frame::SegmentedBy::Classic,
            segmenter_sha256: None,
            timings: Timings::default(),
            detail: Karyotype {
                count: 14,
                sex_chromosomes: String::new(),
                iscn: karyotype.into(),
                numerical: Vec::new(),
                structural: Vec::new(),
            },
        }
    }

    #[test]
    fn header_says_karyotype_once() {
        assert_eq!(header_line(&cell(false)), "14 objects   karyotype not determined: 14 objects found");
        assert_eq!(header_line(&cell(true)), "14 objects   karyotype 46,XX");
    }

    #[test]
    fn split_parts_are_dashed_and_unresolved_clusters_purple() {
        let frame = GrayImage::from_pixel(200, 100, image::Luma([230]));
        let image = annotated(&frame, &cell(false), &Thresholds::default());
        let header = image.height() - frame.height();
        let at = |x: u32, y: u32| *image.get_pixel(x, y + header);
        // an object found whole: two solid lines, nothing outside them
        assert!((20..50).all(|y| at(17, y) == GREEN && at(18, y) == GREEN && at(15, y) != GREEN));
        // a split part: one solid line and a dashed one two pixels outside it
        assert!((20..50).all(|y| at(57, y) == GREEN && at(58, y) != GREEN));
        let dashes = (20..50).filter(|&y| at(55, y) == GREEN).count();
        assert!(dashes > 10 && dashes < 25, "{dashes} of 30 pixels dashed");
        // the unresolved cluster: a purple box
        assert!((30..60).all(|y| at(97, y) == PURPLE));
    }
}
