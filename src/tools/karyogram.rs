//! A lab's karyograms read into labelled chromosome crops, from a box file beside the image
//! (YOLO `.txt`, Pascal VOC `.xml`) or from the image alone when its layout is one of:
//!
//! - **frames**: 24 rectangles, one per class;
//! - **underlines**: 24 horizontal lines, each class's chromosomes standing on its line;
//!
//! with the classes 1–22, X, Y in rows, left to right, top to bottom, chromosomes upright, on a
//! dark or a light background. What cannot be read with certainty is refused with the reason,
//! never labelled by guess: another number of frames or lines, chromosome lengths that do not
//! fall from 1 to 22 along the rows (a mirrored or rotated karyogram), a blob that does not
//! split into single chromosomes, more than 4 objects in a class, fewer than 40 or more than
//! 56 chromosomes in all.

use image::{GrayImage, Luma};
use imageproc::region_labelling::{connected_components, Connectivity};

use crate::pipeline::segment::{cut_object, BBox};

pub const CLASS_NAMES: [&str; 24] = [
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20",
    "21", "22", "X", "Y",
];

/// How an image's classes were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Frames,
    Underlines,
    Yolo,
    Voc,
}

/// One chromosome: its class (index into [`CLASS_NAMES`]), where it was, and its crop in the
/// image's own polarity with anything else in the box painted as background.
pub struct Crop {
    pub class: usize,
    pub bbox: BBox,
    pub image: GrayImage,
}

/// A labelled box from a box file: class index and pixel box `[x0, y0, x1, y1]`.
pub type LabelledBox = (usize, [f64; 4]);

/// The class a box file names: `1`…`22`, `X`, `Y`, optionally prefixed `chr`.
pub fn class_of_name(name: &str) -> Option<usize> {
    let name = name.trim();
    let bare = name.strip_prefix("chr").or_else(|| name.strip_prefix("Chr")).unwrap_or(name);
    CLASS_NAMES.iter().position(|c| c.eq_ignore_ascii_case(bare))
}

