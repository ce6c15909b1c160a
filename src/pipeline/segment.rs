//! Finding the chromosomes in a metaphase frame: polarity, background map, hysteresis
//! threshold (Otsu seeds) and 8-connected components; debris and nuclei set aside; touching
//! chromosomes split at their neck (`split`); each object is cut out at native scale, with every other object's
//! pixels painted over with background, so the crop looks like a training crop.

use image::{GrayImage, Luma};
use serde::{Deserialize, Serialize};

pub mod instances;
mod label;
#[cfg(feature = "inference")]
pub mod learned;
#[cfg(feature = "inference")]
mod set_aside;
mod split;

use crate::pipeline::preprocess::{border_median, detect_polarity, otsu_from_histogram, Polarity};
use label::{in_bands, Component, LabelMap};

/// Half-width of the largest gap inside one chromosome that the mask bridges.
const GAP_CLOSE: u8 = 3;

/// Components above this multiple of the median area may be touching chromosomes: on the
/// training sets, 99.9 % of single chromosomes stay under 2.5× their cell's median area.
const SPLIT_AREA: f64 = 2.5;

/// Pixels of background kept around each object's box.
const CROP_PAD: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone)]
pub struct Object {
    pub bbox: BBox,
    pub area: usize,
    /// The object alone on the frame's background, in the frame's polarity.
    pub crop: GrayImage,
    /// The object's own pixels: `bbox.width × bbox.height`, row-major in box coordinates.
    pub mask: Vec<bool>,
    /// For a part of a blob that was split (touching chromosomes): the blob's number in this
    /// frame (parts of one blob share it). `None` for an object found whole.
    pub split_from: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Segmentation {
    pub polarity: Polarity,
    pub objects: Vec<Object>,
    /// Components too small to be a chromosome (debris, noise).
    pub debris: usize,
    /// Large round blobs: interphase nuclei, left out.
    pub nuclei: usize,
    /// Large irregular blobs (overlapping chromosomes, clusters that would not split): not
    /// guessed at. Touching chromosomes joined by a narrow neck are split and kept.
    pub unresolved: usize,
    /// The bounding boxes of those unresolved blobs, in the order they were found.
    pub unresolved_boxes: Vec<BBox>,
}

#[derive(Debug, Clone)]
pub struct SegmentParams {
    pub polarity_threshold: u8,
    /// Components smaller than this many pixels are debris.
    pub min_area: usize,
    /// Threads for the per-pixel steps (row bands); the result does not depend on it.
    pub threads: usize,
}

impl Default for SegmentParams {
    fn default() -> Self {
        SegmentParams { polarity_threshold: 128, min_area: 40, threads: 1 }
    }
}

pub fn segment(frame: &GrayImage, params: &SegmentParams) -> Segmentation {
    let polarity = detect_polarity(frame, params.polarity_threshold);
    let (w, h) = frame.dimensions();
    let background_gray = border_median(w as usize, h as usize, frame.as_raw());
    let (above, histogram) = above_background(frame, polarity, params.threads);
    let empty = Segmentation {
        polarity,
        objects: Vec::new(),
        debris: 0,
        nuclei: 0,
        unresolved: 0,
        unresolved_boxes: Vec::new(),
    };
    let Some(high) = otsu_from_histogram(&histogram) else { return empty };
    // Hysteresis: objects are what rises above a low threshold (pale bands, dull
    // heterochromatin stay attached) and reaches the Otsu threshold somewhere. The mask is
    // closed over gaps of up to GAP_CLOSE pixels: a chromosome cut by a pale or dull band stays one.
    let low = (high / 3).max(noise_floor(&above, w as usize, h as usize)).min(high);
    let (labels, components) = label::label(&above, w, low, GAP_CLOSE, params.threads);
    let seeded: Vec<(usize, &Component)> = components
        .iter()
        .enumerate()
        .filter_map(|(label, c)| c.as_ref().map(|c| (label, c)))
        .filter(|(_, c)| c.peak > high)
        .collect();

    let areas: Vec<f64> =
        seeded.iter().filter(|(_, c)| c.area >= params.min_area).map(|(_, c)| c.area as f64).collect();
    let typical = crate::pipeline::preprocess::median(&areas);
    let mut result = empty;
    let mut blobs_split = 0;
    for (label, c) in seeded {
        if c.area < params.min_area || (c.area as f64) < 0.12 * typical {
            result.debris += 1;
            continue;
        }
        let large = c.area as f64 > 5.0 * typical;
        // A large, round, filled blob is an interphase nucleus.
        if large && c.fill() > 0.6 && c.aspect() < 1.6 {
            result.nuclei += 1;
            continue;
        }
        let (bw, bh) = (c.x1 - c.x0 + 1, c.y1 - c.y0 + 1);
        let min_part = params.min_area.max((0.2 * typical) as usize);
        // Only what is larger than any one chromosome is looked at for a split: real
        // chromosomes have waists as deep as a touching pair's neck. What is larger than
        // MAX_PARTS chromosome-sized parts cannot split into a plausible group (below), so it
        // is not tried: a huge blob (a comb, a smear) would cost seconds for nothing.
        let area = c.area as f64;
        let splittable = area > SPLIT_AREA * typical && area < f64::from(split::MAX_PARTS) * SPLIT_AREA * typical;
        let parts = splittable
            .then(|| split::split(&component_mask(&labels, label as u32, c), bw as usize, bh as usize, min_part))
            .flatten();
        if large {
            // A cluster is kept only when it splits into chromosome-sized parts, and
            // otherwise reported, not guessed at.
            let plausible = parts.as_ref().is_some_and(|parts| {
                (1..=*parts.iter().max().unwrap_or(&0))
                    .all(|p| (parts.iter().filter(|&&q| q == p).count() as f64) < 2.5 * typical)
            });
            if !plausible {
                result.unresolved += 1;
                result.unresolved_boxes.push(BBox { x: c.x0, y: c.y0, width: bw, height: bh });
                continue;
            }
        }
        let split_from = parts.is_some().then_some(blobs_split);
        blobs_split += parts.is_some() as usize;
        let owner = |x: u32, y: u32, part: u8| {
            labels.at(x, y) == label as u32
                && parts.as_ref().is_none_or(|p| p[((y - c.y0) * bw + x - c.x0) as usize] == part)
        };
        for part in 1..=parts.as_ref().map_or(1, |p| *p.iter().max().unwrap_or(&1)) {
            // Every other object's pixels (and the other parts of this one) become background.
            let mine = |x: u32, y: u32| owner(x, y, part);
            let taken = |x: u32, y: u32| labels.at(x, y) != 0;
            let search = [c.x0, c.y0, c.x1, c.y1];
            result.objects.extend(cut_object(frame, background_gray, search, mine, taken, split_from));
        }
    }
    result
}

/// The object whose pixels are those of `search` (`[x0, y0, x1, y1]`, inclusive) where `mine`
/// holds: its box, area and mask, and its crop (the box plus `CROP_PAD` on the frame) with every
/// pixel that `taken` marks but `mine` does not (other objects) painted `background`. `None`
/// when `mine` holds nowhere in `search`.
pub(crate) fn cut_object(
    frame: &GrayImage,
    background: u8,
    search: [u32; 4],
    mine: impl Fn(u32, u32) -> bool,
    taken: impl Fn(u32, u32) -> bool,
    split_from: Option<usize>,
) -> Option<Object> {
    let (w, h) = frame.dimensions();
    let (mut x0, mut y0, mut x1, mut y1, mut area) = (u32::MAX, u32::MAX, 0, 0, 0);
    for y in search[1]..=search[3] {
        for x in search[0]..=search[2] {
            if mine(x, y) {
                (x0, y0, x1, y1, area) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y), area + 1);
            }
        }
    }
    if area == 0 {
        return None;
    }
    let (cx0, cy0) = (x0.saturating_sub(CROP_PAD), y0.saturating_sub(CROP_PAD));
    let (cx1, cy1) = ((x1 + CROP_PAD).min(w - 1), (y1 + CROP_PAD).min(h - 1));
    let crop = GrayImage::from_fn(cx1 - cx0 + 1, cy1 - cy0 + 1, |x, y| {
        let (fx, fy) = (cx0 + x, cy0 + y);
        if taken(fx, fy) && !mine(fx, fy) {
            Luma([background])
        } else {
            *frame.get_pixel(fx, fy)
        }
    });
    let mask = (y0..=y1).flat_map(|y| (x0..=x1).map(move |x| (x, y))).map(|(x, y)| mine(x, y)).collect();
    Some(Object { bbox: BBox { x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1 }, area, crop, mask, split_from })
}

