//! The cell's verdict. A screening aid never calls a cell normal on a guess: "normal" needs a
//! plausible count, a standard karyotype and confident calls; anything else is abnormal (with
//! the finding) or indeterminate (with what stopped a call). Reasons are always given.

use serde::{Deserialize, Serialize};

use crate::pipeline::analyse::{Call, Karyotype};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Normal,
    Abnormal,
    Indeterminate,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Normal => "normal",
            Verdict::Abnormal => "abnormal",
            Verdict::Indeterminate => "indeterminate",
        })
    }
}

/// Limits a call must stay within; recorded with every result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Thresholds {
    /// Fewer objects than this is not a metaphase we can read.
    pub min_count: usize,
    pub max_count: usize,
    /// A call below this confidence is "low confidence".
    pub min_confidence: f32,
    /// More low-confidence calls than this makes the cell indeterminate.
    pub max_low_confidence: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { min_count: 40, max_count: 52, min_confidence: 0.5, max_low_confidence: 4 }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub reasons: Vec<String>,
}

/// Whether the objects can be read as a karyotype at all: a plausible count and no cluster left
/// unresolved. Otherwise the cell's karyotype is "not determined", never a list of gains and
/// losses made up to fill the slots.
pub fn karyotype_determined(karyotype: &Karyotype, unresolved: usize, limits: &Thresholds) -> bool {
    (limits.min_count..=limits.max_count).contains(&karyotype.count) && unresolved == 0
}

/// `unresolved` counts objects segmentation found but could not separate or classify.
pub fn decide(karyotype: &Karyotype, calls: &[Call], unresolved: usize, limits: &Thresholds) -> Decision {
    let mut blocking = Vec::new();
    if karyotype.count < limits.min_count {
        blocking.push(format!("too few objects ({} < {})", karyotype.count, limits.min_count));
    }
    if karyotype.count > limits.max_count {
        blocking.push(format!("count implausible ({} > {})", karyotype.count, limits.max_count));
    }
    if unresolved > 0 {
        blocking.push(format!("{unresolved} overlapping or unresolved object(s)"));
    }
    let low = calls.iter().filter(|c| c.confidence < limits.min_confidence).count();
    if low > limits.max_low_confidence {
        blocking.push(format!(
            "low confidence: {low} calls below {:.2} (max {})",
            limits.min_confidence, limits.max_low_confidence
        ));
    }
    if !blocking.is_empty() {
        return Decision { verdict: Verdict::Indeterminate, reasons: blocking };
    }

    let mut findings = Vec::new();
    if !matches!(karyotype.sex_chromosomes.as_str(), "XX" | "XY") {
        findings.push(format!("sex chromosomes {}", display_sex(&karyotype.sex_chromosomes)));
    }
    for (label, copies) in &karyotype.numerical {
        findings.push(format!("chromosome {label}: {copies} copies"));
    }
    for flag in &karyotype.structural {
        findings.push(format!("structural change {flag}"));
    }
    if !findings.is_empty() {
        return Decision { verdict: Verdict::Abnormal, reasons: findings };
    }
    let weakest = calls.iter().map(|c| c.confidence).fold(1.0f32, f32::min);
    Decision {
        verdict: Verdict::Normal,
        reasons: vec![format!(
            "{} objects in 23 pairs, {low} low-confidence call(s), weakest {weakest:.2}; one cell only: \
             a case needs the cell count and a person's sign-off",
            karyotype.count
        )],
    }
}

fn display_sex(sex: &str) -> &str {
    if sex.is_empty() {
        "none found"
    } else {
        sex
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn karyotype(count: usize, sex: &str, numerical: Vec<(String, usize)>) -> Karyotype {
        Karyotype { count, sex_chromosomes: sex.into(), iscn: String::new(), numerical, structural: vec![] }
    }

    fn calls(n: usize, confidence: f32) -> Vec<Call> {
        (0..n)
            .map(|_| Call {
                class: 0,
                label: "1".into(),
                confidence,
                argmax: 0,
                structure: "normal".into(),
                structure_confidence: 0.9,
                arm: None,
                position: None,
            })
            .collect()
    }

    #[test]
    fn normal_only_with_reasons() {
        let d = decide(&karyotype(46, "XY", vec![]), &calls(46, 0.9), 0, &Thresholds::default());
        assert_eq!(d.verdict, Verdict::Normal);
        assert!(d.reasons[0].contains("sign-off"));
    }

    #[test]
    fn a_karyotype_needs_a_plausible_count_and_no_unresolved_cluster() {
        let limits = Thresholds::default();
        for (count, unresolved, determined) in [
            (46, 0, true),
            (40, 0, true),
            (52, 0, true),
            (39, 0, false),
            (53, 0, false),
            (12, 0, false),
            (46, 1, false),
        ] {
            let k = karyotype(count, "XY", vec![]);
            assert_eq!(
                karyotype_determined(&k, unresolved, &limits),
                determined,
                "{count} objects, {unresolved} unresolved"
            );
        }
    }

    #[test]
    fn trisomy_is_abnormal() {
        let d = decide(&karyotype(47, "XY", vec![("21".into(), 3)]), &calls(47, 0.9), 0, &Thresholds::default());
        assert_eq!(d.verdict, Verdict::Abnormal);
        assert_eq!(d.reasons, ["chromosome 21: 3 copies"]);
    }

    #[test]
    fn monosomy_x_is_abnormal() {
        let d = decide(&karyotype(45, "X", vec![]), &calls(45, 0.9), 0, &Thresholds::default());
        assert_eq!(d.verdict, Verdict::Abnormal);
    }

    #[test]
    fn doubt_beats_a_finding() {
        let t = Thresholds::default();
        assert_eq!(decide(&karyotype(30, "XX", vec![]), &calls(30, 0.9), 0, &t).verdict, Verdict::Indeterminate);
        assert_eq!(decide(&karyotype(46, "XX", vec![]), &calls(46, 0.3), 0, &t).verdict, Verdict::Indeterminate);
        assert_eq!(decide(&karyotype(46, "XX", vec![]), &calls(46, 0.9), 2, &t).verdict, Verdict::Indeterminate);
    }
}