/// Crops from labelled boxes (clipped to the image; boxes with no area are refused).
pub fn crops_from_boxes(image: &GrayImage, boxes: &[LabelledBox]) -> Result<Vec<Crop>, String> {
    let (w, h) = image.dimensions();
    boxes
        .iter()
        .enumerate()
        .map(|(i, &(class, [x0, y0, x1, y1]))| {
            let (x0, y0) = (x0.max(0.0).floor() as u32, y0.max(0.0).floor() as u32);
            let (x1, y1) = ((x1.ceil() as u32).min(w), (y1.ceil() as u32).min(h));
            if x1 <= x0 || y1 <= y0 {
                return Err(format!("box {} has no area inside the {w}x{h} image", i + 1));
            }
            let bbox = BBox { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
            let image = image::imageops::crop_imm(image, x0, y0, x1 - x0, y1 - y0).to_image();
            Ok(Crop { class, bbox, image })
        })
        .collect()
}

/// Bounding box and pixel count of one labelled component, corners inclusive.
#[derive(Debug, Clone, Copy)]
struct Component {
    label: u32,
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
    area: usize,
}

impl Component {
    fn width(&self) -> u32 {
        self.x1 - self.x0 + 1
    }
    fn height(&self) -> u32 {
        self.y1 - self.y0 + 1
    }
}

type Labels = image::ImageBuffer<Luma<u32>, Vec<u32>>;

fn label(mask: &GrayImage) -> (Labels, Vec<Component>) {
    let labels = connected_components(mask, Connectivity::Eight, Luma([0u8]));
    let mut comps: Vec<Component> = Vec::new();
    for (x, y, &Luma([l])) in labels.enumerate_pixels().filter(|(_, _, p)| p[0] > 0) {
        let i = l as usize - 1;
        if i >= comps.len() {
            comps.resize(i + 1, Component { label: 0, x0: u32::MAX, y0: u32::MAX, x1: 0, y1: 0, area: 0 });
        }
        let c = &mut comps[i];
        (c.label, c.x0, c.y0, c.x1, c.y1, c.area) = (l, c.x0.min(x), c.y0.min(y), c.x1.max(x), c.y1.max(y), c.area + 1);
    }
    comps.retain(|c| c.area > 0);
    (labels, comps)
}

/// Grey levels at ranks (0..1) of the image's histogram.
fn ranks<const N: usize>(image: &GrayImage, quantiles: [f64; N]) -> [i32; N] {
    let mut histogram = [0usize; 256];
    image.pixels().for_each(|p| histogram[p[0] as usize] += 1);
    quantiles.map(|q| {
        let target = (image.len() as f64 * q) as usize;
        let mut seen = 0;
        (0..256i32)
            .find(|&v| {
                seen += histogram[v as usize];
                seen > target
            })
            .unwrap_or(255)
    })
}

/// Ink: chromosomes and lines bright, whatever the image's polarity (the background is the
/// median grey; the objects are on the side of it where the histogram's tail is longer); the
/// background's grey in the image; the ink thresholds for chromosomes and for frame lines,
/// above the background's noise (JPEG ringing, salt).
fn ink(image: &GrayImage) -> (GrayImage, u8, u8, u8) {
    let [p1, p50, p99] = ranks(image, [0.01, 0.5, 0.99]);
    let dark_objects = p50 - p1 > p99 - p50;
    let ink = GrayImage::from_fn(image.width(), image.height(), |x, y| {
        let v = image.get_pixel(x, y)[0];
        Luma([if dark_objects { 255 - v } else { v }])
    });
    // The background is most of the image: its level is the median, its noise the median
    // absolute deviation from it.
    let [q50] = ranks(&ink, [0.5]);
    let deviation = GrayImage::from_fn(ink.width(), ink.height(), |x, y| {
        Luma([(ink.get_pixel(x, y)[0] as i32 - q50).unsigned_abs() as u8])
    });
    let [mad] = ranks(&deviation, [0.5]);
    let t = (q50 + (6 * mad).max(24)).min(250);
    let line_t = q50 + ((t - q50) / 2).max(12);
    (ink, p50 as u8, t as u8, line_t as u8)
}

/// A frame's inside: background enclosed by the frame's outline, as large as a class's frame and
/// rectangular (its bounding box's edges are its own pixels nearly all along; the chromosomes in
/// it are holes away from the edges).
fn is_frame_inside(c: &Component, labels: &Labels) -> bool {
    let (w, h) = labels.dimensions();
    let min_side = (w.min(h) as f64 * 0.04).max(16.0);
    let touches_edge = c.x0 == 0 || c.y0 == 0 || c.x1 + 1 == w || c.y1 + 1 == h;
    if touches_edge || (c.width() as f64) < min_side || (c.height() as f64) < min_side {
        return false;
    }
    let mine = |x: u32, y: u32| labels.get_pixel(x, y)[0] == c.label;
    let share = |hits: usize, n: u32| hits as f64 / n as f64;
    let rows = [c.y0, c.y1].map(|y| share((c.x0..=c.x1).filter(|&x| mine(x, y)).count(), c.width()));
    let columns = [c.x0, c.x1].map(|x| share((c.y0..=c.y1).filter(|&y| mine(x, y)).count(), c.height()));
    rows.into_iter().chain(columns).all(|s| s >= 0.8)
}

fn is_underline(c: &Component, (w, h): (u32, u32)) -> bool {
    let (cw, ch) = (c.width() as f64, c.height() as f64);
    ch <= (h as f64 * 0.012).max(4.0)
        && cw >= (w as f64 * 0.03).max(12.0)
        && cw >= 6.0 * ch
        && c.area as f64 >= 0.8 * cw * ch
}

/// Indices of `items` (box centre y, centre x) in reading order: rows of centres within
/// `tolerance` of the row's first, top to bottom, each left to right.
fn reading_order(centres: &[(f64, f64)], tolerance: f64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..centres.len()).collect();
    order.sort_by(|&a, &b| centres[a].0.total_cmp(&centres[b].0));
    let mut rows: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match rows.last_mut() {
            Some(row) if (centres[i].0 - centres[row[0]].0).abs() <= tolerance => row.push(i),
            _ => rows.push(vec![i]),
        }
    }
    for row in &mut rows {
        row.sort_by(|&a, &b| centres[a].1.total_cmp(&centres[b].1));
    }
    rows
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Reads a karyogram from its image alone; `Err` is the reason it was refused.
pub fn read_karyogram(image: &GrayImage) -> Result<(Layout, Vec<Crop>), String> {
    let (ink, paper, t, line_t) = ink(image);
    let raw =
        GrayImage::from_fn(ink.width(), ink.height(), |x, y| Luma([if ink.get_pixel(x, y)[0] >= t { 255 } else { 0 }]));
    let (raw_labels, raw_comps) = label(&raw);
    let lines: Vec<Component> = raw_comps.iter().filter(|c| is_underline(c, image.dimensions())).copied().collect();
    let line_labels: Vec<u32> = lines.iter().map(|c| c.label).collect();
    let on_line = |x: u32, y: u32| {
        let l = raw_labels.get_pixel(x, y)[0];
        l > 0 && line_labels.contains(&l)
    };
    // Sister chromatids a pixel or two apart are one chromosome: gaps that small are closed
    // (with the underlines out, so that chromosomes standing on one stay apart).
    let mask = GrayImage::from_fn(ink.width(), ink.height(), |x, y| {
        Luma([if raw.get_pixel(x, y)[0] > 0 && !on_line(x, y) { 255 } else { 0 }])
    });
    let mask = imageproc::morphology::close(&mask, imageproc::distance_transform::Norm::LInf, 1);
    let (labels, comps) = label(&mask);
    // Frame outlines are faint and may touch their neighbours': found by what they enclose,
    // with a lower threshold so that a faint stretch of line still closes its frame.
    let background =
        GrayImage::from_fn(ink.width(), ink.height(), |x, y| Luma([u8::from(ink.get_pixel(x, y)[0] < line_t)]));
    let (inside_labels, insides) = label(&background);
    let frames: Vec<Component> = insides.into_iter().filter(|c| is_frame_inside(c, &inside_labels)).collect();
    let (layout, classes) = if frames.len() == 24 {
        (Layout::Frames, frames)
    } else if lines.len() == 24 {
        (Layout::Underlines, lines)
    } else {
        return Err(format!(
            "neither 24 class frames nor 24 underlines ({} frames, {} underlines found): not a karyogram layout this \
             reads; give a box file (YOLO .txt or VOC .xml) beside the image",
            frames.len(),
            lines.len()
        ));
    };
    let centres: Vec<(f64, f64)> =
        classes.iter().map(|c| ((c.y0 + c.y1) as f64 / 2.0, (c.x0 + c.x1) as f64 / 2.0)).collect();
    let tolerance = match layout {
        Layout::Frames => 0.5 * median(classes.iter().map(|c| c.height() as f64).collect()),
        _ => (image.height() as f64 * 0.02).max(6.0),
    };
    let rows = reading_order(&centres, tolerance);
    let mut class_of = vec![0usize; classes.len()];
    for (k, &i) in rows.iter().flatten().enumerate() {
        class_of[i] = k;
    }
    let objects = assign_objects(&labels, &comps, &classes, &class_of, layout);
    let objects = split_wide(objects, &ink, &labels)?;
    check(&objects, &rows, &class_of)?;

    let taken = |x: u32, y: u32| labels.get_pixel(x, y)[0] > 0 || on_line(x, y);
    let crops = objects
        .iter()
        .filter_map(|o| {
            let search = [o.x0, o.y0, o.x1, o.y1];
            let mine = |x: u32, y: u32| labels.get_pixel(x, y)[0] == o.label && x >= o.x0 && x <= o.x1;
            let object = cut_object(image, paper, search, mine, taken, None)?;
            Some(Crop { class: o.class, bbox: object.bbox, image: object.crop })
        })
        .collect();
    Ok((layout, crops))
}

