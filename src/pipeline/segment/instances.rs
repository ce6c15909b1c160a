//! Chromosome instances cut from a segmentation network's maps (karyoscreen-seg-v1,
//! docs/segmentation.md), at map resolution, then brought back to frame pixels as the same
//! [`Segmentation`] the classic segmenter gives:
//!
//! - `fg` = chromosome logit > 0; `overlap` = fg and overlap logit > 0; `core` = fg, not overlap,
//!   core logit > `core_logit`;
//! - markers: 8-connected core components of at least `min_core_cells` cells;
//! - every fg cell outside the overlap goes to a marker by flooding through fg (nearest by
//!   8-connected steps; at equal steps the cell of higher core logit first, then the stronger
//!   front);
//! - each overlap component goes to the instances beside it: with 2, both; with 3, the two whose
//!   directions from the overlap are most opposite join into one and the third shares it too;
//!   with 4, arms are paired across the crossing (the pairing whose directions are most
//!   opposite) and each pair becomes one instance: a crossing gives two chromosomes that both
//!   hold the crossing cells; with more than 4 it is no crossing but a cluster, left unresolved
//!   (its cells go to nobody);
//! - fg reached by no marker forms its own instances; any instance under `min_object_pixels`
//!   frame pixels is debris.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use image::GrayImage;

use super::{cut_object, BBox, Segmentation};
use crate::pipeline::preprocess::{border_median, Polarity};

/// The network's three logit maps over the meaningful cells (`width × height`, row-major).
#[derive(Debug, Clone)]
pub struct Maps {
    pub width: usize,
    pub height: usize,
    pub chromosome: Vec<f32>,
    pub core: Vec<f32>,
    pub overlap: Vec<f32>,
}

#[derive(Debug, Clone, Copy)]
pub struct InstanceParams {
    /// Core components with fewer cells are not markers.
    pub min_core_cells: usize,
    /// Instances covering fewer frame pixels are debris.
    pub min_object_pixels: usize,
    /// Core where the core logit is above this.
    pub core_logit: f32,
    /// Frame pixels per map cell side (stride × block-mean factor).
    pub cell: u32,
    /// The frame's size, which the cells' blocks are clipped to.
    pub frame: (u32, u32),
}

/// Instances at map resolution.
#[derive(Debug, Clone)]
pub struct Cut {
    pub width: usize,
    pub height: usize,
    /// Cells that are chromosome: instances and debris alike.
    pub fg: Vec<bool>,
    /// Each instance's cells (ascending map indices); crossing cells are in every instance
    /// sharing them. Instances in raster order of their first cell.
    pub instances: Vec<Vec<usize>>,
    pub debris: usize,
    /// Overlap components beside more than 4 instances: clusters, not crossings.
    pub unresolved: Vec<Vec<usize>>,
}

/// The 8-neighbours of cell `i` on a `w × h` grid.
fn neighbours(i: usize, w: usize, h: usize) -> impl Iterator<Item = usize> {
    let (x, y) = ((i % w) as isize, (i / w) as isize);
    (-1isize..=1).flat_map(move |dy| (-1isize..=1).map(move |dx| (x + dx, y + dy))).filter_map(move |(nx, ny)| {
        let inside = (nx, ny) != (x, y) && nx >= 0 && ny >= 0 && (nx as usize) < w && (ny as usize) < h;
        inside.then(|| ny as usize * w + nx as usize)
    })
}

