//! The object mask and its 8-connected components, in row bands shared out over threads. Each band
//! thresholds and closes its rows with a margin (closing looks only 2·radius rows away, so a
//! band matches the whole frame closed at once), labels them with imageproc and measures the
//! components; the bands are then joined where a component crosses a seam and renumbered in
//! the order one whole-frame labelling gives (first pixel in raster order), so the result does
//! not depend on the thread count.

use image::{GrayImage, ImageBuffer, Luma};
use imageproc::region_labelling::{connected_components, Connectivity};
use imageproc::union_find::DisjointSetForest;

type BandLabels = ImageBuffer<Luma<u32>, Vec<u32>>;

/// Pixels labelled at once: imageproc's labelling allocates 16 bytes a pixel, and bands of
/// 128 Ki pixels keep that small enough for the allocator to reuse across frames instead of
/// faulting in fresh pages (and keep peak memory down).
const BAND_PIXELS: u32 = 1 << 17;

/// One connected component: pixel count, bounding box (inclusive) and brightest ink.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub area: usize,
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
    pub peak: u8,
}

impl Component {
    /// Share of the bounding box the component fills.
    pub fn fill(&self) -> f64 {
        self.area as f64 / ((self.x1 - self.x0 + 1) as f64 * (self.y1 - self.y0 + 1) as f64)
    }

    pub fn aspect(&self) -> f64 {
        let (w, h) = ((self.x1 - self.x0 + 1) as f64, (self.y1 - self.y0 + 1) as f64);
        w.max(h) / w.min(h)
    }

    fn merge(&mut self, other: &Component) {
        self.area += other.area;
        (self.x0, self.y0) = (self.x0.min(other.x0), self.y0.min(other.y0));
        (self.x1, self.y1) = (self.x1.max(other.x1), self.y1.max(other.y1));
        self.peak = self.peak.max(other.peak);
    }
}

/// `work(y0, y1)` on consecutive row bands of `height` rows, one per thread, results in order.
pub fn in_bands<T: Send>(height: u32, threads: usize, work: impl Fn(u32, u32) -> T + Sync) -> Vec<T> {
    let band = height.div_ceil(threads.max(1) as u32).max(1);
    if band >= height {
        return vec![work(0, height)];
    }
    let work = &work;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..height)
            .step_by(band as usize)
            .map(|y0| scope.spawn(move || work(y0, (y0 + band).min(height))))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// A band's labels (local numbering 1..) and components indexed by local label.
struct Band {
    labels: BandLabels,
    components: Vec<Option<Component>>,
}

/// The components of the pixels of `above` (row-major, `width` wide) over `low`, after a
/// closing of L∞ radius `radius`: the labels (0 = background) and the components indexed by
/// label (index 0 is `None`).
pub fn label(above: &[u8], width: u32, low: u8, radius: u8, threads: usize) -> (LabelMap, Vec<Option<Component>>) {
    label_in_bands(above, width, low, radius, threads, BAND_PIXELS)
}

