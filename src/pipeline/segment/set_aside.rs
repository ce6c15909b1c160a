//! What the segmentation network calls chromosome but a count must not: pieces of interphase
//! nuclei and faint debris. Its training spreads hold few nuclei and little faint matter, and on
//! real frames it marks pieces of a nucleus' rim, and faint smears, as chromosome; each would be
//! counted (docs/segmentation.md, "Set aside").
//!
//! - A nucleus is a large connected mass of bright cells (over the frame's Otsu threshold) that
//!   the network calls not chromosome, grown through the dimmer cells around it into a region
//!   that the network still mostly calls not chromosome. A crowded centre of touching
//!   chromosomes is as large and bright, but the network calls most of it chromosome, so it
//!   holds no such mass.
//! - An instance is part of a nucleus when at least half its cells lie in one and at least
//!   `RIM_OUTLINE` of its outline is the nucleus' body (its region, not chromosome); or, as the
//!   classic segmenter has it, when it is itself large, filled and round.
//! - An instance is faint debris when its mean brightness is under `FAINT` of the median
//!   instance's, and a speck of debris when it has under `SPECK` of the median remaining
//!   instance's cells.

use super::instances::{components, Cut};
use crate::pipeline::preprocess::otsu_from_histogram;

/// A nucleus' region reaches this share of the way from the background to the Otsu threshold...
const NUCLEUS_LOW: f64 = 0.4;
/// ... and at most this many cells out from its bright mass.
const NUCLEUS_REACH: usize = 16;
/// A region (or an instance) is a nucleus from this multiple of the median instance's cells.
const NUCLEUS_AREA: usize = 5;
/// ... and a region only while under this share of its cells is chromosome.
const NUCLEUS_MAX_FG: f64 = 0.5;
/// Share of an instance's outline against a nucleus' body that makes it a piece of the rim.
const RIM_OUTLINE: f64 = 0.25;
/// Instances dimmer than this share of the median instance's brightness are debris.
const FAINT: f64 = 0.3;
/// Instances under this share of the median instance's cells are specks of debris. The
/// smallest chromosomes (21, 22) have a median 0.41–0.42 of the median chromosome's area in
/// the DAPI train frames' class maps, and 2 of the 5,086 chromosomes there are under a fifth
/// (`python -m karyotrain.areas`).
const SPECK: f64 = 0.2;

/// Each map cell's brightness on 0–255: the mean of the network input's `stride × stride`
/// block under it (`input` is `wp` wide; the map is `w × h`).
pub fn cell_brightness(input: &[f32], wp: usize, stride: usize, (w, h): (usize, usize)) -> Vec<u8> {
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let block = (0..stride).flat_map(|dy| (0..stride).map(move |dx| (y * stride + dy) * wp + x * stride + dx));
            let mean = block.map(|i| input[i]).sum::<f32>() / (stride * stride) as f32;
            out.push((mean * 255.0).round().clamp(0.0, 255.0) as u8);
        }
    }
    out
}

/// Removes nucleus pieces, faint debris and specks from `cut.instances` (the faint ones and
/// the specks join `cut.debris`); returns the nuclei found on the frame.
pub fn set_aside(cut: &mut Cut, brightness: &[u8]) -> usize {
    if cut.instances.is_empty() {
        return 0;
    }
    let mean = |cells: &Vec<usize>| cells.iter().map(|&i| f64::from(brightness[i])).sum::<f64>() / cells.len() as f64;
    let typical_brightness = upper_median(cut.instances.iter().map(mean).collect());
    let before = cut.instances.len();
    cut.instances.retain(|cells| mean(cells) >= FAINT * typical_brightness);
    cut.debris += before - cut.instances.len();

    let (w, h) = (cut.width, cut.height);
    let typical = upper_median(cut.instances.iter().map(|c| c.len() as f64).collect());
    let before = cut.instances.len();
    cut.instances.retain(|cells| cells.len() as f64 >= SPECK * typical);
    cut.debris += before - cut.instances.len();
    let (nucleus, body) = nucleus_regions(cut, brightness, typical);
    let nuclei = nucleus.iter().max().copied().unwrap_or(0) as usize;
    let mut mine = vec![false; w * h];
    cut.instances.retain(|cells| {
        cells.iter().for_each(|&i| mine[i] = true);
        let mut outline: Vec<usize> =
            cells.iter().flat_map(|&i| four_neighbours(i, w, h)).filter(|&j| !mine[j]).collect();
        cells.iter().for_each(|&i| mine[i] = false);
        outline.sort_unstable();
        outline.dedup();
        let inside = cells.iter().filter(|&&i| nucleus[i] != 0).count();
        let against_body = outline.iter().filter(|&&j| body[j]).count();
        let rim = 2 * inside >= cells.len() && against_body as f64 >= RIM_OUTLINE * outline.len().max(1) as f64;
        let whole = cells.len() as f64 >= NUCLEUS_AREA as f64 * typical && round_and_filled(cells, w);
        !(rim || whole)
    });
    nuclei
}