/// 8-connected components of the cells where `inside` holds, each as its ascending cells, in
/// raster order of their first cell.
pub(super) fn components(w: usize, h: usize, inside: impl Fn(usize) -> bool) -> Vec<Vec<usize>> {
    let mut seen = vec![false; w * h];
    let mut out = Vec::new();
    for start in 0..w * h {
        if seen[start] || !inside(start) {
            continue;
        }
        seen[start] = true;
        let (mut cells, mut stack) = (Vec::new(), vec![start]);
        while let Some(i) = stack.pop() {
            cells.push(i);
            for j in neighbours(i, w, h) {
                if !seen[j] && inside(j) {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        cells.sort_unstable();
        out.push(cells);
    }
    out
}

/// A key that orders f32 as `total_cmp` does.
fn ordered(v: f32) -> i32 {
    let bits = v.to_bits() as i32;
    bits ^ (((bits >> 31) as u32) >> 1) as i32
}

fn find(parent: &mut [usize], mut a: usize) -> usize {
    while parent[a] != a {
        parent[a] = parent[parent[a]];
        a = parent[a];
    }
    a
}

/// Frame pixels covered by cell `i`'s block.
fn block_pixels(i: usize, w: usize, p: &InstanceParams) -> usize {
    let (c, (fw, fh)) = (p.cell as usize, (p.frame.0 as usize, p.frame.1 as usize));
    let (x, y) = (i % w * c, i / w * c);
    (x + c).min(fw).saturating_sub(x) * (y + c).min(fh).saturating_sub(y)
}

pub fn cut(maps: &Maps, params: &InstanceParams) -> Cut {
    let (w, h) = (maps.width, maps.height);
    let n = w * h;
    let fg: Vec<bool> = maps.chromosome.iter().map(|&v| v > 0.0).collect();
    let over: Vec<bool> = (0..n).map(|i| fg[i] && maps.overlap[i] > 0.0).collect();
    let core: Vec<bool> = (0..n).map(|i| fg[i] && !over[i] && maps.core[i] > params.core_logit).collect();

    // Markers, numbered from 1; 0 = no instance.
    let mut label = vec![0u32; n];
    let mut markers = 0u32;
    let mut heap = BinaryHeap::new();
    for cells in components(w, h, |i| core[i]).into_iter().filter(|c| c.len() >= params.min_core_cells) {
        markers += 1;
        for &i in &cells {
            label[i] = markers;
        }
        for &i in &cells {
            for j in neighbours(i, w, h).filter(|&j| fg[j] && !over[j] && label[j] == 0) {
                heap.push((Reverse(1u32), ordered(maps.core[j]), ordered(maps.core[i]), Reverse(j), Reverse(markers)));
            }
        }
    }
    // Flood: nearest by steps, then the higher core logit, then the stronger front.
    while let Some((Reverse(steps), _, _, Reverse(i), Reverse(marker))) = heap.pop() {
        if label[i] != 0 {
            continue;
        }
        label[i] = marker;
        for j in neighbours(i, w, h).filter(|&j| fg[j] && !over[j] && label[j] == 0) {
            heap.push((Reverse(steps + 1), ordered(maps.core[j]), ordered(maps.core[i]), Reverse(j), Reverse(marker)));
        }
    }
    let mut cells_of: Vec<Vec<usize>> = vec![Vec::new(); markers as usize + 1];
    for (i, &l) in label.iter().enumerate() {
        cells_of[l as usize].push(i);
    }

    // Overlap components: who shares each, and which arms join across it.
    let mut parent: Vec<usize> = (0..=markers as usize).collect();
    let mut crossings: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
    let mut lone_overlap = vec![false; n];
    let mut unresolved = Vec::new();
    for cells in components(w, h, |i| over[i]) {
        let mut touching: Vec<usize> = cells
            .iter()
            .flat_map(|&i| neighbours(i, w, h))
            .filter(|&j| !over[j] && label[j] != 0)
            .map(|j| label[j] as usize)
            .collect();
        touching.sort_unstable();
        touching.dedup();
        if touching.is_empty() {
            cells.iter().for_each(|&i| lone_overlap[i] = true);
            continue;
        }
        if touching.len() > 4 {
            unresolved.push(cells);
            continue;
        }
        if touching.len() >= 3 {
            for (a, b) in pair_arms(&cells, &touching, &cells_of, w) {
                let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                parent[ra.max(rb)] = ra.min(rb);
            }
        }
        crossings.push((cells, touching));
    }

    // Instances: markers joined across crossings, plus the crossings' cells.
    let mut instance_cells: Vec<Vec<usize>> = vec![Vec::new(); markers as usize + 1];
    for (m, cells) in cells_of.into_iter().enumerate().skip(1) {
        instance_cells[find(&mut parent, m)].extend(cells);
    }
    for (cells, touching) in &crossings {
        let mut roots: Vec<usize> = touching.iter().map(|&t| find(&mut parent, t)).collect();
        roots.sort_unstable();
        roots.dedup();
        for r in roots {
            instance_cells[r].extend_from_slice(cells);
        }
    }
    let mut instances: Vec<Vec<usize>> = instance_cells.into_iter().skip(1).filter(|c| !c.is_empty()).collect();
    // What no marker reached.
    instances.extend(components(w, h, |i| fg[i] && label[i] == 0 && (!over[i] || lone_overlap[i])));
    let mut debris = 0;
    instances.retain_mut(|cells| {
        cells.sort_unstable();
        cells.dedup();
        let pixels: usize = cells.iter().map(|&i| block_pixels(i, w, params)).sum();
        let keep = pixels >= params.min_object_pixels;
        debris += usize::from(!keep);
        keep
    });
    instances.sort_by_key(|cells| cells[0]);
    Cut { width: w, height: h, fg, instances, debris, unresolved }
}

/// The arms to join across one overlap component touched by 3 or 4 instances: with 3, the most
/// opposite pair; with 4, the pairing of arms whose directions from the overlap's centroid are
/// most opposite.
fn pair_arms(overlap: &[usize], touching: &[usize], cells_of: &[Vec<usize>], w: usize) -> Vec<(usize, usize)> {
    let centre = |cells: &mut dyn Iterator<Item = usize>| {
        let (mut sx, mut sy, mut n) = (0f64, 0f64, 0f64);
        for i in cells {
            (sx, sy, n) = (sx + (i % w) as f64, sy + (i / w) as f64, n + 1.0);
        }
        (sx / n.max(1.0), sy / n.max(1.0))
    };
    let (cx, cy) = centre(&mut overlap.iter().copied());
    // Each arm's direction from the cells near the crossing (a long or bent chromosome's far end
    // says little about where it leaves the crossing).
    let (x0, x1) = overlap.iter().map(|&i| i % w).fold((usize::MAX, 0), |(a, b), x| (a.min(x), b.max(x)));
    let (y0, y1) = overlap.iter().map(|&i| i / w).fold((usize::MAX, 0), |(a, b), y| (a.min(y), b.max(y)));
    let reach = (x1 - x0).max(y1 - y0).max(3) + 1;
    let near = |i: &usize| {
        let (x, y) = (i % w, i / w);
        x + reach >= x0 && x <= x1 + reach && y + reach >= y0 && y <= y1 + reach
    };
    let directions: Vec<(f64, f64)> = touching
        .iter()
        .map(|&t| {
            let (ax, ay) = centre(&mut cells_of[t].iter().filter(|i| near(i)).copied());
            let (dx, dy) = (ax - cx, ay - cy);
            let norm = (dx * dx + dy * dy).sqrt().max(1e-9);
            (dx / norm, dy / norm)
        })
        .collect();
    let cos = |a: usize, b: usize| directions[a].0 * directions[b].0 + directions[a].1 * directions[b].1;
    let most_opposite = |free: &[usize]| {
        let mut best = (f64::INFINITY, 0, 0);
        for (k, &a) in free.iter().enumerate() {
            for &b in &free[k + 1..] {
                if cos(a, b) < best.0 {
                    best = (cos(a, b), a, b);
                }
            }
        }
        (best.1, best.2)
    };
    let pairs: Vec<(usize, usize)> = if touching.len() == 4 {
        let pairings = [[(0, 1), (2, 3)], [(0, 2), (1, 3)], [(0, 3), (1, 2)]];
        let score = |p: &[(usize, usize); 2]| cos(p[0].0, p[0].1) + cos(p[1].0, p[1].1);
        let best = pairings.iter().min_by(|a, b| score(a).total_cmp(&score(b))).expect("three pairings");
        best.to_vec()
    } else {
        vec![most_opposite(&(0..touching.len()).collect::<Vec<_>>())]
    };
    pairs.into_iter().map(|(a, b)| (touching[a], touching[b])).collect()
}

/// The instances on the frame: each instance's cells become `cell × cell` blocks of frame
/// pixels (its mask, box and area); its crop shows every other instance's and the debris'
/// blocks painted with the frame's background.
pub fn segmentation(frame: &GrayImage, polarity: Polarity, cut: &Cut, cell: u32) -> Segmentation {
    let (fw, fh) = frame.dimensions();
    let background = border_median(fw as usize, fh as usize, frame.as_raw());
    let w = cut.width;
    let cell_of = |x: u32, y: u32| (y / cell) as usize * w + (x / cell) as usize;
    let taken = |x: u32, y: u32| cut.fg[cell_of(x, y)];
    // The cells' box in cells, and in frame pixels (clipped to the frame).
    let boxes = |cells: &[usize]| {
        let (cx0, cx1) = cells.iter().map(|&i| i % w).fold((usize::MAX, 0), |(a, b), x| (a.min(x), b.max(x)));
        let (cy0, cy1) = (cells[0] / w, cells[cells.len() - 1] / w);
        let pixels = [
            cx0 as u32 * cell,
            cy0 as u32 * cell,
            ((cx1 as u32 + 1) * cell).min(fw) - 1,
            ((cy1 as u32 + 1) * cell).min(fh) - 1,
        ];
        ([cx0, cy0, cx1, cy1], pixels)
    };
    let mut objects = Vec::with_capacity(cut.instances.len());
    for cells in &cut.instances {
        let ([cx0, cy0, cx1, cy1], search) = boxes(cells);
        let bw = cx1 - cx0 + 1;
        let mut mine = vec![false; bw * (cy1 - cy0 + 1)];
        for &i in cells {
            mine[(i / w - cy0) * bw + i % w - cx0] = true;
        }
        let is_mine = |x: u32, y: u32| {
            let (cx, cy) = ((x / cell) as usize, (y / cell) as usize);
            (cx0..=cx1).contains(&cx) && (cy0..=cy1).contains(&cy) && mine[(cy - cy0) * bw + cx - cx0]
        };
        objects.extend(cut_object(frame, background, search, is_mine, taken, None));
    }
    let unresolved_boxes: Vec<BBox> = cut
        .unresolved
        .iter()
        .map(|cells| {
            let (_, [x0, y0, x1, y1]) = boxes(cells);
            BBox { x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1 }
        })
        .collect();
    Segmentation {
        polarity,
        objects,
        debris: cut.debris,
        nuclei: 0,
        unresolved: unresolved_boxes.len(),
        unresolved_boxes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Maps from a picture: `.` background, `#` chromosome, `c` chromosome + core,
    /// `x` chromosome + overlap.
    fn maps(rows: &[&str]) -> Maps {
        let (w, h) = (rows[0].len(), rows.len());
        let cells: Vec<char> = rows.iter().flat_map(|r| r.chars()).collect();
        assert_eq!(cells.len(), w * h);
        let logit = |yes: bool| if yes { 2.0 } else { -2.0 };
        Maps {
            width: w,
            height: h,
            chromosome: cells.iter().map(|&c| logit(c != '.')).collect(),
            core: cells.iter().map(|&c| logit(c == 'c')).collect(),
            overlap: cells.iter().map(|&c| logit(c == 'x')).collect(),
        }
    }

    fn params(m: &Maps, cell: u32) -> InstanceParams {
        InstanceParams {
            min_core_cells: 3,
            min_object_pixels: 40,
            core_logit: 0.0,
            cell,
            frame: (m.width as u32 * cell, m.height as u32 * cell),
        }
    }

    /// Each instance drawn as its number (1-based) on the map; `*` where two share a cell.
    fn picture(cut: &Cut) -> Vec<String> {
        let mut out = vec![vec!['.'; cut.width]; cut.height];
        for (k, cells) in cut.instances.iter().enumerate() {
            for &i in cells {
                let c = &mut out[i / cut.width][i % cut.width];
                *c = if *c == '.' { char::from(b'1' + k as u8) } else { '*' };
            }
        }
        out.into_iter().map(String::from_iter).collect()
    }

    #[test]
    fn two_touching_rods_separate() {
        let m = maps(&[
            "..........",
            ".####.....",
            ".#cc#.....",
            ".#cc#.....",
            ".#cc#.....",
            ".#cc##....",
            ".#####....",
            "..#cc#....",
            "..#cc#....",
            "..#cc#....",
            "..####....",
            "..........",
        ]);
        let cut = cut(&m, &params(&m, 4));
        assert_eq!(cut.instances.len(), 2, "{:#?}", picture(&cut));
        assert_eq!(cut.debris, 0);
        let p = picture(&cut);
        assert_eq!(p[2], ".1111.....");
        assert_eq!(p[9], "..2222....");
        // every chromosome cell went to one of them, and none to both
        assert_eq!(
            cut.instances.iter().map(Vec::len).sum::<usize>(),
            m.chromosome.iter().filter(|&&v| v > 0.0).count()
        );
    }

    #[test]
    fn a_weak_core_bridge_joins_two_rods_only_under_the_core_threshold() {
        let mut m = maps(&[
            "..........",
            ".######...",
            ".#cccc#...",
            ".#cccc#...",
            ".##cc##...",
            "..#cc#....",
            ".##cc##...",
            ".#cccc#...",
            ".#cccc#...",
            ".######...",
            "..........",
        ]);
        // the bridge (rows 4-6, columns 3-4): core, but less sure than the rods' middles
        for (y, x) in (4..=6).flat_map(|y| (3..=4).map(move |x| (y, x))) {
            m.core[y * m.width + x] = 0.5;
        }
        let loose = InstanceParams { min_core_cells: 2, ..params(&m, 4) };
        assert_eq!(cut(&m, &loose).instances.len(), 1, "{:#?}", picture(&cut(&m, &loose)));
        let strict = InstanceParams { core_logit: 1.0, ..loose };
        let two = cut(&m, &strict);
        assert_eq!(two.instances.len(), 2, "{:#?}", picture(&two));
    }

    #[test]
    fn an_x_crossing_gives_two_objects_sharing_the_crossing() {
        let m = maps(&[
            ".............",
            "......#......",
            ".....#c#.....",
            ".....#c#.....",
            ".....#c#.....",
            ".####.x.####.",
            ".#cccxxxccc#.",
            ".####.x.####.",
            ".....#c#.....",
            ".....#c#.....",
            ".....#c#.....",
            "......#......",
            ".............",
        ]);
        let cut = cut(&m, &params(&m, 4));
        let p = picture(&cut);
        assert_eq!(cut.instances.len(), 2, "{p:#?}");
        let crossing: Vec<usize> = (0..m.width * m.height).filter(|&i| m.overlap[i] > 0.0).collect();
        for cells in &cut.instances {
            assert!(crossing.iter().all(|i| cells.contains(i)), "{p:#?}");
        }
        // one vertical, one horizontal
        assert_eq!(p[2], ".....111.....", "{p:#?}");
        assert_eq!(p[6], ".2222***2222.", "{p:#?}");
        assert_eq!(p[10], ".....111.....", "{p:#?}");
    }

    #[test]
    fn three_arms_join_the_most_opposite_pair_and_share_with_the_third() {
        let m = maps(&[
            ".............",
            "......#......",
            ".....#c#.....",
            ".....#c#.....",
            ".....#c#.....",
            "......x......",
            ".#cccxxxccc#.",
            "......x......",
            ".............",
        ]);
        let cut = cut(&m, &params(&m, 4));
        let p = picture(&cut);
        assert_eq!(cut.instances.len(), 2, "{p:#?}");
        assert_eq!(p[6], ".2222***2222.", "left and right arms are one: {p:#?}");
        assert_eq!(p[7], "......*......", "{p:#?}");
    }

    #[test]
    fn an_overlap_beside_more_than_four_instances_is_an_unresolved_cluster() {
        let m = maps(&["...........", ".c.c.c.c.c.", ".c.c.c.c.c.", ".c.c.c.c.c.", "xxxxxxxxxxx", "..........."]);
        let cut = cut(&m, &params(&m, 4));
        assert_eq!(cut.instances.len(), 5);
        assert!(cut.instances.iter().all(|cells| cells.len() == 3), "{:#?}", picture(&cut));
        assert_eq!(cut.unresolved, [(44..55).collect::<Vec<usize>>()]);
        let frame = GrayImage::from_pixel(44, 24, image::Luma([200]));
        let seg = segmentation(&frame, Polarity::DarkOnLight, &cut, 4);
        assert_eq!((seg.objects.len(), seg.unresolved), (5, 1));
        let b = seg.unresolved_boxes[0];
        assert_eq!((b.x, b.y, b.width, b.height), (0, 16, 44, 4));
    }

    #[test]
    fn a_lone_speck_is_debris_and_unseeded_blobs_stand_alone() {
        let m = maps(&[
            "............",
            ".#c.........",
            "............",
            "......####..",
            "......####..",
            "......####..",
            "............",
        ]);
        // the speck: 2 cells (32 px) without a marker; the blob: 12 cells (192 px), no core
        let cut = cut(&m, &params(&m, 4));
        assert_eq!(cut.debris, 1);
        assert_eq!(cut.instances.len(), 1);
        assert_eq!(cut.instances[0].len(), 12);
    }

    #[test]
    fn instances_become_objects_with_masks_and_crops_in_frame_pixels() {
        let m = maps(&[
            "..........",
            ".####.....",
            ".#cc#.....",
            ".#cc#.....",
            ".#cc#.....",
            ".#cc##....",
            ".#####....",
            "..#cc#....",
            "..#cc#....",
            "..#cc#....",
            "..####....",
            "..........",
        ]);
        // a frame 2 cells of 4 px narrower than the maps: the right column of blocks is clipped
        let mut p = params(&m, 4);
        p.frame = (38, 48);
        let cut = cut(&m, &p);
        let frame = GrayImage::from_fn(38, 48, |x, y| {
            image::Luma([if m.chromosome[(y / 4 * 10 + x / 4) as usize] > 0.0 { 40 } else { 220 }])
        });
        let seg = segmentation(&frame, Polarity::DarkOnLight, &cut, 4);
        assert_eq!(seg.objects.len(), 2);
        assert_eq!((seg.nuclei, seg.unresolved, seg.debris), (0, 0, 0));
        for (o, cells) in seg.objects.iter().zip(&cut.instances) {
            assert_eq!(o.area, cells.len() * 16);
            assert_eq!(o.mask.len(), (o.bbox.width * o.bbox.height) as usize);
            assert_eq!(o.mask.iter().filter(|&&v| v).count(), o.area);
            // the other rod's blocks are painted with the background
            let dark = o.crop.pixels().filter(|p| p[0] < 128).count();
            assert_eq!(dark, o.area, "only its own ink is left in its crop");
        }
        assert_eq!((seg.objects[0].bbox.x, seg.objects[0].bbox.y), (4, 4));
        assert_eq!((seg.objects[0].bbox.width, seg.objects[0].bbox.height), (20, 24));
    }
}
