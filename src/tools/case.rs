//! A case: many cells of one patient, tallied as a cytogenetics lab does. Pure logic on per-cell
//! summaries (no model, no files); `karyoscreen case DIR` does the I/O.
//!
//! - Indeterminate cells are excluded from scoring and reported.
//! - The count (chromosome number) is scored on the first `count` readable cells; the modal
//!   number is the most frequent count among them.
//! - The first `analyse` scored cells are analysed in full. A structural change seen in an
//!   analysed cell is then looked for in every scored cell.
//! - Clonality (ISCN): the same gain or the same structural change in ≥ 2 cells, the same loss in
//!   ≥ 3 cells. A single abnormal cell (or a loss in 2) is non-clonal.
//! - Mosaicism: a non-clonal abnormal cell or a minority abnormal line extends the count to 30
//!   cells, scoring further readable cells where there are any.
//! - Verdict: `normal` only with ≥ `count` scored cells and no clonal abnormality (never without
//!   the sign-off note); `abnormal` with the clone notation, e.g. `47,XY,+21[18]/46,XY[2]`;
//!   `indeterminate` when too few readable cells.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::pipeline::decide::Verdict;
use crate::pipeline::CellResult;

/// Cells a count is extended to when mosaicism is suspected.
pub const MOSAIC_COUNT: usize = 30;
pub const SIGN_OFF: &str = "screening aid: the case requires a person's review and sign-off";

/// What the case logic needs of one analysed cell.
#[derive(Debug, Clone, Serialize)]
pub struct CellSummary {
    pub origin: String,
    pub count: usize,
    pub karyotype: String,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    /// e.g. `XY`, `X`, `XXY`.
    #[serde(skip)]
    pub sex: String,
    /// Autosomes with a copy number other than two.
    #[serde(skip)]
    pub numerical: Vec<(String, usize)>,
    /// e.g. `del(5)(q)`.
    #[serde(skip)]
    pub structural: Vec<String>,
}

impl CellSummary {
    pub fn from_result(origin: &str, result: &CellResult) -> CellSummary {
        CellSummary {
            origin: origin.to_string(),
            count: result.count,
            karyotype: result.karyotype.clone(),
            verdict: result.verdict,
            reasons: result.reasons.clone(),
            sex: result.detail.sex_chromosomes.clone(),
            numerical: result.detail.numerical.clone(),
            structural: result.detail.structural.clone(),
        }
    }

    /// From an ISCN string as `analyse` writes it (`47,XY,+21`, `45,XX,-13,del(5)(q)`).
    pub fn from_iscn(origin: &str, iscn: &str, verdict: Verdict) -> CellSummary {
        let mut parts = iscn.split(',');
        let count = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let sex = parts.next().unwrap_or("").replace('?', "");
        let mut copies: BTreeMap<u32, i64> = BTreeMap::new();
        let mut structural = Vec::new();
        for part in parts {
            if let Some(n) = part.strip_prefix('+').and_then(|n| n.parse().ok()) {
                *copies.entry(n).or_insert(2) += 1;
            } else if let Some(n) = part.strip_prefix('-').and_then(|n| n.parse().ok()) {
                *copies.entry(n).or_insert(2) -= 1;
            } else {
                structural.push(part.to_string());
            }
        }
        CellSummary {
            origin: origin.into(),
            count,
            karyotype: iscn.into(),
            verdict,
            reasons: vec![],
            sex,
            numerical: copies.into_iter().map(|(n, c)| (n.to_string(), c.max(0) as usize)).collect(),
            structural,
        }
    }
}

/// One cell line: its karyotype and the cells in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Clone {
    pub karyotype: String,
    pub cells: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CellEntry {
    #[serde(flatten)]
    pub cell: CellSummary,
    /// `analysed`, `counted`, `indeterminate` or `not scored`.
    pub role: &'static str,
    /// Changes relative to the case's sex, e.g. `+21`, `-X`, `del(5)(q)`.
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    pub cells_total: usize,
    pub cells_scored: usize,
    pub cells_analysed: usize,
    pub cells_indeterminate: usize,
    pub count_requested: usize,
    pub modal_count: Option<usize>,
    /// Abnormal clones first (largest first), the normal line last, as ISCN lists them.
    pub clones: Vec<Clone>,
    pub karyotype: String,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub cells: Vec<CellEntry>,
}

