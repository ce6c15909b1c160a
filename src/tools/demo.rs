//! Demo metaphase frames rendered from the model card's class statistics (relative length,
//! width and band profile of each chromosome, measured by train/ on real G-band crops), so
//! the device can show the whole pipeline with no camera and no patient image on board.

use image::{GrayImage, Luma};
use rand::{rngs::SmallRng, RngExt, SeedableRng};

use crate::integrity::card::ClassStats;
use crate::pipeline::decide::Verdict;

/// Karyotypes of the built-in demo frames, with the verdict a correct screen gives.
pub const DEMO_CELLS: [(&str, Verdict); 6] = [
    ("46,XX", Verdict::Normal),
    ("47,XY,+21", Verdict::Abnormal),
    ("46,XY", Verdict::Normal),
    ("45,X", Verdict::Abnormal),
    ("47,XX,+18", Verdict::Abnormal),
    ("47,XXY", Verdict::Abnormal),
];

const FRAME_SIZE: u32 = 1024;
/// Length in pixels of a chromosome of median length.
const MEDIAN_LENGTH: f64 = 64.0;
const BACKGROUND: f64 = 228.0;

/// The chromosome labels a karyotype string such as `47,XY,+21` or `45,XX,-13` describes.
pub fn chromosomes_of(karyotype: &str) -> Result<Vec<String>, String> {
    let mut parts = karyotype.split(',');
    let count: usize = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("karyotype {karyotype:?} does not start with a count"))?;
    let sex = parts.next().ok_or_else(|| format!("karyotype {karyotype:?} has no sex chromosomes"))?;
    let mut labels: Vec<String> = (1..=22).flat_map(|c| [c.to_string(), c.to_string()]).collect();
    labels.extend(sex.chars().map(|c| c.to_string()));
    for change in parts.filter(|c| !c.contains('(')) {
        let (sign, label) = change.split_at(1);
        match sign {
            "+" => labels.push(label.to_string()),
            "-" => {
                let at = labels.iter().position(|l| l == label).ok_or_else(|| format!("cannot remove {label}"))?;
                labels.remove(at);
            }
            _ => return Err(format!("karyotype change {change:?} is not +N or -N")),
        }
    }
    if labels.len() != count {
        return Err(format!("karyotype {karyotype:?} lists {} chromosomes, not {count}", labels.len()));
    }
    Ok(labels)
}

/// A structural change the demo draws: ISCN abbreviation (`del`, `dup`, `inv`), chromosome, arm.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: String,
    pub label: String,
    pub arm: String,
}

/// The structural changes of a karyotype string, e.g. `46,XX,del(5)(q)` → one `del` of 5q.
pub fn structural_changes_of(karyotype: &str) -> Result<Vec<Change>, String> {
    karyotype
        .split(',')
        .filter(|part| part.contains('('))
        .map(|part| {
            let bad =
                || format!("structural change {part:?} is not like del(5)(q): del, dup or inv, one chromosome, p or q");
            let (kind, rest) = part.split_once('(').ok_or_else(bad)?;
            let (label, rest) = rest.split_once(")(").ok_or_else(bad)?;
            let arm = rest.strip_suffix(')').ok_or_else(bad)?;
            if !matches!(kind, "del" | "dup" | "inv") || !matches!(arm, "p" | "q") || label.contains(';') {
                return Err(bad());
            }
            Ok(Change { kind: kind.into(), label: label.into(), arm: arm.into() })
        })
        .collect()
}