fn label_in_bands(
    above: &[u8],
    width: u32,
    low: u8,
    radius: u8,
    threads: usize,
    band_pixels: u32,
) -> (LabelMap, Vec<Option<Component>>) {
    let height = if width == 0 { 0 } else { (above.len() / width as usize) as u32 };
    let margin = 2 * radius as u32 + 1;
    let row = |y: u32| y as usize * width as usize;
    let rows = (band_pixels / width.max(1)).max(4 * margin).min(height.max(1));
    let starts: Vec<u32> = (0..height).step_by(rows as usize).collect();
    let label_band = |y0: u32| {
        let y1 = (y0 + rows).min(height);
        let (top, bottom) = (y0.saturating_sub(margin), (y1 + margin).min(height));
        let mask: Vec<u8> = above[row(top)..row(bottom)].iter().map(|&v| if v > low { 255 } else { 0 }).collect();
        let closed = close_square(&mask, width as usize, radius as usize);
        let rows = closed[row(y0 - top)..row(y1 - top)].to_vec();
        let labels = connected_components(
            &GrayImage::from_raw(width, y1 - y0, rows).expect("sized"),
            Connectivity::Eight,
            Luma([0u8]),
        );
        let components = measure(&labels, &above[row(y0)..row(y1)], y0);
        Band { labels, components }
    };
    let bands: Vec<Band> = in_bands(starts.len() as u32, threads, |b0, b1| {
        starts[b0 as usize..b1 as usize].iter().map(|&y0| label_band(y0)).collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();

    // Global label = the band's offset + its local label; join across each seam (8-connected).
    let offsets: Vec<usize> = bands
        .iter()
        .scan(0, |sum, band| {
            let offset = *sum;
            *sum += band.components.len().saturating_sub(1);
            Some(offset)
        })
        .collect();
    let total = offsets.last().zip(bands.last()).map_or(0, |(o, b)| o + b.components.len().saturating_sub(1));
    let mut forest = DisjointSetForest::new(total + 1);
    for k in 1..bands.len() {
        let (upper, lower) = (&bands[k - 1].labels, &bands[k].labels);
        let last = upper.height() - 1;
        for x in 0..width {
            let below = lower.get_pixel(x, 0)[0];
            if below == 0 {
                continue;
            }
            for ux in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                let above = upper.get_pixel(ux, last)[0];
                if above != 0 {
                    forest.union(offsets[k - 1] + above as usize, offsets[k] + below as usize);
                }
            }
        }
    }
    // A set's smallest global label is its first pixel in raster order, so numbering roots in
    // global-label order reproduces the whole-frame numbering.
    let mut number_of_root = vec![0u32; total + 1];
    let mut final_label = vec![0u32; total + 1];
    let mut next = 1;
    for (global, label) in final_label.iter_mut().enumerate().skip(1) {
        let root = forest.root(global);
        if number_of_root[root] == 0 {
            number_of_root[root] = next;
            next += 1;
        }
        *label = number_of_root[root];
    }

    let mut components: Vec<Option<Component>> = vec![None; next as usize];
    for (band, &offset) in bands.iter().zip(&offsets) {
        for (local, part) in band.components.iter().enumerate() {
            if let Some(part) = part {
                add(&mut components[final_label[offset + local] as usize], part.clone());
            }
        }
    }
    let labels = LabelMap { rows, offsets, final_label, bands: bands.into_iter().map(|band| band.labels).collect() };
    (labels, components)
}

/// The frame's labels, kept as the bands' own label images and a map from each band's labels
/// to the frame's: only the pixels inside objects' boxes are ever looked up.
pub struct LabelMap {
    /// Rows per band (the last may have fewer).
    rows: u32,
    offsets: Vec<usize>,
    final_label: Vec<u32>,
    bands: Vec<BandLabels>,
}

impl LabelMap {
    /// The label of pixel (x, y): 0 for background, else the component's index.
    pub fn at(&self, x: u32, y: u32) -> u32 {
        let band = (y / self.rows) as usize;
        match self.bands[band].get_pixel(x, y % self.rows)[0] {
            0 => 0,
            local => self.final_label[self.offsets[band] + local as usize],
        }
    }
}

/// Closing of a 0/255 mask (row-major, `width` wide) by the square of L∞ radius `radius`: the
/// same as imageproc's `close(mask, Norm::LInf, radius)` (pixels outside the image are
/// ignored), which computes two whole distance transforms and took most of segmentation's
/// time; for a small square on a binary mask, max then min filters over shifted rows are a
/// fraction of that (the test below holds the two equal).
fn close_square(mask: &[u8], width: usize, radius: usize) -> Vec<u8> {
    let dilated = square_filter(mask, width, radius, u8::max);
    square_filter(&dilated, width, radius, u8::min)
}

/// `pick` (max or min) over the square of L∞ radius `radius` around each pixel, clipped to the
/// image: first down the columns (whole rows combined), then along the rows (shifted slices).
fn square_filter(image: &[u8], width: usize, radius: usize, pick: impl Fn(u8, u8) -> u8 + Copy) -> Vec<u8> {
    let height = image.len() / width.max(1);
    let row = |y: usize| &image[y * width..(y + 1) * width];
    let mut columns = image.to_vec();
    for (y, out) in columns.chunks_exact_mut(width.max(1)).enumerate() {
        for near in y.saturating_sub(radius)..=(y + radius).min(height - 1) {
            out.iter_mut().zip(row(near)).for_each(|(o, &v)| *o = pick(*o, v));
        }
    }
    let mut out = columns.clone();
    for (source, out) in columns.chunks_exact(width.max(1)).zip(out.chunks_exact_mut(width.max(1))) {
        for shift in 1..=radius.min(width - 1) {
            out[shift..].iter_mut().zip(&source[..width - shift]).for_each(|(o, &v)| *o = pick(*o, v));
            out[..width - shift].iter_mut().zip(&source[shift..]).for_each(|(o, &v)| *o = pick(*o, v));
        }
    }
    out
}

/// Adds `part` (pixels, a band's component) to the component in `slot`.
fn add(slot: &mut Option<Component>, part: Component) {
    match slot {
        Some(c) => c.merge(&part),
        None => *slot = Some(part),
    }
}

/// Components of a band whose first row is frame row `y_offset`, indexed by local label.
fn measure(labels: &BandLabels, above: &[u8], y_offset: u32) -> Vec<Option<Component>> {
    let mut components: Vec<Option<Component>> = Vec::new();
    let width = labels.width();
    for (x, y, label) in labels.enumerate_pixels() {
        let label = label[0] as usize;
        if label == 0 {
            continue;
        }
        if components.len() <= label {
            components.resize_with(label + 1, || None);
        }
        let value = above[(y * width + x) as usize];
        let y = y + y_offset;
        add(&mut components[label], Component { area: 1, x0: x, y0: y, x1: x, y1: y, peak: value });
    }
    components
}

#[cfg(test)]
mod tests {
    use super::*;
    use imageproc::distance_transform::Norm;
    use imageproc::morphology::close;
    use rand::{rngs::SmallRng, RngExt, SeedableRng};

    /// Deterministic noise bytes.
    fn noise(seed: u64) -> impl FnMut() -> u8 {
        let mut rng = SmallRng::seed_from_u64(seed);
        move || rng.random()
    }

    #[test]
    fn square_closing_equals_imageprocs() {
        let mut next = noise(5);
        for (w, h) in [(1u32, 1u32), (2, 9), (9, 2), (5, 5), (40, 33)] {
            for density in [30u8, 128, 230] {
                let mask = GrayImage::from_fn(w, h, |_, _| Luma([if next() > density { 255 } else { 0 }]));
                // imageproc takes w + h for "no such pixel", so below that it is not a closing.
                for radius in (0..=4u8).filter(|&r| (r as u32) < w + h) {
                    let ours = close_square(mask.as_raw(), w as usize, radius as usize);
                    assert_eq!(&ours, close(&mask, Norm::LInf, radius).as_raw(), "{w}x{h}, radius {radius}");
                }
            }
        }
    }

    #[test]
    fn bands_give_the_whole_frame_labelling() {
        let mut next = noise(11);
        // Dense noise (few large components) and sparse noise (many small ones across seams).
        for (w, h, density, radius) in
            [(300u32, 211u32, 150u8, 0u8), (97, 400, 200, 1), (64, 7, 120, 0), (300, 211, 235, 1), (200, 300, 240, 3)]
        {
            let above: Vec<u8> = (0..w * h).map(|_| next()).collect();
            let mask =
                GrayImage::from_fn(w, h, |x, y| Luma([if above[(y * w + x) as usize] > density { 255 } else { 0 }]));
            let whole = connected_components(&close(&mask, Norm::LInf, radius), Connectivity::Eight, Luma([0u8]));
            let (one, components) = label(&above, w, density, radius, 1);
            assert_eq!(BandLabels::from_fn(w, h, |x, y| Luma([one.at(x, y)])), whole);
            for (threads, band_pixels) in [(1, 2000), (2, 1 << 18), (2, 2000), (3, 5000), (7, 1)] {
                let (banded, banded_components) = label_in_bands(&above, w, density, radius, threads, band_pixels);
                let banded = BandLabels::from_fn(w, h, |x, y| Luma([banded.at(x, y)]));
                assert_eq!(banded, whole, "{w}x{h}, {threads} threads, bands of {band_pixels} pixels");
                assert_eq!(banded_components, components, "{w}x{h}, {threads} threads, bands of {band_pixels} pixels");
            }
        }
    }
}