/// An object of a class: a component, or the columns `x0..=x1` of one when a blob was split.
#[derive(Debug, Clone, Copy)]
struct ClassObject {
    class: usize,
    label: u32,
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
}

/// Each chromosome-sized component to its class: inside a frame's inside (not its label in the
/// bottom-left corner), or standing on an underline (not the label under one).
fn assign_objects(
    labels: &Labels,
    comps: &[Component],
    classes: &[Component],
    class_of: &[usize],
    layout: Layout,
) -> Vec<ClassObject> {
    let (w, h) = labels.dimensions();
    let min_area = ((w * h) as f64 * 0.00005).max(8.0) as usize;
    let candidates: Vec<&Component> = comps.iter().filter(|c| c.area >= min_area).collect();
    let mut out = Vec::new();
    for c in candidates {
        let (cx, cy) = ((c.x0 + c.x1) as f64 / 2.0, (c.y0 + c.y1) as f64 / 2.0);
        let home = match layout {
            Layout::Frames => classes.iter().position(|f| {
                let inside = c.x0 >= f.x0 && c.x1 <= f.x1 && c.y0 >= f.y0 && c.y1 <= f.y1;
                let corner = c.y0 as f64 >= f.y1 as f64 - 0.2 * f.height() as f64
                    && c.x1 as f64 <= f.x0 as f64 + 0.3 * f.width() as f64
                    && (c.height() as f64) <= 0.12 * f.height() as f64;
                inside && !corner
            }),
            _ => {
                let over = |l: &Component| {
                    cx >= l.x0 as f64 - 0.1 * l.width() as f64 && cx <= l.x1 as f64 + 0.1 * l.width() as f64
                };
                let label_gap = (h as f64 * 0.04).max(4.0);
                let is_label = classes.iter().any(|l| over(l) && c.y0 > l.y1 && ((c.y0 - l.y1) as f64) <= label_gap);
                let below = classes
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| over(l) && l.y0 + 1 >= c.y1 && cy < l.y0 as f64)
                    .min_by_key(|(_, l)| l.y0 - c.y1.min(l.y0));
                below.filter(|_| !is_label).map(|(i, _)| i)
            }
        };
        if let Some(i) = home {
            out.push(ClassObject { class: class_of[i], label: c.label, x0: c.x0, y0: c.y0, x1: c.x1, y1: c.y1 });
        }
    }
    // Specks: under a tenth of the median object.
    let areas: Vec<f64> = out.iter().map(|o| ((o.x1 - o.x0 + 1) * (o.y1 - o.y0 + 1)) as f64).collect();
    let typical = median(areas.clone());
    out.into_iter().zip(areas).filter(|(_, a)| *a >= 0.1 * typical).map(|(o, _)| o).collect()
}