/// Each cell's nucleus number (from 1) or 0, and whether it is a nucleus' body.
fn nucleus_regions(cut: &Cut, brightness: &[u8], typical: f64) -> (Vec<u32>, Vec<bool>) {
    let (w, h) = (cut.width, cut.height);
    let mut nucleus = vec![0u32; w * h];
    let mut histogram = [0u64; 256];
    brightness.iter().for_each(|&b| histogram[b as usize] += 1);
    let Some(seed) = otsu_from_histogram(&histogram) else { return (nucleus, vec![false; w * h]) };
    // Most of a spread's cells are background.
    let mut below = 0;
    let background = histogram.iter().position(|&n| {
        below += n;
        2 * below > brightness.len() as u64
    });
    let background = background.unwrap_or(0) as f64;
    let low = (background + NUCLEUS_LOW * (f64::from(seed) - background).max(0.0)) as u8;
    let mut count = 0;
    for mass in components(w, h, |i| brightness[i] > seed && !cut.fg[i]) {
        if (mass.len() as f64) < NUCLEUS_AREA as f64 * typical {
            continue;
        }
        // The mass grown by up to NUCLEUS_REACH cells through what is brighter than `low`.
        let mut region = mass.clone();
        region.iter().for_each(|&i| nucleus[i] = u32::MAX);
        let mut front = mass;
        for _ in 0..NUCLEUS_REACH {
            let mut next = Vec::new();
            for &i in &front {
                for j in four_neighbours(i, w, h) {
                    if brightness[j] > low && nucleus[j] == 0 {
                        nucleus[j] = u32::MAX;
                        next.push(j);
                    }
                }
            }
            region.extend_from_slice(&next);
            front = next;
        }
        let fg = region.iter().filter(|&&i| cut.fg[i]).count() as f64;
        let number = if fg < NUCLEUS_MAX_FG * region.len() as f64 {
            count += 1;
            count
        } else {
            0
        };
        region.iter().for_each(|&i| nucleus[i] = number);
    }
    let body = (0..w * h).map(|i| nucleus[i] != 0 && !cut.fg[i]).collect();
    (nucleus, body)
}

/// The classic segmenter's nucleus shape: over 60 % of its box, and its box under 1.6 : 1.
fn round_and_filled(cells: &[usize], w: usize) -> bool {
    let (x0, x1) = cells.iter().map(|&i| i % w).fold((usize::MAX, 0), |(a, b), x| (a.min(x), b.max(x)));
    let (bw, bh) = (x1 - x0 + 1, cells[cells.len() - 1] / w - cells[0] / w + 1);
    cells.len() as f64 > 0.6 * (bw * bh) as f64 && (bw.max(bh) as f64) < 1.6 * bw.min(bh) as f64
}

