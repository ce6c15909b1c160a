//! `karyoscreen eval-frames`: whole frames through the device's pipeline, scored against
//! per-frame truth laid out like the `frames_*` sets: `DIR/frames.csv` (`image`, `ann`,
//! `group_id`, `split`, `count`, `karyotype`, `band`) and `DIR/ann/<stem>.json`
//! (`{"width", "height", "count", "karyotype"?, "instances": [{"polygon": [[x, y], …]} |
//! {"bbox": [x, y, w, h]}, "label"}], "labelmap"?: "labelmaps/<stem>.png"}`).
//!
//! Figures: count exact and within ±2, mean |count − truth|, karyotype exact (where the truth
//! has one; "karyotype not determined" counts as wrong), and instance precision / recall / F1
//! at IoU 0.5 (greedy one-to-one matching, highest IoU first) against whichever truth the frame
//! has: polygons (rasterised at pixel centres, each on its own, so crossing polygons share
//! their overlap) against each object's pixel mask; a label map (instances = 8-connected
//! components of one class, pixels valued 255 belonging to every class whose component
//! touches them, so touching homologs merge into one instance) against the masks; or boxes,
//! against each object's bounding box (box IoU).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::GrayImage;
use serde::{Deserialize, Serialize};

use crate::device::capture::load_frame;
use crate::integrity::input::{read_regular, read_text, MAX_FRAME_FILE};
use crate::pipeline::segment::BBox;
use crate::pipeline::{ObjectResult, Pipeline};

/// The IoU at which a found object matches a true one.
pub const MATCH_IOU: f64 = 0.5;
/// Label-map value of pixels where two chromosomes overlap.
pub const OVERLAP: u8 = 255;

#[derive(Debug, Deserialize)]
struct Row {
    image: String,
    ann: String,
    #[serde(default)]
    split: String,
    count: usize,
    #[serde(default)]
    karyotype: String,
}

#[derive(Debug, Deserialize)]
struct Annotation {
    #[serde(default)]
    karyotype: Option<String>,
    #[serde(default)]
    instances: Vec<Instance>,
    #[serde(default)]
    labelmap: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Instance {
    #[serde(default)]
    polygon: Option<Vec<[f64; 2]>>,
    #[serde(default)]
    bbox: Option<[f64; 4]>,
}

/// What instance truth a frame has, in the order it is preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TruthKind {
    Polygons,
    LabelMap,
    Boxes,
}

impl TruthKind {
    pub fn describe(self) -> &'static str {
        match self {
            TruthKind::Polygons => "polygons (mask IoU)",
            TruthKind::LabelMap => {
                "label maps (mask IoU; truth instances are components of one class, so touching homologs merge)"
            }
            TruthKind::Boxes => "boxes (box IoU against each object's bounding box)",
        }
    }
}

/// Pixels of one instance: a mask over its box, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub mask: Vec<bool>,
    pub area: usize,
}

impl Region {
    fn new(x: u32, y: u32, width: u32, height: u32, mask: Vec<bool>) -> Region {
        let area = mask.iter().filter(|&&m| m).count();
        Region { x, y, width, height, mask, area }
    }

    fn at(&self, x: u32, y: u32) -> bool {
        x >= self.x
            && y >= self.y
            && x < self.x + self.width
            && y < self.y + self.height
            && self.mask[((y - self.y) * self.width + x - self.x) as usize]
    }

    pub fn of_object(o: &ObjectResult) -> Region {
        let b = o.bbox;
        let mask = if o.mask.len() == (b.width * b.height) as usize {
            o.mask.clone()
        } else {
            vec![true; (b.width * b.height) as usize]
        };
        Region::new(b.x, b.y, b.width, b.height, mask)
    }
}

/// Intersection over union of two pixel masks.
pub fn mask_iou(a: &Region, b: &Region) -> f64 {
    let (x0, y0) = (a.x.max(b.x), a.y.max(b.y));
    let (x1, y1) = ((a.x + a.width).min(b.x + b.width), (a.y + a.height).min(b.y + b.height));
    let mut both = 0usize;
    for y in y0..y1 {
        for x in x0..x1 {
            both += (a.at(x, y) && b.at(x, y)) as usize;
        }
    }
    let union = a.area + b.area - both;
    if union == 0 {
        0.0
    } else {
        both as f64 / union as f64
    }
}