/// Sort key of a change in ISCN order: sex chromosomes, then 1…22, numerical before structural.
fn order_key(change: &str) -> (u32, u32, String) {
    let (kind, chromosome) = if let Some(rest) = change.strip_prefix(['+', '-']) {
        (0, rest.to_string())
    } else {
        let inner = change.split('(').nth(1).unwrap_or("").trim_end_matches(')');
        (1, inner.split(';').next().unwrap_or("").to_string())
    };
    let number = match chromosome.as_str() {
        "X" | "Y" => 0,
        n => n.parse().unwrap_or(99),
    };
    (number, kind, change.to_string())
}

fn is_loss(change: &str) -> bool {
    change.starts_with('-')
}

/// The cell's changes relative to the case's sex complement `base` (`XX` or `XY`).
fn changes_of(cell: &CellSummary, base: &str) -> Vec<String> {
    let mut changes = Vec::new();
    for sex in ['X', 'Y'] {
        let have = cell.sex.chars().filter(|&c| c == sex).count();
        let want = base.chars().filter(|&c| c == sex).count();
        let sign = if have > want { '+' } else { '-' };
        changes.extend(std::iter::repeat_n(format!("{sign}{sex}"), have.abs_diff(want)));
    }
    for (label, copies) in &cell.numerical {
        let sign = if *copies > 2 { '+' } else { '-' };
        changes.extend(std::iter::repeat_n(format!("{sign}{label}"), copies.abs_diff(2)));
    }
    changes.extend(cell.structural.iter().cloned());
    changes.sort_by_key(|c| order_key(c));
    changes
}

/// ISCN karyotype of a line with these changes on the case's sex complement.
fn line_karyotype(base: &str, changes: &[String]) -> String {
    let mut count: i64 = 46;
    let mut sex: String = base.to_string();
    let mut parts = Vec::new();
    for change in changes {
        match change.as_str() {
            "+X" | "+Y" => {
                count += 1;
                sex.push_str(&change[1..]);
            }
            "-X" | "-Y" => {
                count -= 1;
                if let Some(at) = sex.rfind(&change[1..]) {
                    sex.remove(at);
                }
                if change == "-Y" {
                    parts.push(change.clone()); // ISCN writes a lost Y: 45,X,-Y
                }
            }
            c if c.starts_with('+') => {
                count += 1;
                parts.push(c.to_string())
            }
            c if c.starts_with('-') => {
                count -= 1;
                parts.push(c.to_string())
            }
            c => parts.push(c.to_string()),
        }
    }
    let mut sorted: Vec<char> = sex.chars().collect();
    sorted.sort(); // X before Y
    let sex: String = sorted.into_iter().collect();
    std::iter::once(count.to_string())
        .chain(std::iter::once(if sex.is_empty() { "?".to_string() } else { sex }))
        .chain(parts)
        .collect::<Vec<_>>()
        .join(",")
}