/// The class drawn with `change`: its profiles cut, repeated or reversed along the length
/// (p-ter first) around the card's centromere position, as train/karyotrain/structural.py edits
/// real crops: a terminal deletion of 40 % of the arm, a tandem duplication or an inversion of
/// its middle part.
fn with_change(class: &ClassStats, change: &Change) -> Result<ClassStats, String> {
    let c = class.centromere.ok_or_else(|| {
        format!("the model card gives no centromere for {} (needed to draw {})", class.label, change.kind)
    })?;
    // the arm as [from, to] in fractions of the length, from its centromere end to its tip
    let (near, tip) = if change.arm == "p" { (c, 0.0) } else { (c, 1.0) };
    let at = |f: f64| near + (tip - near) * f;
    let ordered = |a: f64, b: f64| if a <= b { (a, b) } else { (b, a) };
    // pieces of the original length, in drawing order; a piece with end < start is reversed
    let pieces: Vec<(f64, f64)> = match change.kind.as_str() {
        "del" if change.arm == "p" => vec![(at(0.6), 1.0)],
        "del" => vec![(0.0, at(0.6))],
        "dup" => {
            let (a, b) = ordered(at(0.25), at(0.65));
            vec![(0.0, b), (a, b), (b, 1.0)]
        }
        _ => {
            let (a, b) = ordered(at(0.15), at(0.85));
            vec![(0.0, a), (b, a), (b, 1.0)]
        }
    };
    let total: f64 = pieces.iter().map(|(a, b)| (b - a).abs()).sum();
    let resample = |profile: &[f64]| -> Vec<f64> {
        let n = profile.len();
        (0..n)
            .map(|k| {
                let mut t = (k as f64 + 0.5) / n as f64 * total;
                let mut source = 1.0;
                for &(a, b) in &pieces {
                    let span = (b - a).abs();
                    if t <= span {
                        source = a + (b - a).signum() * t;
                        break;
                    }
                    t -= span;
                }
                let position = (source * n as f64 - 0.5).clamp(0.0, (n - 1) as f64);
                let (i, w) = (position.floor() as usize, position.fract());
                profile[i] * (1.0 - w) + profile[(i + 1).min(n - 1)] * w
            })
            .collect()
    };
    Ok(ClassStats {
        rel_length: class.rel_length * total,
        ink_profile: resample(&class.ink_profile),
        width_profile: resample(&class.width_profile),
        ..class.clone()
    })
}

/// Renders one metaphase: every chromosome straight, at a random angle, none touching.
pub fn render_cell(karyotype: &str, stats: &[ClassStats], seed: u64) -> Result<GrayImage, String> {
    render_cell_touching(karyotype, stats, seed, 0, 0)
}

/// A placed chromosome: centre, clearance radius, angle, length, half-width at its far end.
type Placed = ((f64, f64), f64, f64, f64, f64);