/// The upper of the two middle values (not their mean, as `preprocess::median` gives): the
/// shares above were chosen with it.
fn upper_median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn four_neighbours(i: usize, w: usize, h: usize) -> impl Iterator<Item = usize> {
    let (x, y) = (i % w, i / w);
    [(x > 0).then(|| i - 1), (x + 1 < w).then(|| i + 1), (y > 0).then(|| i - w), (y + 1 < h).then(|| i + w)]
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 48;
    const H: usize = 24;

    /// A frame of dark cells with chromosome rods: each rod a 2 × 6 instance of `brightness`.
    struct Scene {
        brightness: Vec<u8>,
        fg: Vec<bool>,
        instances: Vec<Vec<usize>>,
    }

    impl Scene {
        fn new() -> Scene {
            Scene { brightness: vec![10; W * H], fg: vec![false; W * H], instances: Vec::new() }
        }
        fn instance(&mut self, cells: Vec<usize>, brightness: u8) {
            for &i in &cells {
                (self.brightness[i], self.fg[i]) = (brightness, true);
            }
            self.instances.push(cells);
        }
        fn rod(&mut self, x: usize, y: usize, brightness: u8) {
            self.instance((y..y + 6).flat_map(|y| [y * W + x, y * W + x + 1]).collect(), brightness);
        }
        fn rods(mut self) -> Scene {
            for x in [30, 34, 38, 42] {
                self.rod(x, 2, 150);
                self.rod(x, 12, 150);
            }
            self
        }
        /// The nuclei found and what is left.
        fn run(self) -> (usize, Cut) {
            let mut cut =
                Cut { width: W, height: H, fg: self.fg, instances: self.instances, debris: 0, unresolved: Vec::new() };
            (set_aside(&mut cut, &self.brightness), cut)
        }
    }

    fn first_cells(cut: &Cut) -> Vec<(usize, usize)> {
        cut.instances.iter().map(|c| (c[0] % W, c[0] / W)).collect()
    }

    #[test]
    fn pieces_of_a_nucleus_rim_go_and_a_chromosome_beside_it_stays() {
        let mut scene = Scene::new().rods();
        // A nucleus of radius 8 at (12, 12); the network calls its right rim chromosome.
        let disk: Vec<usize> = (0..W * H)
            .filter(|&i| {
                let (dx, dy) = ((i % W) as f64 - 12.0, (i / W) as f64 - 12.0);
                dx * dx + dy * dy <= 64.0
            })
            .collect();
        disk.iter().for_each(|&i| scene.brightness[i] = 200);
        let rim: Vec<usize> = disk.iter().copied().filter(|&i| i % W >= 18).collect();
        scene.instance(rim, 200);
        // A chromosome touching the nucleus' left edge end on.
        scene.instance((11..13).flat_map(|y| (0..4).map(move |x| y * W + x)).collect(), 150);
        let (nuclei, cut) = scene.run();
        assert_eq!((nuclei, cut.debris), (1, 0));
        assert_eq!(cut.instances.len(), 9, "the 8 rods and the touching one stay: {:?}", first_cells(&cut));
        assert!(first_cells(&cut).contains(&(0, 11)));
    }

    #[test]
    fn a_crowded_centre_is_not_a_nucleus() {
        let mut scene = Scene::new().rods();
        // Ten rods side by side with no gap: as large and bright as a nucleus, but chromosome.
        for x in (2..22).step_by(2) {
            scene.rod(x, 8, 200);
        }
        let (nuclei, cut) = scene.run();
        assert_eq!((nuclei, cut.debris, cut.instances.len()), (0, 0, 18));
    }

    #[test]
    fn a_faint_instance_is_debris() {
        let mut scene = Scene::new().rods();
        scene.rod(4, 4, 40);
        scene.rod(10, 4, 60);
        let (nuclei, cut) = scene.run();
        assert_eq!((nuclei, cut.instances.len(), cut.debris), (0, 9, 1));
        assert!(!first_cells(&cut).contains(&(4, 4)) && first_cells(&cut).contains(&(10, 4)));
    }

    #[test]
    fn a_speck_is_debris_and_a_small_chromosome_is_not() {
        let mut scene = Scene::new().rods();
        scene.instance(vec![4 * W + 4, 4 * W + 5], 150);
        scene.instance((4..7).flat_map(|y| [y * W + 10, y * W + 11]).collect(), 150);
        let (nuclei, cut) = scene.run();
        assert_eq!((nuclei, cut.instances.len(), cut.debris), (0, 9, 1));
        assert!(!first_cells(&cut).contains(&(4, 4)) && first_cells(&cut).contains(&(10, 4)));
    }

    #[test]
    fn brightness_is_the_mean_of_each_cells_input_block() {
        // A 4 x 2 input (padded to 6 wide), stride 2: two cells.
        let input = [0.0, 1.0, 0.5, 0.5, 9.0, 9.0, 1.0, 0.0, 0.5, 1.0, 9.0, 9.0];
        assert_eq!(cell_brightness(&input, 6, 2, (2, 1)), [128, 159]);
    }
}
