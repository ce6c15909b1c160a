//! From per-object predictions to the cell's karyotype: a consistent assignment of classes
//! (each class holds a pair, plus one extra slot at a cost so a trisomy can still show), then
//! counts, sex chromosomes and an ISCN-style string.

use pathfinding::prelude::{kuhn_munkres, Matrix};
use serde::{Deserialize, Serialize};

use crate::integrity::card::{CellAssignment, Prediction};

/// One classified object of the cell (as recorded: the review station reads it back).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    /// Index into the card's identity labels.
    pub class: usize,
    pub label: String,
    /// The model's probability for the assigned class.
    pub confidence: f32,
    /// The class the model alone preferred, when the cell step changed it.
    pub argmax: usize,
    /// The structure head's type when the object is flagged (1 − P(normal) above the card's
    /// threshold), else `normal`.
    pub structure: String,
    /// The probability of `structure`: 1 − P(normal) when flagged, P(normal) when not.
    pub structure_confidence: f32,
    /// For a flagged object: the arm (`p`/`q`) of the change's first breakpoint, and that
    /// breakpoint as a fraction of the length from p-ter, when the model has those heads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<f32>,
}

impl Call {
    pub fn is_flagged(&self) -> bool {
        self.structure != "normal"
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Karyotype {
    pub count: usize,
    pub sex_chromosomes: String,
    /// ISCN-style, e.g. `47,XY,+21`.
    pub iscn: String,
    /// Autosome labels whose copy number differs from two, with that number.
    pub numerical: Vec<(String, usize)>,
    /// Structural changes ISCN-style with the arm, e.g. `del(5)(p)`, `t(4;11)(q;q)`.
    pub structural: Vec<String>,
}

/// One place in the cell's expected karyotype.
struct Slot {
    /// Classes it accepts (two for the second sex chromosome: X or Y).
    classes: Vec<usize>,
    /// Cost of putting an object here beyond its likelihood (an extra copy).
    extra: f64,
    /// Cost of leaving it empty (a missing copy).
    missing: f64,
}

/// The expected karyotype as slots: two of each autosome, one X and one X-or-Y, each with a
/// cost when empty; plus one extra slot per class at a cost. A numerical change must then
/// be worth its cost in likelihood, whether a gain or a loss, so one misread autosome cannot
/// turn into "−18 and an extra Y".
fn slots(labels: &[String], rules: &CellAssignment) -> Vec<Slot> {
    let missing = rules.missing_slot_cost.unwrap_or(rules.extra_slot_cost);
    let find = |name: &str| labels.iter().position(|l| l == name);
    let (x, y) = (find("X"), find("Y"));
    let mut slots = Vec::new();
    let regular = |classes: Vec<usize>| Slot { classes, extra: 0.0, missing };
    for (class, label) in labels.iter().enumerate() {
        if Some(class) != x && Some(class) != y {
            let copies = rules.capacity.get(label).copied().unwrap_or(2);
            slots.extend((0..copies).map(|_| regular(vec![class])));
        }
        slots.push(Slot { classes: vec![class], extra: rules.extra_slot_cost, missing: 0.0 });
    }
    if let Some(x) = x {
        slots.push(regular(vec![x]));
        slots.push(regular([Some(x), y].into_iter().flatten().collect()));
    }
    slots
}

/// Bounds the swap rounds of a pathological cell; each round lowers the cost, so few are needed.
const MAX_SWAP_ROUNDS: usize = 64;

/// The pairing term after the slots (the trainer's `metrics.pair_swaps`, the same search): swap
/// the classes of two objects while that lowers Σ −ln p + `weight` × Σ, over classes held by
/// exactly two objects, of (1 − cosine of their homolog vectors). A swap keeps every class's
/// count, so the karyotype's numbers stay the slots'; it only decides which object is which.
/// Best swap first; among equals the first (i, j) in order.
fn pair_swaps(predictions: &[Prediction], classes: &mut [usize], n_classes: usize, weight: f64) {
    let n = classes.len();
    let nll = |i: usize, c: usize| -(predictions[i].identity[c].max(1e-12) as f64).ln();
    // in f64, as the trainer computes it
    let cosine = |a: usize, b: usize| -> f64 {
        predictions[a].homolog.iter().zip(&predictions[b].homolog).map(|(&x, &y)| x as f64 * y as f64).sum()
    };
    for _ in 0..MAX_SWAP_ROUNDS {
        // partner[i]: the other object of i's class when the class holds exactly two
        let mut members = vec![Vec::new(); n_classes];
        for (k, &c) in classes.iter().enumerate() {
            members[c].push(k);
        }
        let partner: Vec<Option<usize>> = (0..n)
            .map(|i| match members[classes[i]][..] {
                [a, b] => Some(if a == i { b } else { a }),
                _ => None,
            })
            .collect();
        // i taking j's place in its pair: w(1 − cos(i, partner)) becomes w(1 − cos(j, partner))
        let gain = |i: usize, j: usize| partner[i].map_or(0.0, |p| weight * (cosine(i, p) - cosine(j, p)));
        let mut best = (-1e-9, None);
        for i in 0..n {
            for j in i + 1..n {
                let (a, b) = (classes[i], classes[j]);
                if a == b {
                    continue;
                }
                let delta = nll(i, b) + nll(j, a) - nll(i, a) - nll(j, b) + gain(i, j) + gain(j, i);
                if delta < best.0 {
                    best = (delta, Some((i, j)));
                }
            }
        }
        let Some((i, j)) = best.1 else { break };
        classes.swap(i, j);
    }
}

/// Assigns each object a class, consistent across the cell (a minimum-cost assignment of
/// objects to slots, −ln p per object). Objects beyond every slot keep their argmax. An object
/// whose 1 − P(normal) exceeds `structure_threshold` is flagged with its likeliest abnormal type.
pub fn assign(
    predictions: &[Prediction],
    labels: &[String],
    structure_labels: &[String],
    rules: &CellAssignment,
    structure_threshold: f32,
) -> Vec<Call> {
    let slots = slots(labels, rules);
    let n = predictions.len();
    let cost = |i: usize, slot: &Slot| -> (f64, usize) {
        slot.classes
            .iter()
            .map(|&c| (-(predictions[i].identity[c].max(1e-12) as f64).ln() + slot.extra, c))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap_or((f64::MAX, 0))
    };
    let classes: Vec<usize> = if n == 0 || n > slots.len() {
        predictions.iter().map(|p| argmax(&p.identity)).collect()
    } else {
        // Square problem: rows past the objects are "nobody", who fill a slot at its missing
        // cost. kuhn_munkres maximises integer weights: use −cost in micro-nats.
        let weights = Matrix::from_fn(slots.len(), slots.len(), |(i, j)| {
            let c = if i < n { cost(i, &slots[j]).0 } else { slots[j].missing };
            -(c * 1e6).round() as i64
        });
        let (_, assignment) = kuhn_munkres(&weights);
        let mut classes: Vec<usize> = (0..n).map(|i| cost(i, &slots[assignment[i]]).1).collect();
        let dim = predictions[0].homolog.len();
        match rules.homolog_weight {
            Some(weight) if weight > 0.0 && dim > 0 && predictions.iter().all(|p| p.homolog.len() == dim) => {
                pair_swaps(predictions, &mut classes, labels.len(), weight)
            }
            _ => {}
        }
        classes
    };
    predictions
        .iter()
        .zip(classes)
        .map(|(p, class)| {
            let normal = p.structure.first().copied().unwrap_or(1.0);
            let abnormal = 1.0 - normal;
            let flagged = abnormal > structure_threshold && p.structure.len() > 1;
            let (structure, structure_confidence) = if flagged {
                (structure_labels[1 + argmax(&p.structure[1..])].clone(), abnormal)
            } else {
                (structure_labels.first().cloned().unwrap_or_else(|| "normal".into()), normal)
            };
            let arm = p.likelier_arm().filter(|_| flagged).map(String::from);
            Call {
                class,
                label: labels[class].clone(),
                confidence: p.identity[class],
                argmax: argmax(&p.identity),
                structure,
                structure_confidence,
                arm,
                position: p.position.filter(|_| flagged),
            }
        })
        .collect()
}

pub fn argmax(values: &[f32]) -> usize {
    values.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)
}

/// ISCN abbreviations for the structure head's classes.
pub fn iscn_abbreviation(structure: &str) -> &str {
    match structure {
        "deletion" => "del",
        "duplication" => "dup",
        "inversion" => "inv",
        "translocation" => "t",
        other => other,
    }
}

/// ISCN order of chromosomes: sex chromosomes first, then autosomes by number.
fn iscn_order(label: &str) -> usize {
    match label {
        "X" => 0,
        "Y" => 1,
        n => 2 + n.parse::<usize>().unwrap_or(usize::MAX - 2),
    }
}

/// The structural flags of a cell, ISCN-style in ISCN order: `del(5)(p)` for one object;
/// flagged translocation derivatives paired in order, `t(4;11)(q;q)`, a lone one `t(4;?)(q;?)`.
fn structural_flags(calls: &[Call]) -> Vec<(usize, String)> {
    let mut flagged: Vec<&Call> = calls.iter().filter(|c| c.is_flagged()).collect();
    flagged.sort_by_key(|c| iscn_order(&c.label));
    let arm = |c: &Call| c.arm.clone().unwrap_or_else(|| "?".into());
    let (translocations, others): (Vec<&Call>, Vec<&Call>) =
        flagged.into_iter().partition(|c| c.structure == "translocation");
    let mut flags: Vec<(usize, String)> = others
        .iter()
        .map(|c| (iscn_order(&c.label), format!("{}({})({})", iscn_abbreviation(&c.structure), c.label, arm(c))))
        .collect();
    for pair in translocations.chunks(2) {
        let flag = match pair {
            [a, b] => format!("t({};{})({};{})", a.label, b.label, arm(a), arm(b)),
            [a] => format!("t({};?)({};?)", a.label, arm(a)),
            _ => unreachable!("chunks(2) yields one or two"),
        };
        flags.push((iscn_order(&pair[0].label), flag));
    }
    flags.sort_by_key(|(order, _)| *order);
    flags
}

/// Builds the karyotype from the cell's calls. Labels are the card's (`1`…`22`, `X`, `Y`).
pub fn karyotype(calls: &[Call], labels: &[String]) -> Karyotype {
    let mut copies = vec![0usize; labels.len()];
    for call in calls {
        copies[call.class] += 1;
    }
    let count_of = |name: &str| labels.iter().position(|l| l == name).map_or(0, |i| copies[i]);
    let sex_chromosomes = "X".repeat(count_of("X")) + &"Y".repeat(count_of("Y"));
    // (ISCN order, 0 numerical / 1 structural, text): numerical before structural per chromosome
    let mut changes: Vec<(usize, u8, String)> = Vec::new();
    let mut numerical = Vec::new();
    for (class, label) in labels.iter().enumerate() {
        if label == "X" || label == "Y" {
            continue;
        }
        let n = copies[class];
        if n != 2 {
            numerical.push((label.clone(), n));
        }
        let sign = if n > 2 { "+" } else { "-" };
        changes.extend(std::iter::repeat_n((iscn_order(label), 0, format!("{sign}{label}")), n.abs_diff(2)));
    }
    let structural = structural_flags(calls);
    changes.extend(structural.iter().map(|(order, flag)| (*order, 1, flag.clone())));
    changes.sort_by_key(|(order, kind, _)| (*order, *kind));
    let mut parts =
        vec![calls.len().to_string(), if sex_chromosomes.is_empty() { "?".into() } else { sex_chromosomes.clone() }];
    parts.extend(changes.into_iter().map(|(_, _, text)| text));
    Karyotype {
        count: calls.len(),
        sex_chromosomes,
        iscn: parts.join(","),
        numerical,
        structural: structural.into_iter().map(|(_, flag)| flag).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        (1..=22).map(|i| i.to_string()).chain(["X".into(), "Y".into()]).collect()
    }

    fn structure_labels() -> Vec<String> {
        ["normal", "deletion", "duplication", "inversion", "translocation"].map(String::from).to_vec()
    }

    fn rules() -> CellAssignment {
        let mut capacity: std::collections::BTreeMap<String, usize> = labels().into_iter().map(|l| (l, 2)).collect();
        capacity.insert("Y".into(), 1);
        CellAssignment { capacity, extra_slot_cost: 4.0, missing_slot_cost: None, homolog_weight: None }
    }

    /// A confident prediction for `class`, with `runner_up` as the second choice.
    fn prediction(class: usize, p: f32, runner_up: usize) -> Prediction {
        let mut identity = vec![(1.0 - p - 0.05) / 22.0; 24];
        identity[class] = p;
        identity[runner_up] = 0.05;
        Prediction {
            identity,
            structure: vec![0.9, 0.025, 0.025, 0.025, 0.025],
            arm: vec![0.5, 0.5],
            position: Some(0.5),
            homolog: Vec::new(),
        }
    }

    /// A normal female cell whose homolog vectors put each chromosome's two copies together
    /// (class c on axis c of a 24-dim space), with the second copy of chromosome 1 and the first
    /// of chromosome 2 each a little likelier to be the other one.
    fn cell_with_crossed_pair() -> Vec<Prediction> {
        let mut cell = cell(&[22, 22], &[]);
        for (k, p) in cell.iter_mut().enumerate() {
            p.homolog = (0..24).map(|axis| if axis == k / 2 { 1.0 } else { 0.0 }).collect();
        }
        for (crop, (truth, other)) in [(1, (0, 1)), (2, (1, 0))] {
            cell[crop].identity[truth] = 0.40;
            cell[crop].identity[other] = 0.45;
        }
        cell
    }

    fn classes(predictions: &[Prediction], homolog_weight: Option<f64>) -> Vec<usize> {
        let rules = CellAssignment { homolog_weight, ..rules() };
        assign(predictions, &labels(), &structure_labels(), &rules, 0.5).iter().map(|c| c.class).collect()
    }

    #[test]
    fn homolog_vectors_untangle_a_crossed_pair() {
        let predictions = cell_with_crossed_pair();
        let truth: Vec<usize> = (0..46).map(|k| k / 2).collect();
        // the slots alone follow the likelihood: each chromosome still holds two objects
        let slots_only = classes(&predictions, None);
        assert_eq!(&slots_only[..4], &[0, 1, 0, 1]);
        assert_eq!(classes(&predictions, Some(0.0)), slots_only);
        assert_eq!(classes(&predictions, Some(1.0)), truth);
    }

    #[test]
    fn the_pairing_term_keeps_every_count() {
        // a trisomy 21 whose vectors point anywhere: swaps may move labels, never counts
        let mut predictions = cell(&[22, 23], &[20]);
        for (k, p) in predictions.iter_mut().enumerate() {
            let v: Vec<f32> = (0..8).map(|axis| ((k * 7 + axis * 3) % 11) as f32 - 5.0).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            p.homolog = v.iter().map(|x| x / norm).collect();
        }
        let count =
            |classes: &[usize]| (0..24).map(|c| classes.iter().filter(|&&k| k == c).count()).collect::<Vec<_>>();
        assert_eq!(count(&classes(&predictions, Some(4.0))), count(&classes(&predictions, None)));
        let calls = assign(
            &predictions,
            &labels(),
            &structure_labels(),
            &CellAssignment { homolog_weight: Some(4.0), ..rules() },
            0.5,
        );
        assert_eq!(karyotype(&calls, &labels()).iscn, "47,XY,+21");
    }

    fn cell(sex: &[usize], extra: &[usize]) -> Vec<Prediction> {
        let mut cell: Vec<Prediction> =
            (0..22).flat_map(|c| [prediction(c, 0.9, (c + 1) % 22), prediction(c, 0.9, (c + 1) % 22)]).collect();
        cell.extend(sex.iter().map(|&c| prediction(c, 0.9, 0)));
        cell.extend(extra.iter().map(|&c| prediction(c, 0.9, 0)));
        cell
    }

    fn iscn(predictions: &[Prediction]) -> String {
        let calls = assign(predictions, &labels(), &structure_labels(), &rules(), 0.5);
        karyotype(&calls, &labels()).iscn
    }

    #[test]
    fn normal_cells() {
        assert_eq!(iscn(&cell(&[22, 22], &[])), "46,XX");
        assert_eq!(iscn(&cell(&[22, 23], &[])), "46,XY");
    }

    #[test]
    fn aneuploidies_survive_the_cell_step() {
        assert_eq!(iscn(&cell(&[22, 23], &[20])), "47,XY,+21");
        assert_eq!(iscn(&cell(&[22], &[])), "45,X");
        assert_eq!(iscn(&cell(&[22, 22, 23], &[])), "47,XXY");
    }

    #[test]
    fn a_lost_autosome_is_named() {
        let mut predictions = cell(&[22, 22], &[]);
        predictions.remove(2 * 12);
        assert_eq!(iscn(&predictions), "45,XX,-13");
    }

    #[test]
    fn a_weak_third_copy_moves_to_its_runner_up() {
        // Three objects lean to 5, but one has 6 as a close second and 6 has a free slot.
        let mut predictions = cell(&[22, 22], &[]);
        predictions.remove(2 * 5);
        let mut confused = prediction(4, 0.5, 5);
        confused.identity[5] = 0.4;
        predictions.push(confused);
        assert_eq!(iscn(&predictions), "46,XX");
    }

    #[test]
    fn one_autosome_that_looks_like_y_does_not_make_a_female_cell_xxy() {
        let mut predictions = cell(&[22, 22], &[]);
        let mut eighteen = prediction(23, 0.6, 17);
        eighteen.identity[17] = 0.35;
        predictions[2 * 17] = eighteen;
        assert_eq!(iscn(&predictions), "46,XX");
    }

    fn flag(p: &mut Prediction, structure: [f32; 5], arm: [f32; 2]) {
        (p.structure, p.arm) = (structure.to_vec(), arm.to_vec());
    }

    #[test]
    fn structural_flag_is_written_iscn_style_with_its_arm() {
        let mut predictions = cell(&[22, 22], &[]);
        flag(&mut predictions[8], [0.1, 0.8, 0.05, 0.03, 0.02], [0.9, 0.1]);
        assert_eq!(iscn(&predictions), "46,XX,del(5)(p)");
        // below the threshold (1 − P(normal) = 0.45): no flag
        flag(&mut predictions[8], [0.55, 0.4, 0.05, 0.0, 0.0], [0.9, 0.1]);
        assert_eq!(iscn(&predictions), "46,XX");
    }

    #[test]
    fn flags_follow_iscn_order_after_numerical_changes() {
        let mut predictions = cell(&[22, 23], &[20]);
        flag(&mut predictions[2 * 8], [0.2, 0.1, 0.1, 0.5, 0.1], [0.2, 0.8]);
        flag(predictions.last_mut().unwrap(), [0.1, 0.1, 0.7, 0.05, 0.05], [0.3, 0.7]);
        flag(&mut predictions[44], [0.1, 0.7, 0.1, 0.05, 0.05], [0.6, 0.4]);
        assert_eq!(iscn(&predictions), "47,XY,del(X)(p),inv(9)(q),+21,dup(21)(q)");
    }

    #[test]
    fn translocation_derivatives_pair_up() {
        let mut predictions = cell(&[22, 22], &[]);
        flag(&mut predictions[2 * 10], [0.1, 0.0, 0.0, 0.0, 0.9], [0.1, 0.9]);
        flag(&mut predictions[2 * 3 + 1], [0.2, 0.0, 0.1, 0.0, 0.7], [0.2, 0.8]);
        assert_eq!(iscn(&predictions), "46,XX,t(4;11)(q;q)");
        flag(&mut predictions[2 * 10], [0.9, 0.0, 0.0, 0.0, 0.1], [0.1, 0.9]);
        assert_eq!(iscn(&predictions), "46,XX,t(4;?)(q;?)");
    }
}