/// Intersection over union of two boxes `[x, y, w, h]`.
pub fn box_iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let w = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let h = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    let inter = w.max(0.0) * h.max(0.0);
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// The pixels of a `width × height` frame whose centre lies inside `polygon` (even-odd rule),
/// or `None` when none does.
pub fn rasterise(polygon: &[[f64; 2]], width: u32, height: u32) -> Option<Region> {
    if polygon.len() < 3 || width == 0 || height == 0 {
        return None;
    }
    let (mut lo, mut hi) = ([f64::MAX; 2], [f64::MIN; 2]);
    for p in polygon {
        for k in 0..2 {
            (lo[k], hi[k]) = (lo[k].min(p[k]), hi[k].max(p[k]));
        }
    }
    // pixels whose centre (x + 0.5) can lie inside
    let first = |v: f64, n: u32| (v - 0.5).ceil().clamp(0.0, n as f64) as u32;
    let (x0, x1) = (first(lo[0], width), first(hi[0], width));
    let (y0, y1) = (first(lo[1], height), first(hi[1], height));
    if x0 >= x1 || y0 >= y1 {
        return None;
    }
    let (w, h) = (x1 - x0, y1 - y0);
    let mut mask = vec![false; (w * h) as usize];
    let mut crossings = Vec::new();
    for row in 0..h {
        let cy = (y0 + row) as f64 + 0.5;
        crossings.clear();
        for (i, a) in polygon.iter().enumerate() {
            let b = polygon[(i + 1) % polygon.len()];
            if (a[1] <= cy) != (b[1] <= cy) {
                crossings.push(a[0] + (cy - a[1]) / (b[1] - a[1]) * (b[0] - a[0]));
            }
        }
        crossings.sort_by(f64::total_cmp);
        for pair in crossings.chunks_exact(2) {
            // centres x + 0.5 in [pair[0], pair[1])
            let from = first(pair[0], width).max(x0);
            let to = first(pair[1], width).min(x1);
            for x in from..to {
                mask[(row * w + x - x0) as usize] = true;
            }
        }
    }
    let region = Region::new(x0, y0, w, h, mask);
    (region.area > 0).then_some(region)
}

/// Instances of a label map: for every class value (1..=254), the 8-connected components of
/// that class's pixels together with the [`OVERLAP`] pixels, each holding at least one pixel of
/// the class. An overlap thus belongs to every class whose component touches it; two
/// same-class chromosomes that touch (or share an overlap) are one instance.
pub fn label_map_instances(map: &GrayImage) -> Vec<(u8, Region)> {
    let (w, h) = map.dimensions();
    let raw = map.as_raw();
    let mut present = [false; 256];
    raw.iter().for_each(|&v| present[v as usize] = true);
    let mut out = Vec::new();
    let mut seen = vec![false; raw.len()];
    let mut stack = Vec::new();
    let mut pixels = Vec::new();
    for class in (1..OVERLAP).filter(|&c| present[c as usize]) {
        seen.iter_mut().for_each(|s| *s = false);
        let member = |i: usize| raw[i] == class || raw[i] == OVERLAP;
        for start in 0..raw.len() {
            if raw[start] != class || seen[start] {
                continue;
            }
            seen[start] = true;
            stack.push(start);
            pixels.clear();
            while let Some(i) = stack.pop() {
                pixels.push(i);
                let (x, y) = ((i % w as usize) as i64, (i / w as usize) as i64);
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        let (nx, ny) = (x + dx, y + dy);
                        if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                            continue;
                        }
                        let j = ny as usize * w as usize + nx as usize;
                        if !seen[j] && member(j) {
                            seen[j] = true;
                            stack.push(j);
                        }
                    }
                }
            }
            let xs = pixels.iter().map(|&i| (i % w as usize) as u32);
            let (x0, x1) = xs.clone().fold((u32::MAX, 0), |(a, b), x| (a.min(x), b.max(x)));
            let ys = pixels.iter().map(|&i| (i / w as usize) as u32);
            let (y0, y1) = ys.fold((u32::MAX, 0), |(a, b), y| (a.min(y), b.max(y)));
            let (rw, rh) = (x1 - x0 + 1, y1 - y0 + 1);
            let mut mask = vec![false; (rw * rh) as usize];
            for &i in &pixels {
                let (x, y) = ((i % w as usize) as u32, (i / w as usize) as u32);
                mask[((y - y0) * rw + x - x0) as usize] = true;
            }
            out.push((class, Region::new(x0, y0, rw, rh, mask)));
        }
    }
    out
}