/// Like `render_cell`, but the last `touching` chromosomes each touch one placed earlier, tip
/// to tip at 45° (a V), brought in until they share at most `overlap` pixels (0: as close as
/// they come without sharing one), as chromosomes often lie in a spread.
pub fn render_cell_touching(
    karyotype: &str,
    stats: &[ClassStats],
    seed: u64,
    touching: usize,
    overlap: usize,
) -> Result<GrayImage, String> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut canvas = vec![BACKGROUND; (FRAME_SIZE * FRAME_SIZE) as usize];
    // Which chromosome (1-based) covers each pixel.
    let mut owner = vec![0u16; canvas.len()];
    let mut placed: Vec<Placed> = Vec::new();
    let labels = chromosomes_of(karyotype)?;
    let mut changes = structural_changes_of(karyotype)?;
    let free_from = labels.len().saturating_sub(touching);
    for (index, label) in labels.iter().enumerate() {
        let class = stats
            .iter()
            .find(|s| &s.label == label)
            .ok_or_else(|| format!("the model card has no class statistics for {label}"))?;
        // each change goes to the first chromosome of its label
        let changed = match changes.iter().position(|c| &c.label == label) {
            Some(at) => Some(with_change(class, &changes.remove(at))?),
            None => None,
        };
        let class = changed.as_ref().unwrap_or(class);
        let length = class.rel_length * MEDIAN_LENGTH * rng.random_range(0.95..1.05);
        let radius = length / 2.0 + 8.0;
        let widest = class.width_profile.iter().copied().fold(0.0, f64::max) * length;
        let clear = |placed: &[Placed], (x, y): (f64, f64), except: Option<usize>| {
            let inside = [x, y].iter().all(|&v| v > radius + 4.0 && v < FRAME_SIZE as f64 - radius - 4.0);
            inside
                && placed
                    .iter()
                    .enumerate()
                    .all(|(i, &((px, py), pr, ..))| Some(i) == except || (px - x).hypot(py - y) > pr + radius)
        };
        let touching_spot = |partner: usize| {
            // Turned 45° away from the partner, the start end brought towards the partner's
            // end corner until they overlap: a V whose arms meet at their tips.
            let ((px, py), _, pangle, plength, corner_aside) = placed[partner];
            let angle = pangle + std::f64::consts::FRAC_PI_4;
            let (along, across) = ((pangle.cos(), pangle.sin()), (-pangle.sin(), pangle.cos()));
            let corner = (
                px + along.0 * plength / 2.0 + across.0 * corner_aside,
                py + along.1 * plength / 2.0 + across.1 * corner_aside,
            );
            let (mut t, mut last) = (widest + 6.0, None);
            while t > -widest {
                let start = (corner.0 + angle.cos() * t, corner.1 + angle.sin() * t);
                let centre = (start.0 + angle.cos() * length / 2.0, start.1 + angle.sin() * length / 2.0);
                let covered: Vec<u16> =
                    footprint(class, centre, angle, length).iter().map(|&(i, _)| owner[i]).collect();
                if covered.iter().any(|&o| o != 0 && o as usize != partner + 1) {
                    return None;
                }
                if covered.iter().filter(|&&o| o as usize == partner + 1).count() > overlap {
                    return last.filter(|&(centre, _)| clear(&placed, centre, Some(partner)));
                }
                last = Some((centre, angle));
                t -= 0.5;
            }
            None
        };
        let (centre, angle) = if index >= free_from {
            (0..placed.len()).find_map(touching_spot).ok_or("no room for a touching chromosome")?
        } else {
            let margin = radius + 4.0;
            let centre = (0..2000)
                .map(|_| {
                    (
                        rng.random_range(margin..FRAME_SIZE as f64 - margin),
                        rng.random_range(margin..FRAME_SIZE as f64 - margin),
                    )
                })
                .find(|&c| clear(&placed, c, None))
                .ok_or("no room left in the frame for every chromosome")?;
            (centre, rng.random_range(0.0..std::f64::consts::PI))
        };
        let end_half_width = class.width_profile.last().copied().unwrap_or(0.0) * length;
        placed.push((centre, radius, angle, length, end_half_width));
        for (i, darkness) in footprint(class, centre, angle, length) {
            canvas[i] = (canvas[i] - darkness).max(0.0);
            owner[i] = placed.len() as u16;
        }
    }
    let frame = GrayImage::from_fn(FRAME_SIZE, FRAME_SIZE, |x, y| {
        let noise: f64 = rng.random_range(-4.0..4.0);
        Luma([(canvas[(y * FRAME_SIZE + x) as usize] + noise).round().clamp(0.0, 255.0) as u8])
    });
    Ok(frame)
}