/// Objects much wider than a chromosome (upright chromosomes are all about as wide) may be
/// homologs side by side: split at a clear valley of ink when both sides stand most of the
/// blob's height. Otherwise it stays whole when it is no thicker than one chromosome (a bent
/// one); a thicker blob (chromosomes fused side by side) refuses the image.
fn split_wide(objects: Vec<ClassObject>, ink: &GrayImage, labels: &Labels) -> Result<Vec<ClassObject>, String> {
    let width = median(objects.iter().map(|o| (o.x1 - o.x0 + 1) as f64).collect());
    let mut out = Vec::new();
    for o in objects {
        let blob_width = (o.x1 - o.x0 + 1) as f64;
        if blob_width <= 1.7 * width {
            out.push(o);
            continue;
        }
        let mine = |x: u32, y: u32| labels.get_pixel(x, y)[0] == o.label;
        let sums: Vec<f64> = (o.x0..=o.x1)
            .map(|x| (o.y0..=o.y1).filter(|&y| mine(x, y)).map(|y| ink.get_pixel(x, y)[0] as f64).sum())
            .collect();
        let mean = sums.iter().sum::<f64>() / sums.len() as f64;
        let (from, to) = (sums.len() / 4, 3 * sums.len() / 4);
        let (cut, low) =
            (from..=to).map(|i| (i, sums[i])).min_by(|a, b| a.1.total_cmp(&b.1)).expect("a wide object has columns");
        let cut = o.x0 + cut as u32;
        let span = |xs: std::ops::RangeInclusive<u32>| {
            let rows: Vec<u32> = (o.y0..=o.y1).filter(|&y| xs.clone().any(|x| mine(x, y))).collect();
            rows.last().zip(rows.first()).map_or(0, |(b, t)| b - t + 1) as f64
        };
        let height = (o.y1 - o.y0 + 1) as f64;
        let (left, right) = (o.x0..=cut.saturating_sub(1).max(o.x0), (cut + 1).min(o.x1)..=o.x1);
        if low <= 0.3 * mean && span(left.clone()) >= 0.6 * height && span(right.clone()) >= 0.6 * height {
            out.push(ClassObject { x1: *left.end(), ..o });
            out.push(ClassObject { x0: *right.start(), ..o });
        } else if 2.0 * f64::from(half_thickness(&o, labels)) <= 1.5 * width {
            out.push(o);
        } else {
            return Err(format!(
                "class {}: a blob {blob_width} px wide (chromosomes here are ~{width:.0} px) that does not split into \
                 single chromosomes",
                CLASS_NAMES[o.class]
            ));
        }
    }
    Ok(out)
}

