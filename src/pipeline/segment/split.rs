//! Splitting touching chromosomes. Two chromosomes that touch make one component whose
//! distance-to-background map has two high ridges joined by a narrow neck: the saddle between
//! the two peaks lies well below both, and the two sides lie at an angle. Each pixel then goes
//! to the core it is reached from first, growing through the mask, so the cut falls at the neck.
//! Real chromosomes have waists (pale bands, centromeres, Q-band heterochromatin) as deep as a
//! contact, in line with the rest of them: measured on composed frames of real crops, a neck
//! test alone cut whole chromosomes, so segmentation only asks for a split of what is too large
//! to be one chromosome, and a pair touching end to end in line stays whole.

use std::collections::VecDeque;

use image::{GrayImage, Luma};
use imageproc::distance_transform::euclidean_squared_distance_transform;

/// A neck narrower than this share of the smaller peak's half-width separates two objects.
const NECK_RATIO: f64 = 0.6;
/// Both sides must be chromosome-like: peaks at least this share of the widest.
const MIN_PEAK_SHARE: f64 = 0.3;
/// Half-widths under this many pixels are too thin to judge a neck on.
const MIN_PEAK: f64 = 1.5;
/// The two sides must lie at an angle: a chromosome's own deep waist (a pale band, the
/// centromere) has its two sides in line, as do chromosomes touching end to end, which
/// cannot be told apart from one and stay whole.
const MIN_TURN: f64 = 25.0 * std::f64::consts::PI / 180.0;
/// Touching groups larger than this are left whole (and usually reported unresolved).
pub const MAX_PARTS: u8 = 4;

/// Splits the `w`×`h` mask of one component. Returns the part (1, 2, …) of every pixel,
/// 0 outside the mask, or `None` when nothing could be split off. Each part holds at least
/// `min_part` pixels.
pub fn split(mask: &[bool], w: usize, h: usize, min_part: usize) -> Option<Vec<u8>> {
    let mut parts: Vec<u8> = mask.iter().map(|&m| m as u8).collect();
    let mut next = 2u8;
    let mut pending = vec![1u8];
    while let Some(part) = pending.pop() {
        if next > MAX_PARTS {
            break;
        }
        let sub: Vec<bool> = parts.iter().map(|&p| p == part).collect();
        if let Some(halves) = split_once(&sub, w, h, min_part) {
            for (p, &half) in parts.iter_mut().zip(&halves) {
                if half == 2 {
                    *p = next;
                }
            }
            pending.extend([part, next]);
            next += 1;
        }
    }
    (next > 2).then_some(parts)
}

/// One cut at the deepest neck: 0 outside, 1 and 2 for the two sides.
fn split_once(mask: &[bool], w: usize, h: usize, min_part: usize) -> Option<Vec<u8>> {
    let dist = half_widths(mask, w, h);
    let (saddle, a, b) = deepest_neck(mask, &dist, w, h)?;
    // Cores: what stands above the saddle on either side; everything else grows from them.
    let mut owner = vec![0u8; mask.len()];
    for (seed, side) in [(a, 1u8), (b, 2u8)] {
        flood(&mut owner, seed, side, w, h, |i| dist[i] > saddle);
    }
    grow(&mut owner, mask, w, h);
    let count = |side: u8| owner.iter().filter(|&&o| o == side).count();
    let turned = axis_angle_between(&owner, w) >= MIN_TURN;
    (count(1) >= min_part && count(2) >= min_part && turned).then_some(owner)
}

/// Angle in radians between the long axes of sides 1 and 2 (0 to π/2).
fn axis_angle_between(owner: &[u8], w: usize) -> f64 {
    let axis = |side: u8| {
        let points: Vec<(f64, f64)> =
            (0..owner.len()).filter(|&i| owner[i] == side).map(|i| ((i % w) as f64, (i / w) as f64)).collect();
        let n = points.len().max(1) as f64;
        let (cx, cy) = points.iter().fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
        let (mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0);
        for (x, y) in &points {
            (xx, yy, xy) = (xx + (x - cx).powi(2), yy + (y - cy).powi(2), xy + (x - cx) * (y - cy));
        }
        0.5 * (2.0 * xy).atan2(xx - yy)
    };
    let d = (axis(1) - axis(2)).rem_euclid(std::f64::consts::PI);
    d.min(std::f64::consts::PI - d)
}

/// Euclidean distance of each mask pixel to the nearest pixel outside (the frame border of
/// the box counts as outside), 0 off the mask.
fn half_widths(mask: &[bool], w: usize, h: usize) -> Vec<f64> {
    let outside = GrayImage::from_fn(w as u32 + 2, h as u32 + 2, |x, y| {
        let inside =
            x >= 1 && y >= 1 && (x as usize) <= w && (y as usize) <= h && mask[(y as usize - 1) * w + x as usize - 1];
        Luma([if inside { 0 } else { 255 }])
    });
    let squared = euclidean_squared_distance_transform(&outside);
    (0..w * h).map(|i| squared.get_pixel((i % w) as u32 + 1, (i / w) as u32 + 1)[0].sqrt()).collect()
}