/// Greedy one-to-one matching on an IoU table (`iou[t][p]`, truth by found): pairs taken
/// highest IoU first, each side used once, only pairs at or above `threshold`. Returns the
/// matched pairs `(truth, found)`.
pub fn greedy_match(iou: &[Vec<f64>], threshold: f64) -> Vec<(usize, usize)> {
    let mut pairs: Vec<(f64, usize, usize)> = iou
        .iter()
        .enumerate()
        .flat_map(|(t, row)| row.iter().enumerate().map(move |(p, &v)| (v, t, p)))
        .filter(|&(v, _, _)| v >= threshold)
        .collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    let found = iou.first().map_or(0, Vec::len);
    let (mut truth_used, mut found_used) = (vec![false; iou.len()], vec![false; found]);
    let mut matched = Vec::new();
    for (_, t, p) in pairs {
        if !truth_used[t] && !found_used[p] {
            (truth_used[t], found_used[p]) = (true, true);
            matched.push((t, p));
        }
    }
    matched
}

/// ISCN string for comparison: no white space, case folded.
pub fn normalise_iscn(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

/// The instance truth of one frame.
enum Truth {
    Masks(TruthKind, Vec<Region>),
    Boxes(Vec<[f64; 4]>),
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameRow {
    pub image: String,
    pub truth_count: usize,
    pub found: usize,
    /// Which segmenter cut the frame.
    pub segmenter: crate::pipeline::SegmentedBy,
    pub abs_error: usize,
    pub determined: bool,
    pub karyotype: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truth_karyotype: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub karyotype_exact: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_truth: Option<TruthKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tp: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fp: Option<usize>,
    #[serde(rename = "fn", skip_serializing_if = "Option::is_none")]
    pub fn_: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceFigures {
    pub truth: TruthKind,
    pub note: &'static str,
    pub iou: f64,
    pub frames: usize,
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KaryotypeFigures {
    /// Frames whose truth has a karyotype.
    pub frames: usize,
    pub exact: usize,
    pub exact_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FramesReport {
    pub data: String,
    pub split: Option<String>,
    pub min_count: Option<usize>,
    pub model: String,
    pub segmenter: String,
    /// The learned segmenter's core logit on fluorescent frames, where it was not the card's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_logit: Option<f32>,
    pub frames: usize,
    pub count_exact_pct: f64,
    pub count_within_2_pct: f64,
    pub mean_abs_count_error: f64,
    /// `None`: no frame's truth has a karyotype.
    pub karyotype: Option<KaryotypeFigures>,
    /// One entry per kind of instance truth met; empty when no frame has any.
    pub instances: Vec<InstanceFigures>,
    pub rows: Vec<FrameRow>,
}

/// Which frames of the set are evaluated.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub split: Option<String>,
    /// Only frames whose true count is at least this.
    pub min_count: Option<usize>,
}

pub fn evaluate_frames(pipeline: &Pipeline, dir: &Path, selection: &Selection) -> Result<FramesReport> {
    let table = dir.join("frames.csv");
    let text = read_text(&table, "frames table")?;
    let mut rows = Vec::new();
    for (i, record) in csv::Reader::from_reader(text.as_bytes()).deserialize::<Row>().enumerate() {
        let row = record.with_context(|| format!("{}: row {}: not a frames table row", table.display(), i + 2))?;
        if selection.split.as_ref().is_none_or(|s| *s == row.split)
            && selection.min_count.is_none_or(|n| row.count >= n)
        {
            rows.push(row);
        }
    }
    if rows.is_empty() {
        bail!(
            "{}: no frames{}{}",
            table.display(),
            selection.split.as_ref().map(|s| format!(" in split {s:?}")).unwrap_or_default(),
            selection.min_count.map(|n| format!(" with count >= {n}")).unwrap_or_default()
        );
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut per_kind: BTreeMap<TruthKind, (usize, usize, usize, usize)> = BTreeMap::new();
    for row in &rows {
        let image_path = dir.join(&row.image);
        let ann_path = dir.join(&row.ann);
        let ann: Annotation = serde_json::from_str(&read_text(&ann_path, "frame annotation")?)
            .with_context(|| format!("{}: not a frame annotation", ann_path.display()))?;
        let frame = load_frame(&image_path)?;
        let (w, h) = frame.image.dimensions();
        let truth = instance_truth(dir, &ann, &ann_path, w, h)?;
        let result =
            pipeline.analyse(&frame.image).with_context(|| format!("{}: analysis failed", image_path.display()))?;
        let truth_karyotype = Some(row.karyotype.trim().to_string())
            .filter(|k| !k.is_empty())
            .or_else(|| ann.karyotype.clone().filter(|k| !k.trim().is_empty()));
        let karyotype_exact = truth_karyotype
            .as_ref()
            .map(|t| result.karyotype_determined && normalise_iscn(t) == normalise_iscn(&result.karyotype));
        let (kind, counts) = match &truth {
            Some(truth) => {
                let (kind, iou): (TruthKind, Vec<Vec<f64>>) = match truth {
                    Truth::Masks(kind, regions) => {
                        let found: Vec<Region> = result.objects.iter().map(Region::of_object).collect();
                        (*kind, regions.iter().map(|t| found.iter().map(|f| mask_iou(t, f)).collect()).collect())
                    }
                    Truth::Boxes(boxes) => {
                        let found: Vec<[f64; 4]> = result.objects.iter().map(|o| bbox_f(o.bbox)).collect();
                        (
                            TruthKind::Boxes,
                            boxes.iter().map(|&t| found.iter().map(|&f| box_iou(t, f)).collect()).collect(),
                        )
                    }
                };
                let tp = greedy_match(&iou, MATCH_IOU).len();
                let (fp, fn_) = (result.objects.len() - tp, iou.len() - tp);
                let entry = per_kind.entry(kind).or_default();
                (entry.0, entry.1, entry.2, entry.3) = (entry.0 + 1, entry.1 + tp, entry.2 + fp, entry.3 + fn_);
                (Some(kind), Some((tp, fp, fn_)))
            }
            None => (None, None),
        };
        out.push(FrameRow {
            image: row.image.clone(),
            truth_count: row.count,
            found: result.count,
            segmenter: result.segmenter,
            abs_error: result.count.abs_diff(row.count),
            determined: result.karyotype_determined,
            karyotype: result.karyotype.clone(),
            truth_karyotype,
            karyotype_exact,
            instance_truth: kind,
            tp: counts.map(|c| c.0),
            fp: counts.map(|c| c.1),
            fn_: counts.map(|c| c.2),
        });
    }
    let n = out.len() as f64;
    let pct = |k: usize, of: usize| if of == 0 { 0.0 } else { 100.0 * k as f64 / of as f64 };
    let with_karyotype: Vec<bool> = out.iter().filter_map(|r| r.karyotype_exact).collect();
    let karyotype = (!with_karyotype.is_empty()).then(|| {
        let exact = with_karyotype.iter().filter(|&&e| e).count();
        KaryotypeFigures { frames: with_karyotype.len(), exact, exact_pct: pct(exact, with_karyotype.len()) }
    });
    let instances = per_kind
        .into_iter()
        .map(|(truth, (frames, tp, fp, fn_))| {
            let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
            let (precision, recall) = (ratio(tp, tp + fp), ratio(tp, tp + fn_));
            let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
            InstanceFigures {
                truth,
                note: truth.describe(),
                iou: MATCH_IOU,
                frames,
                tp,
                fp,
                fn_,
                precision,
                recall,
                f1,
            }
        })
        .collect();
    Ok(FramesReport {
        data: dir.display().to_string(),
        split: selection.split.clone(),
        min_count: selection.min_count,
        model: format!("{} ({})", pipeline.model.card.name, pipeline.model.origin),
        segmenter: pipeline.segmenting.describe(),
        core_logit: None,
        frames: out.len(),
        count_exact_pct: pct(out.iter().filter(|r| r.abs_error == 0).count(), out.len()),
        count_within_2_pct: pct(out.iter().filter(|r| r.abs_error <= 2).count(), out.len()),
        mean_abs_count_error: out.iter().map(|r| r.abs_error as f64).sum::<f64>() / n,
        karyotype,
        instances,
        rows: out,
    })
}

fn bbox_f(b: BBox) -> [f64; 4] {
    [b.x as f64, b.y as f64, b.width as f64, b.height as f64]
}

/// The frame's instance truth: polygons if any instance has one, else its label map, else
/// boxes; `None` when it has none of them.
fn instance_truth(dir: &Path, ann: &Annotation, ann_path: &Path, w: u32, h: u32) -> Result<Option<Truth>> {
    let bad = |i: usize, what: &str| anyhow::anyhow!("{}: instance {i}: {what}", ann_path.display());
    if ann.instances.iter().any(|i| i.polygon.is_some()) {
        let mut regions = Vec::new();
        for (i, instance) in ann.instances.iter().enumerate() {
            let polygon = instance.polygon.as_ref().ok_or_else(|| bad(i, "has no polygon (others have)"))?;
            if polygon.len() < 3 {
                return Err(bad(i, "a polygon needs at least 3 points"));
            }
            // a polygon wholly outside the frame, or too thin to cover a pixel centre, is a
            // true chromosome no object can match
            let empty = Region::new(0, 0, 0, 0, Vec::new());
            regions.push(rasterise(polygon, w, h).unwrap_or(empty));
        }
        return Ok(Some(Truth::Masks(TruthKind::Polygons, regions)));
    }
    if let Some(name) = &ann.labelmap {
        let path: PathBuf = dir.join(name);
        let bytes = read_regular(&path, MAX_FRAME_FILE, "label map")?;
        let map = image::load_from_memory(&bytes)
            .with_context(|| format!("{}: not a readable label map image", path.display()))?;
        let image::DynamicImage::ImageLuma8(map) = map else {
            bail!("{}: a label map must be an 8-bit grayscale image", path.display());
        };
        if map.dimensions() != (w, h) {
            bail!("{}: label map is {}×{}, the frame {w}×{h}", path.display(), map.width(), map.height());
        }
        let regions = label_map_instances(&map).into_iter().map(|(_, r)| r).collect();
        return Ok(Some(Truth::Masks(TruthKind::LabelMap, regions)));
    }
    if ann.instances.is_empty() {
        return Ok(None);
    }
    let mut boxes = Vec::new();
    for (i, instance) in ann.instances.iter().enumerate() {
        let b = instance.bbox.ok_or_else(|| bad(i, "has neither a polygon nor a bbox"))?;
        if b[2] < 0.0 || b[3] < 0.0 {
            return Err(bad(i, "a bbox has a negative size"));
        }
        boxes.push(b);
    }
    Ok(Some(Truth::Boxes(boxes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rectangles_rasterise_to_their_pixels() {
        // [2, 6) × [1, 4): pixel centres 2.5..5.5 and 1.5..3.5
        let r = rasterise(&[[2.0, 1.0], [6.0, 1.0], [6.0, 4.0], [2.0, 4.0]], 10, 10).unwrap();
        assert_eq!((r.x, r.y, r.width, r.height, r.area), (2, 1, 4, 3, 12));
        // clipped at the frame's edge
        let r = rasterise(&[[-5.0, -5.0], [3.0, -5.0], [3.0, 2.0], [-5.0, 2.0]], 10, 10).unwrap();
        assert_eq!((r.x, r.y, r.width, r.height, r.area), (0, 0, 3, 2, 6));
        assert!(rasterise(&[[20.0, 20.0], [30.0, 20.0], [30.0, 30.0]], 10, 10).is_none());
        assert!(rasterise(&[[1.0, 1.0], [2.0, 2.0]], 10, 10).is_none());
    }

    #[test]
    fn a_triangle_and_a_concave_polygon_fill_by_pixel_centre() {
        // right triangle with legs 10: centres under the diagonal x + y < 10
        let r = rasterise(&[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], 20, 20).unwrap();
        let inside = (0..10u32).flat_map(|y| (0..10u32).map(move |x| (x, y))).filter(|&(x, y)| x + y + 1 < 10);
        assert_eq!(r.area, inside.count());
        assert!(r.at(0, 0) && r.at(8, 0) && !r.at(9, 0) && !r.at(5, 5));
        // a U: the notch between the arms stays empty
        let u = [[0.0, 0.0], [3.0, 0.0], [3.0, 6.0], [6.0, 6.0], [6.0, 0.0], [9.0, 0.0], [9.0, 9.0], [0.0, 9.0]];
        let r = rasterise(&u, 20, 20).unwrap();
        assert_eq!(r.area, 81 - 18);
        assert!(r.at(1, 1) && !r.at(4, 1) && r.at(7, 1) && r.at(4, 7));
    }

    #[test]
    fn crossing_polygons_share_their_overlap() {
        let a = rasterise(&[[0.0, 4.0], [10.0, 4.0], [10.0, 6.0], [0.0, 6.0]], 10, 10).unwrap();
        let b = rasterise(&[[4.0, 0.0], [6.0, 0.0], [6.0, 10.0], [4.0, 10.0]], 10, 10).unwrap();
        assert_eq!((a.area, b.area), (20, 20));
        assert!(a.at(5, 5) && b.at(5, 5));
        assert!((mask_iou(&a, &b) - 4.0 / 36.0).abs() < 1e-12);
        assert_eq!(mask_iou(&a, &a), 1.0);
    }

    #[test]
    fn label_map_components_take_overlap_pixels_into_every_class_touching_them() {
        // class 3 horizontal, class 7 vertical, crossing at 255; a second, separate class-3
        // object; a lone 255 speck touching nothing; two class-5 objects touching (one instance)
        let mut map = GrayImage::new(20, 12);
        for x in 0..9 {
            map.put_pixel(x, 4, image::Luma([3]));
        }
        for y in 0..9 {
            map.put_pixel(4, y, image::Luma([7]));
        }
        map.put_pixel(4, 4, image::Luma([OVERLAP]));
        for x in 12..16 {
            map.put_pixel(x, 1, image::Luma([3]));
        }
        map.put_pixel(18, 10, image::Luma([OVERLAP]));
        for y in 6..11 {
            map.put_pixel(12, y, image::Luma([5]));
            map.put_pixel(13, y, image::Luma([5]));
        }
        let instances = label_map_instances(&map);
        let summary: Vec<(u8, usize)> = instances.iter().map(|(c, r)| (*c, r.area)).collect();
        assert_eq!(summary, vec![(3, 4), (3, 9), (5, 10), (7, 9)]);
        // the crossing class-3 chromosome is one instance through the overlap
        let (_, three) = &instances[1];
        assert!(three.at(0, 4) && three.at(4, 4) && three.at(8, 4));
        let (_, seven) = &instances[3];
        assert!(seven.at(4, 0) && seven.at(4, 4) && seven.at(4, 8));
    }

    #[test]
    fn matching_is_one_to_one_highest_iou_first() {
        // found 0 overlaps truth 0 and 1; truth 0 is its better match, truth 1 then takes found 1
        let iou = vec![vec![0.9, 0.0, 0.0], vec![0.6, 0.55, 0.0], vec![0.0, 0.0, 0.49]];
        assert_eq!(greedy_match(&iou, MATCH_IOU), vec![(0, 0), (1, 1)]);
        // one found object cannot match two true ones
        assert_eq!(greedy_match(&[vec![0.8], vec![0.7]], MATCH_IOU), vec![(0, 0)]);
        assert!(greedy_match(&[], MATCH_IOU).is_empty());
        assert!((box_iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 10.0, 10.0]) - 50.0 / 150.0).abs() < 1e-12);
        assert_eq!(box_iou([0.0, 0.0, 1.0, 1.0], [3.0, 3.0, 1.0, 1.0]), 0.0);
    }

    #[test]
    fn karyotypes_compare_without_space_or_case() {
        assert_eq!(normalise_iscn(" 47,XX, +18"), normalise_iscn("47,xx,+18"));
        assert_ne!(normalise_iscn("46,XX"), normalise_iscn("46,XY"));
    }
}