/// The largest distance (chessboard) from a pixel of the object to the nearest pixel outside it.
fn half_thickness(o: &ClassObject, labels: &Labels) -> u8 {
    let (w, h) = (o.x1 - o.x0 + 3, o.y1 - o.y0 + 3);
    let outside = GrayImage::from_fn(w, h, |x, y| {
        let inside =
            x > 0 && y > 0 && x < w - 1 && y < h - 1 && labels.get_pixel(o.x0 + x - 1, o.y0 + y - 1)[0] == o.label;
        Luma([if inside { 0 } else { 255 }])
    });
    let distance =
        imageproc::distance_transform::distance_transform(&outside, imageproc::distance_transform::Norm::LInf);
    distance.pixels().map(|p| p[0]).max().unwrap_or(0)
}

/// Refuses what a karyogram read in the right order would not give.
fn check(objects: &[ClassObject], rows: &[Vec<usize>], class_of: &[usize]) -> Result<(), String> {
    let mut per_class = [0usize; 24];
    let mut length = [0f64; 24];
    for o in objects {
        per_class[o.class] += 1;
        length[o.class] = length[o.class].max((o.y1 - o.y0 + 1) as f64);
    }
    if let Some(c) = (0..24).find(|&c| per_class[c] > 4) {
        return Err(format!("class {}: {} objects (at most 4 expected)", CLASS_NAMES[c], per_class[c]));
    }
    if !(40..=56).contains(&objects.len()) {
        return Err(format!("{} chromosomes found (40 to 56 expected)", objects.len()));
    }
    // Kendall's tau of class order against length over the autosome pairs within each row:
    // positive when lengths fall left to right, as in a karyogram the right way round.
    let (mut agree, mut pairs) = (0f64, 0f64);
    for row in rows {
        let classes: Vec<usize> = row.iter().map(|&i| class_of[i]).filter(|&c| c < 22 && per_class[c] > 0).collect();
        for (k, &a) in classes.iter().enumerate() {
            for &b in &classes[k + 1..] {
                agree += (length[a] - length[b]).signum();
                pairs += 1.0;
            }
        }
    }
    let tau = agree / pairs.max(1.0);
    // And over all autosomes: 1 longer than 22 (a karyogram upside down fails here).
    let present: Vec<usize> = (0..22).filter(|&c| per_class[c] > 0).collect();
    let (mut overall, mut all_pairs) = (0f64, 0f64);
    for (k, &a) in present.iter().enumerate() {
        for &b in &present[k + 1..] {
            overall += (length[a] - length[b]).signum();
            all_pairs += 1.0;
        }
    }
    let overall = overall / all_pairs.max(1.0);
    if tau < 0.2 || overall < 0.3 {
        return Err(format!(
            "chromosome lengths do not fall from 1 to 22 (tau {overall:.2}; along the rows {tau:.2}): a mirrored, \
             rotated or unusual layout"
        ));
    }
    Ok(())
}