/// The most separating merge of two ridges, by union-find over pixels from the highest
/// half-width down: `(saddle level, peak pixel of one side, peak pixel of the other)`.
fn deepest_neck(mask: &[bool], dist: &[f64], w: usize, h: usize) -> Option<(f64, usize, usize)> {
    let mut order: Vec<usize> = (0..mask.len()).filter(|&i| mask[i]).collect();
    order.sort_by(|&i, &j| dist[j].total_cmp(&dist[i]).then(i.cmp(&j)));
    let widest = *dist.iter().max_by(|a, b| a.total_cmp(b))?;
    let mut parent: Vec<usize> = (0..mask.len()).collect();
    let mut peak: Vec<usize> = (0..mask.len()).collect();
    let mut done = vec![false; mask.len()];
    let mut best: Option<(f64, f64, usize, usize)> = None;
    for &i in &order {
        done[i] = true;
        for j in neighbours(i, w, h) {
            if !done[j] {
                continue;
            }
            let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
            if ri == rj {
                continue;
            }
            let (pi, pj) = (peak[ri], peak[rj]);
            let lower = dist[pi].min(dist[pj]);
            if lower >= MIN_PEAK.max(MIN_PEAK_SHARE * widest) {
                let ratio = dist[i] / lower;
                if ratio < NECK_RATIO && best.is_none_or(|b| ratio < b.0) {
                    best = Some((ratio, dist[i], pi, pj));
                }
            }
            parent[rj] = ri;
            if dist[pj] > dist[pi] {
                peak[ri] = pj;
            }
        }
    }
    best.map(|(_, saddle, a, b)| (saddle, a, b))
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn neighbours(i: usize, w: usize, h: usize) -> impl Iterator<Item = usize> {
    let (x, y) = ((i % w) as isize, (i / w) as isize);
    (-1isize..=1).flat_map(move |dy| (-1isize..=1).map(move |dx| (x + dx, y + dy))).filter_map(move |(nx, ny)| {
        let inside = (nx, ny) != (x, y) && nx >= 0 && ny >= 0 && (nx as usize) < w && (ny as usize) < h;
        inside.then(|| ny as usize * w + nx as usize)
    })
}

/// Marks the 8-connected region around `seed` where `keep` holds.
fn flood(owner: &mut [u8], seed: usize, side: u8, w: usize, h: usize, keep: impl Fn(usize) -> bool) {
    let mut queue = VecDeque::from([seed]);
    owner[seed] = side;
    while let Some(i) = queue.pop_front() {
        for j in neighbours(i, w, h) {
            if owner[j] == 0 && keep(j) {
                owner[j] = side;
                queue.push_back(j);
            }
        }
    }
}

/// Gives every unowned mask pixel to the side that reaches it first through the mask.
fn grow(owner: &mut [u8], mask: &[bool], w: usize, h: usize) {
    let mut queue: VecDeque<usize> = (0..owner.len()).filter(|&i| owner[i] != 0).collect();
    while let Some(i) = queue.pop_front() {
        for j in neighbours(i, w, h) {
            if owner[j] == 0 && mask[j] {
                owner[j] = owner[i];
                queue.push_back(j);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paints filled discs of radius `r` along a segment: a straight chromosome of width 2r.
    fn rod(mask: &mut [bool], w: usize, (x0, y0): (f64, f64), (x1, y1): (f64, f64), r: f64) {
        for (i, m) in mask.iter_mut().enumerate() {
            let (px, py) = ((i % w) as f64, (i / w) as f64);
            let (dx, dy) = (x1 - x0, y1 - y0);
            let t = (((px - x0) * dx + (py - y0) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
            let (cx, cy) = (x0 + t * dx, y0 + t * dy);
            if (px - cx).powi(2) + (py - cy).powi(2) <= r * r {
                *m = true;
            }
        }
    }

    #[test]
    fn two_rods_touching_at_a_corner_are_cut_apart() {
        let (w, h) = (80, 90);
        let mut mask = vec![false; w * h];
        rod(&mut mask, w, (10.0, 10.0), (40.0, 45.0), 5.0);
        rod(&mut mask, w, (47.0, 52.0), (73.0, 56.0), 5.0);
        let parts = split(&mask, w, h, 50).expect("a narrow contact is split");
        let at = |x: usize, y: usize| parts[y * w + x];
        assert_ne!(at(12, 12), at(70, 55));
        assert!(at(12, 12) > 0 && at(70, 55) > 0);
        assert_eq!(parts.iter().filter(|&&p| p > 0).count(), mask.iter().filter(|&&m| m).count());
    }

    #[test]
    fn rods_touching_end_to_end_in_line_stay_whole() {
        let (w, h) = (80, 90);
        let mut mask = vec![false; w * h];
        rod(&mut mask, w, (10.0, 10.0), (40.0, 45.0), 5.0);
        rod(&mut mask, w, (47.0, 53.0), (70.0, 80.0), 5.0);
        assert!(split(&mask, w, h, 50).is_none());
    }

    #[test]
    fn a_rod_with_a_centromere_waist_stays_whole() {
        let (w, h) = (30, 100);
        let mut mask = vec![false; w * h];
        rod(&mut mask, w, (15.0, 8.0), (15.0, 40.0), 6.0);
        rod(&mut mask, w, (15.0, 46.0), (15.0, 92.0), 6.0);
        rod(&mut mask, w, (15.0, 38.0), (15.0, 48.0), 4.0);
        assert!(split(&mask, w, h, 50).is_none());
    }

    #[test]
    fn a_tiny_side_is_not_an_object() {
        let (w, h) = (60, 60);
        let mut mask = vec![false; w * h];
        rod(&mut mask, w, (10.0, 10.0), (40.0, 40.0), 5.0);
        rod(&mut mask, w, (47.0, 47.0), (48.0, 48.0), 3.0);
        rod(&mut mask, w, (40.0, 40.0), (47.0, 47.0), 1.0);
        assert!(split(&mask, w, h, 60).is_none());
    }
}