/// The component's pixels within its bounding box, row-major.
fn component_mask(labels: &LabelMap, label: u32, c: &Component) -> Vec<bool> {
    (c.y0..=c.y1).flat_map(|y| (c.x0..=c.x1).map(move |x| labels.at(x, y) == label)).collect()
}

/// The ink (chromosomes bright, whatever the polarity) above its slowly varying background
/// level (uneven illumination): a low quantile per tile, which chromosomes covering part of a
/// tile do not lift, interpolated per pixel. Also the histogram of the result, for Otsu.
fn above_background(frame: &GrayImage, polarity: Polarity, threads: usize) -> (Vec<u8>, [u64; 256]) {
    const TILE: usize = 64;
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let (tx, ty) = (w.div_ceil(TILE), h.div_ceil(TILE));
    let raw = frame.as_raw();
    let flip = if polarity == Polarity::DarkOnLight { 0xFF } else { 0 };
    // The lower quartile (the value at index n/4 of the sorted tile) from a histogram per tile,
    // rows of tiles in bands.
    let level: Vec<u32> = in_bands(ty as u32, threads, |j0, j1| {
        let mut level = Vec::with_capacity((j1 - j0) as usize * tx);
        for j in j0 as usize..j1 as usize {
            let rows = j * TILE..((j + 1) * TILE).min(h);
            let mut histograms = vec![[0u32; 256]; tx];
            for y in rows.clone() {
                for (x, &v) in raw[y * w..(y + 1) * w].iter().enumerate() {
                    histograms[x / TILE][(v ^ flip) as usize] += 1;
                }
            }
            for (i, histogram) in histograms.iter().enumerate() {
                let quartile = rows.len() * (((i + 1) * TILE).min(w) - i * TILE) / 4;
                let mut seen = 0;
                let value = histogram.iter().position(|&c| {
                    seen += c as usize;
                    seen > quartile
                });
                level.push(value.unwrap_or(255) as u32);
            }
        }
        level
    })
    .concat();
    // Bilinear between tile centres, clamped at the edges: first down the column of tiles for
    // the row, then across. Tile centres sit at 64·i + 31.5, so a pixel's weights are odd
    // multiples of 1/128 and the whole interpolation is exact in integers (scaled by 128²).
    let at =
        |i: isize, j: isize| level[j.clamp(0, ty as isize - 1) as usize * tx + i.clamp(0, tx as isize - 1) as usize];
    let cell = |p: usize| {
        let t = 2 * p as isize - (TILE as isize - 1);
        let i = t.div_euclid(2 * TILE as isize);
        (i, (t - 2 * TILE as isize * i) as u32)
    };
    const ONE: u32 = 2 * TILE as u32;
    let columns: Vec<(usize, u32)> = (0..w).map(cell).map(|(i, f)| ((i + 1) as usize, f)).collect();
    let bands = in_bands(h as u32, threads, |y0, y1| {
        let mut above = vec![0u8; (y1 - y0) as usize * w];
        let mut row = vec![0u32; tx + 2];
        for (y, out) in (y0 as usize..y1 as usize).zip(above.chunks_exact_mut(w)) {
            let (j, fy) = cell(y);
            for (k, level) in row.iter_mut().enumerate() {
                let i = k as isize - 1;
                *level = at(i, j) * (ONE - fy) + at(i, j + 1) * fy;
            }
            for ((&(i, fx), &v), out) in columns.iter().zip(&raw[y * w..(y + 1) * w]).zip(out) {
                let background = (row[i] * (ONE - fx) + row[i + 1] * fx + ONE * ONE / 2) / (ONE * ONE);
                *out = (v ^ flip).saturating_sub(background as u8);
            }
        }
        let histogram = histogram(&above);
        (above, histogram)
    });
    let mut histogram = [0u64; 256];
    for (_, band) in &bands {
        histogram.iter_mut().zip(band).for_each(|(total, n)| *total += n);
    }
    let mut above = Vec::with_capacity(w * h);
    bands.iter().for_each(|(band, _)| above.extend_from_slice(band));
    (above, histogram)
}