/// Tallies the cells of one case (in the order they were taken). `count`: cells to score;
/// `analyse`: cells to analyse in full among them.
pub fn tally(cells: &[CellSummary], count: usize, analyse: usize) -> CaseReport {
    let readable: Vec<usize> = (0..cells.len()).filter(|&i| cells[i].verdict != Verdict::Indeterminate).collect();
    let indeterminate = cells.len() - readable.len();
    let mut reasons = Vec::new();

    // the case's sex complement: XY when most readable cells carry a Y
    let with_y = readable.iter().filter(|&&i| cells[i].sex.contains('Y')).count();
    let base = if readable.is_empty() || with_y * 2 < readable.len() { "XX" } else { "XY" };
    let changes: Vec<Vec<String>> = cells.iter().map(|c| changes_of(c, base)).collect();

    let mut scored_n = count.min(readable.len());
    let mut extended = false;
    let (clones, non_clonal_cells, scored) = loop {
        let scored = &readable[..scored_n];
        let analysed: BTreeSet<usize> = scored.iter().take(analyse).copied().collect();
        // structural changes come from the analysed cells, then are looked for in every scored one
        let structural_seen: BTreeSet<&String> =
            analysed.iter().flat_map(|&i| changes[i].iter().filter(|c| !c.starts_with(['+', '-']))).collect();
        let considered = |i: usize| -> Vec<String> {
            let mut distinct: Vec<String> = changes[i]
                .iter()
                .filter(|c| c.starts_with(['+', '-']) || structural_seen.contains(c))
                .cloned()
                .collect();
            distinct.dedup();
            distinct
        };
        let mut cells_with: BTreeMap<String, usize> = BTreeMap::new();
        for &i in scored {
            for c in considered(i) {
                *cells_with.entry(c).or_insert(0) += 1;
            }
        }
        let clonal: BTreeSet<String> =
            cells_with.iter().filter(|(c, &n)| n >= if is_loss(c) { 3 } else { 2 }).map(|(c, _)| c.clone()).collect();
        // group scored cells by their clonal changes (with multiplicity, e.g. +21,+21)
        let mut lines: BTreeMap<Vec<String>, usize> = BTreeMap::new();
        let mut non_clonal_cells = Vec::new();
        for &i in scored {
            let own: Vec<String> = changes[i].iter().filter(|c| clonal.contains(*c)).cloned().collect();
            let other = considered(i).into_iter().any(|c| !clonal.contains(&c));
            if own.is_empty() && other {
                non_clonal_cells.push(i); // abnormal only in non-clonal ways: not in any line
            } else {
                *lines.entry(own).or_insert(0) += 1;
            }
        }
        let normal = lines.get(&Vec::new()).copied().unwrap_or(0);
        let abnormal_lines: Vec<(&Vec<String>, &usize)> = lines.iter().filter(|(k, _)| !k.is_empty()).collect();
        let minority = abnormal_lines.iter().any(|(_, &n)| n < normal);
        let suspicious = !non_clonal_cells.is_empty() || minority;
        if suspicious && !extended && scored_n < MOSAIC_COUNT {
            extended = true;
            let available = readable.len().min(MOSAIC_COUNT);
            if available > scored_n {
                scored_n = available;
                continue;
            }
        }
        let mut clones: Vec<(Vec<String>, usize)> = lines.into_iter().collect();
        clones.sort_by_key(|(k, n)| (k.is_empty(), std::cmp::Reverse(*n)));
        break (clones, non_clonal_cells, scored.to_vec());
    };
    let analysed: Vec<usize> = scored.iter().take(analyse).copied().collect();

    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for &i in &scored {
        *counts.entry(cells[i].count).or_insert(0) += 1;
    }
    let modal_count = counts.iter().max_by_key(|(c, n)| (**n, std::cmp::Reverse(c.abs_diff(46)))).map(|(c, _)| *c);

    let clone_list: Vec<Clone> =
        clones.iter().map(|(k, n)| Clone { karyotype: line_karyotype(base, k), cells: *n }).collect();
    let karyotype = clone_list.iter().map(|c| format!("{}[{}]", c.karyotype, c.cells)).collect::<Vec<_>>().join("/");
    let abnormal: Vec<&Clone> =
        clone_list.iter().zip(&clones).filter(|(_, (k, _))| !k.is_empty()).map(|(c, _)| c).collect();

    reasons.push(format!(
        "{} cell(s) scored for the count (requested {count}), {} analysed, {indeterminate} indeterminate excluded{}",
        scored.len(),
        analysed.len(),
        modal_count.map_or(String::new(), |m| format!("; modal number {m}"))
    ));
    for clone in &abnormal {
        reasons.push(format!("clone {} in {} of {} cells", clone.karyotype, clone.cells, scored.len()));
    }
    if !non_clonal_cells.is_empty() {
        let list: Vec<String> =
            non_clonal_cells.iter().map(|&i| format!("{} ({})", cells[i].karyotype, cells[i].origin)).collect();
        reasons.push(format!(
            "{} non-clonal abnormal cell(s), not reported as a clone: {}",
            list.len(),
            list.join(", ")
        ));
    }
    let normal_cells = clones.iter().find(|(k, _)| k.is_empty()).map_or(0, |(_, n)| *n);
    let minority = clones.iter().any(|(k, n)| !k.is_empty() && *n < normal_cells);
    let mosaic = minority || !non_clonal_cells.is_empty();
    let mut short_of_mosaic = 0;
    if mosaic {
        let what = if minority {
            "mosaicism (a minority abnormal line)"
        } else {
            "a possible mosaic (non-clonal abnormal cell)"
        };
        if scored.len() >= MOSAIC_COUNT {
            reasons.push(format!("{what}: count extended to {} cells", scored.len()));
        } else {
            short_of_mosaic = MOSAIC_COUNT - scored.len();
            reasons.push(format!(
                "{what}: extend the count to {MOSAIC_COUNT} cells ({} scored; need {short_of_mosaic} more readable cells)",
                scored.len()
            ));
        }
    }
    let verdict = if !abnormal.is_empty() {
        if scored.len() < count {
            reasons.push(format!("only {} of {count} requested cells were readable", scored.len()));
        }
        Verdict::Abnormal
    } else if scored.len() < count {
        reasons.push(format!(
            "too few readable cells: {} of {count}; need {} more readable cells",
            scored.len(),
            count - scored.len()
        ));
        Verdict::Indeterminate
    } else if short_of_mosaic > 0 {
        Verdict::Indeterminate
    } else {
        reasons.push(format!("no clonal abnormality in {} scored cells", scored.len()));
        Verdict::Normal
    };
    reasons.push(SIGN_OFF.to_string());

    let scored_set: BTreeSet<usize> = scored.iter().copied().collect();
    let entries = cells
        .iter()
        .enumerate()
        .map(|(i, c)| CellEntry {
            cell: c.clone(),
            role: if c.verdict == Verdict::Indeterminate {
                "indeterminate"
            } else if analysed.contains(&i) {
                "analysed"
            } else if scored_set.contains(&i) {
                "counted"
            } else {
                "not scored"
            },
            changes: changes[i].clone(),
        })
        .collect();
    CaseReport {
        cells_total: cells.len(),
        cells_scored: scored.len(),
        cells_analysed: analysed.len(),
        cells_indeterminate: indeterminate,
        count_requested: count,
        modal_count,
        clones: clone_list,
        karyotype,
        verdict,
        reasons,
        cells: entries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(spec: &[(&str, usize)]) -> Vec<CellSummary> {
        let mut out = Vec::new();
        for (iscn, n) in spec {
            for _ in 0..*n {
                let verdict = if *iscn == "?" {
                    Verdict::Indeterminate
                } else if iscn.matches(',').count() == 1 && (iscn.ends_with(",XX") || iscn.ends_with(",XY")) {
                    Verdict::Normal
                } else {
                    Verdict::Abnormal
                };
                let iscn = if *iscn == "?" { "38,XX" } else { iscn };
                out.push(CellSummary::from_iscn(&format!("cell{}", out.len() + 1), iscn, verdict));
            }
        }
        out
    }

    #[test]
    fn clonal_trisomy() {
        let r = tally(&cells(&[("47,XY,+21", 18), ("46,XY", 2)]), 20, 5);
        assert_eq!(r.verdict, Verdict::Abnormal);
        assert_eq!(r.karyotype, "47,XY,+21[18]/46,XY[2]");
        assert_eq!(r.modal_count, Some(47));
        assert_eq!(r.cells_scored, 20);
        assert_eq!(
            r.clones,
            [Clone { karyotype: "47,XY,+21".into(), cells: 18 }, Clone { karyotype: "46,XY".into(), cells: 2 }]
        );
    }

    #[test]
    fn single_cell_artefact_is_non_clonal() {
        // 20 normal and one +5: the count is extended to 30, and with 30 readable cells it is normal
        let r = tally(&cells(&[("46,XX", 10), ("47,XX,+5", 1), ("46,XX", 19)]), 20, 5);
        assert_eq!(r.cells_scored, 30);
        assert_eq!(r.verdict, Verdict::Normal, "{:?}", r.reasons);
        assert_eq!(r.karyotype, "46,XX[29]");
        assert!(r.reasons.iter().any(|x| x.contains("non-clonal")), "{:?}", r.reasons);
        assert!(r.reasons.iter().any(|x| x.contains("sign-off")));
        // with no further frames, the count cannot be extended: not normal yet
        let r = tally(&cells(&[("46,XX", 10), ("47,XX,+5", 1), ("46,XX", 9)]), 20, 5);
        assert_eq!(r.verdict, Verdict::Indeterminate);
        assert!(r.reasons.iter().any(|x| x.contains("extend the count to 30 cells")), "{:?}", r.reasons);
    }

    #[test]
    fn loss_needs_three_cells() {
        let two = tally(&cells(&[("45,XX,-13", 2), ("46,XX", 28)]), 20, 5);
        assert_eq!(two.cells_scored, 30);
        assert_eq!(two.verdict, Verdict::Normal, "{:?}", two.reasons);
        let three = tally(&cells(&[("45,XX,-13", 3), ("46,XX", 27)]), 20, 5);
        assert_eq!(three.verdict, Verdict::Abnormal);
        assert_eq!(three.karyotype, "45,XX,-13[3]/46,XX[27]");
        // a gain in two cells is already clonal
        let gain = tally(&cells(&[("47,XX,+8", 2), ("46,XX", 28)]), 20, 5);
        assert_eq!(gain.verdict, Verdict::Abnormal);
        assert_eq!(gain.karyotype, "47,XX,+8[2]/46,XX[28]");
    }

    #[test]
    fn mosaic_minority_line_extends_the_count() {
        let spread = cells(&[("46,XY", 8), ("47,XXY", 1), ("46,XY", 8), ("47,XXY", 1), ("46,XY", 12)]);
        let r = tally(&spread, 20, 5);
        assert_eq!(r.verdict, Verdict::Abnormal);
        assert_eq!(r.cells_scored, 30);
        assert_eq!(r.karyotype, "47,XXY[2]/46,XY[28]");
        assert!(r.reasons.iter().any(|x| x.contains("mosaicism") && x.contains("extended to 30")), "{:?}", r.reasons);
        // only 20 frames: abnormal, and the report asks for 30
        let r = tally(&spread[..20], 20, 5);
        assert_eq!(r.karyotype, "47,XXY[2]/46,XY[18]");
        assert!(r.reasons.iter().any(|x| x.contains("extend the count to 30 cells")), "{:?}", r.reasons);
        // Turner mosaic on a female case: 45,X is a loss of X, clonal from 3 cells
        let r = tally(&cells(&[("45,X", 4), ("46,XX", 26)]), 20, 5);
        assert_eq!(r.karyotype, "45,X[4]/46,XX[26]");
    }

    #[test]
    fn too_few_readable_cells() {
        let r = tally(&cells(&[("46,XY", 12), ("?", 5)]), 20, 5);
        assert_eq!(r.verdict, Verdict::Indeterminate);
        assert_eq!(r.cells_scored, 12);
        assert_eq!(r.cells_indeterminate, 5);
        assert!(r.reasons.iter().any(|x| x.contains("need 8 more readable cells")), "{:?}", r.reasons);
        assert_eq!(r.cells.iter().filter(|c| c.role == "indeterminate").count(), 5);
        assert!(tally(&[], 20, 5).verdict == Verdict::Indeterminate);
    }

    #[test]
    fn structural_change_in_two_cells_is_clonal() {
        let r = tally(&cells(&[("46,XX,del(5)(q)", 2), ("46,XX", 18)]), 20, 5);
        assert_eq!(r.verdict, Verdict::Abnormal);
        assert_eq!(r.karyotype, "46,XX,del(5)(q)[2]/46,XX[18]");
        // the same chromosome on another arm is another change: one cell each is not a clone
        let r = tally(&cells(&[("46,XX,del(5)(q)", 1), ("46,XX,del(5)(p)", 1), ("46,XX", 18)]), 20, 5);
        assert!(!r.karyotype.contains("del(5)(q)[") && !r.karyotype.contains("del(5)(p)["), "{}", r.karyotype);
    }
}