/// YOLO labels (`class cx cy w h` per line, relative to the image; classes 0–23 = 1–22, X, Y).
pub fn parse_yolo(text: &str, (w, h): (u32, u32)) -> Result<Vec<LabelledBox>, String> {
    let (w, h) = (w as f64, h as f64);
    let mut boxes = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let values: Option<Vec<f64>> = fields.iter().skip(1).map(|f| f.parse().ok()).collect();
        let class: Option<usize> = fields.first().and_then(|f| f.parse().ok()).filter(|&c| c < 24);
        match (class, values) {
            (Some(class), Some(v)) if v.len() == 4 && v.iter().all(|x| (0.0..=1.0).contains(x)) => {
                let (cx, cy, bw, bh) = (v[0] * w, v[1] * h, v[2] * w, v[3] * h);
                boxes.push((class, [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0]));
            }
            _ => return Err(format!("line {}: not `class cx cy w h` with class 0-23 and values in 0..1", n + 1)),
        }
    }
    Ok(boxes)
}

fn child<'a, 'input>(node: roxmltree::Node<'a, 'input>, name: &str) -> Option<roxmltree::Node<'a, 'input>> {
    node.children().find(|c| c.has_tag_name(name))
}

/// Pascal VOC boxes (`<object><name>` 1–22, X, Y or chr1… and `<bndbox>` in pixels).
pub fn parse_voc(text: &str) -> Result<Vec<LabelledBox>, String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("not XML: {e}"))?;
    let mut boxes = Vec::new();
    for (n, object) in doc.descendants().filter(|d| d.has_tag_name("object")).enumerate() {
        let name = child(object, "name").and_then(|c| c.text()).unwrap_or("");
        let class =
            class_of_name(name).ok_or_else(|| format!("object {}: class {name:?} is not 1-22, X or Y", n + 1))?;
        let bndbox = child(object, "bndbox").ok_or_else(|| format!("object {}: no <bndbox>", n + 1))?;
        let mut corners = [0f64; 4];
        for (value, tag) in corners.iter_mut().zip(["xmin", "ymin", "xmax", "ymax"]) {
            *value = child(bndbox, tag)
                .and_then(|c| c.text())
                .and_then(|t| t.trim().parse().ok())
                .ok_or_else(|| format!("object {}: <{tag}> missing or not a number", n + 1))?;
        }
        boxes.push((class, corners));
    }
    Ok(boxes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_files_name_classes_as_labs_write_them() {
        assert_eq!(class_of_name("chr21"), Some(20));
        assert_eq!(class_of_name(" x "), Some(22));
        assert_eq!(class_of_name("Chr Y"), None);
        assert_eq!(class_of_name("23"), None);
        let yolo = parse_yolo("0 0.5 0.5 0.2 0.4\n\n23 0.1 0.1 0.1 0.1\n", (100, 200)).unwrap();
        assert_eq!(yolo, vec![(0, [40.0, 60.0, 60.0, 140.0]), (23, [5.0, 10.0, 15.0, 30.0])]);
        let err = parse_yolo("0 0.5 0.5 0.2\n", (100, 200)).unwrap_err();
        assert!(err.starts_with("line 1: "), "{err}");
        let voc = "<annotation><object><name>X</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax>\
                   <ymax>40</ymax></bndbox></object></annotation>";
        assert_eq!(parse_voc(voc).unwrap(), vec![(22, [1.0, 2.0, 30.0, 40.0])]);
        let err = parse_voc(&voc.replace("<name>X</name>", "<name>Z</name>")).unwrap_err();
        assert!(err.contains("\"Z\" is not 1-22, X or Y"), "{err}");
        assert!(parse_voc(&voc.replace("<ymax>40</ymax>", "")).unwrap_err().contains("<ymax> missing"));
    }

    #[test]
    fn reading_order_is_rows_top_to_bottom_then_left_to_right() {
        let centres = [(52.0, 10.0), (10.0, 30.0), (12.0, 5.0), (50.0, 2.0)];
        assert_eq!(reading_order(&centres, 5.0), vec![vec![2, 1], vec![3, 0]]);
    }
}