/// Histogram of `values`, counted in four interleaved lanes: runs of one value (background)
/// would otherwise chain every increment on the one before.
fn histogram(values: &[u8]) -> [u64; 256] {
    let mut lanes = [[0u32; 256]; 4];
    let mut quads = values.chunks_exact(4);
    for quad in &mut quads {
        for (lane, &v) in lanes.iter_mut().zip(quad) {
            lane[v as usize] += 1;
        }
    }
    for &v in quads.remainder() {
        lanes[0][v as usize] += 1;
    }
    std::array::from_fn(|v| lanes.iter().map(|lane| lane[v] as u64).sum())
}

/// A level that background noise rarely reaches: 4 robust standard deviations (median
/// absolute deviation) of the frame border, which holds little but background.
fn noise_floor(above: &[u8], w: usize, h: usize) -> u8 {
    let mut border: Vec<u8> = Vec::with_capacity(2 * (w + h));
    for x in 0..w {
        border.push(above[x]);
        border.push(above[(h - 1) * w + x]);
    }
    for y in 0..h {
        border.push(above[y * w]);
        border.push(above[y * w + w - 1]);
    }
    border.sort_unstable();
    let median = border[border.len() / 2] as i32;
    let mut deviation: Vec<i32> = border.iter().map(|&v| (v as i32 - median).abs()).collect();
    deviation.sort_unstable();
    let sigma = 1.4826 * deviation[deviation.len() / 2] as f64;
    (median as f64 + 4.0 * sigma.max(1.0)).round().min(255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, RngExt, SeedableRng};

    #[test]
    fn background_map_does_not_depend_on_bands() {
        let mut rng = SmallRng::seed_from_u64(7);
        let noise = GrayImage::from_fn(300, 211, |_, _| Luma([rng.random()]));
        for polarity in [Polarity::DarkOnLight, Polarity::LightOnDark] {
            let whole = above_background(&noise, polarity, 1);
            assert_eq!(whole.1.iter().sum::<u64>(), 300 * 211);
            for threads in [2, 3, 7] {
                assert_eq!(above_background(&noise, polarity, threads), whole, "{threads} bands");
            }
        }
    }

    #[test]
    fn finds_separate_objects_and_drops_specks() {
        let mut frame = GrayImage::from_pixel(200, 120, Luma([230]));
        for (x0, y0) in [(20u32, 20u32), (100, 30), (150, 60)] {
            for y in y0..y0 + 40 {
                for x in x0..x0 + 8 {
                    frame.put_pixel(x, y, Luma([60]));
                }
            }
        }
        frame.put_pixel(5, 100, Luma([40]));
        let seg = segment(&frame, &SegmentParams::default());
        assert_eq!(seg.polarity, Polarity::DarkOnLight);
        assert_eq!(seg.objects.len(), 3);
        assert_eq!(seg.debris, 1);
        assert!(seg.objects.iter().all(|o| o.area == 320));
        assert_eq!(seg.objects[0].crop.dimensions(), (8 + 6, 40 + 6));
        assert!(seg.objects.iter().all(|o| o.mask.len() == 320 && o.mask.iter().all(|&m| m)));
        assert!(seg.objects.iter().all(|o| o.split_from.is_none()));
        assert!(seg.unresolved_boxes.is_empty());
    }

    #[test]
    fn masks_follow_the_object_and_split_parts_share_their_blob() {
        let mut frame = GrayImage::from_pixel(260, 200, Luma([230]));
        for x0 in [20u32, 40, 60, 80, 100] {
            for y in 20..60 {
                for x in x0..x0 + 8 {
                    frame.put_pixel(x, y, Luma([50]));
                }
            }
        }
        // two rods touching at an angle (as in split's tests): one blob, cut at the neck
        let rod = |(px, py): (f64, f64), (x0, y0): (f64, f64), (x1, y1): (f64, f64)| {
            let (dx, dy) = (x1 - x0, y1 - y0);
            let t = (((px - x0) * dx + (py - y0) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
            (px - x0 - t * dx).powi(2) + (py - y0 - t * dy).powi(2) <= 36.0
        };
        for y in 0..200 {
            for x in 0..260 {
                let p = (x as f64, y as f64);
                if rod(p, (130.0, 70.0), (160.0, 105.0)) || rod(p, (170.0, 115.0), (215.0, 120.0)) {
                    frame.put_pixel(x, y, Luma([50]));
                }
            }
        }
        let seg = segment(&frame, &SegmentParams::default());
        for o in &seg.objects {
            assert_eq!(o.mask.len(), (o.bbox.width * o.bbox.height) as usize);
            assert_eq!(o.mask.iter().filter(|&&m| m).count(), o.area);
            if o.split_from.is_none() {
                // an object found whole: its mask is exactly the ink in its box
                for (i, &m) in o.mask.iter().enumerate() {
                    let (x, y) = (o.bbox.x + i as u32 % o.bbox.width, o.bbox.y + i as u32 / o.bbox.width);
                    assert_eq!(m, frame.get_pixel(x, y)[0] < 128, "({x}, {y})");
                }
            }
        }
        assert_eq!(seg.objects.iter().filter(|o| o.split_from.is_none()).count(), 5);
        let parts: Vec<&Object> = seg.objects.iter().filter(|o| o.split_from.is_some()).collect();
        assert_eq!(parts.len(), 2, "the touching pair is split in two");
        assert_eq!(parts[0].split_from, parts[1].split_from);
        assert!(seg.unresolved_boxes.is_empty());
    }
}