/// The pixels of a straight chromosome with how much each darkens: half-width and darkness
/// follow the class profiles along its length; edges are anti-aliased by pixel coverage.
fn footprint(class: &ClassStats, centre: (f64, f64), angle: f64, length: f64) -> Vec<(usize, f64)> {
    let axis = (angle.cos(), angle.sin());
    let across = (-axis.1, axis.0);
    let reach = length / 2.0 + 2.0;
    let bins = class.ink_profile.len().min(class.width_profile.len());
    let mut pixels = Vec::new();
    if bins == 0 {
        return pixels;
    }
    let (x0, x1) = ((centre.0 - reach).floor().max(0.0) as u32, (centre.0 + reach).ceil() as u32);
    let (y0, y1) = ((centre.1 - reach).floor().max(0.0) as u32, (centre.1 + reach).ceil() as u32);
    for y in y0..=y1.min(FRAME_SIZE - 1) {
        for x in x0..=x1.min(FRAME_SIZE - 1) {
            let (dx, dy) = (x as f64 - centre.0, y as f64 - centre.1);
            let along = dx * axis.0 + dy * axis.1 + length / 2.0;
            let side = (dx * across.0 + dy * across.1).abs();
            if !(0.0..length).contains(&along) {
                continue;
            }
            let bin = (((along / length) * bins as f64) as usize).min(bins - 1);
            let half_width = class.width_profile[bin] * length;
            let coverage = (half_width - side + 0.5).clamp(0.0, 1.0);
            if coverage > 0.0 {
                pixels.push(((y * FRAME_SIZE + x) as usize, coverage * (40.0 + 160.0 * class.ink_profile[bin])));
            }
        }
    }
    pixels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn karyotype_strings_expand_to_chromosomes() {
        assert_eq!(chromosomes_of("46,XY").unwrap().len(), 46);
        let trisomy = chromosomes_of("47,XY,+21").unwrap();
        assert_eq!(trisomy.iter().filter(|l| *l == "21").count(), 3);
        assert_eq!(chromosomes_of("45,X").unwrap().iter().filter(|l| *l == "X").count(), 1);
        assert!(chromosomes_of("46,XY,+21").is_err(), "count must match");
        assert!(chromosomes_of("47,XY,*21").is_err());
        assert_eq!(chromosomes_of("46,XX,del(5)(q)").unwrap().len(), 46);
    }

    fn class(centromere: f64) -> ClassStats {
        ClassStats {
            label: "5".into(),
            rel_length: 1.0,
            aspect: 0.3,
            ink_profile: (0..32).map(|k| k as f64 / 31.0).collect(),
            width_profile: vec![0.1; 32],
            centromere: Some(centromere),
        }
    }

    #[test]
    fn structural_changes_edit_the_drawn_profile() {
        let change = |s: &str| structural_changes_of(&format!("46,XX,{s}")).unwrap().remove(0);
        assert_eq!(change("del(5)(q)"), Change { kind: "del".into(), label: "5".into(), arm: "q".into() });
        assert!(structural_changes_of("46,XX,t(4;11)(q;q)").is_err());
        assert!(structural_changes_of("46,XX,del(5)(r)").is_err());
        // a q deletion keeps p-ter and shortens by 40 % of the q arm; the ink ramp stays rising
        let del_q = with_change(&class(0.3), &change("del(5)(q)")).unwrap();
        assert!((del_q.rel_length - (1.0 - 0.4 * 0.7)).abs() < 1e-9);
        assert!(del_q.ink_profile[0] < 0.05 && del_q.ink_profile.windows(2).all(|w| w[1] >= w[0]));
        // a p deletion drops the top: the profile starts part-way up the ramp
        let del_p = with_change(&class(0.3), &change("del(5)(p)")).unwrap();
        assert!((del_p.rel_length - (1.0 - 0.4 * 0.3)).abs() < 1e-9 && del_p.ink_profile[0] > 0.1);
        // an inversion keeps the length and breaks the ramp's order; a duplication lengthens
        let inv = with_change(&class(0.3), &change("inv(5)(q)")).unwrap();
        assert!((inv.rel_length - 1.0).abs() < 1e-9 && inv.ink_profile.windows(2).any(|w| w[1] < w[0]));
        let dup = with_change(&class(0.3), &change("dup(5)(q)")).unwrap();
        assert!((dup.rel_length - (1.0 + 0.4 * 0.7)).abs() < 1e-9);
        assert!(with_change(&ClassStats { centromere: None, ..class(0.3) }, &change("del(5)(q)")).is_err());
    }
}
