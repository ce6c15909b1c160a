//! A reviewer's corrections to a cell: another class for an object, or "not a chromosome". The
//! karyotype and verdict are recomputed from the corrected objects by the device's own analysis
//! (`pipeline::analyse::karyotype`, `pipeline::decide::decide`) with the limits recorded with the
//! cell, so a corrected cell reads exactly as the device would have read those calls.

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::pipeline::analyse::{karyotype, Call};
use crate::pipeline::decide::{decide, Thresholds};
use crate::tools::karyogram::CLASS_NAMES;

/// What a reviewer can call an object that is not one of the 24 classes.
pub const NOT_A_CHROMOSOME: &str = "not a chromosome";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    /// 1-based, as the cell page numbers the objects.
    pub object: usize,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Corrected {
    pub changes: Vec<Change>,
    /// Every object's class after the corrections (a label or [`NOT_A_CHROMOSOME`]).
    pub classes: Vec<String>,
    pub karyotype: String,
    pub verdict: String,
    pub reasons: Vec<String>,
}

/// The recorded cell's objects as calls.
pub fn calls(cell: &Value) -> Result<Vec<Call>> {
    let objects = cell["objects"].as_array().context("the cell has no objects list")?;
    objects.iter().map(|o| serde_json::from_value(o.clone()).context("an object of the cell cannot be read")).collect()
}

/// Calls a reviewer kept, each with its object's index (0-based) in the recorded cell.
pub type KeptCalls = Vec<(usize, Call)>;

/// The reviewer's calls: `classes` (one per recorded object, in order) applied to `recorded`.
/// Objects marked not a chromosome are dropped; each kept call comes with its object's index.
pub fn apply(recorded: Vec<Call>, classes: &[String]) -> Result<(KeptCalls, Vec<Change>)> {
    ensure!(classes.len() == recorded.len(), "{} classes for {} objects", classes.len(), recorded.len());
    let (mut kept, mut changes) = (Vec::new(), Vec::new());
    for (i, (mut call, to)) in recorded.into_iter().zip(classes).enumerate() {
        if *to != call.label {
            changes.push(Change { object: i + 1, from: call.label.clone(), to: to.clone() });
        }
        if to == NOT_A_CHROMOSOME {
            continue;
        }
        let Some(class) = CLASS_NAMES.iter().position(|l| l == to) else { bail!("{to:?} is not a chromosome class") };
        if class != call.class {
            // a person's call: certain, and no longer the model's structure reading of another class
            (call.class, call.label, call.confidence) = (class, to.clone(), 1.0);
        }
        kept.push((i, call));
    }
    Ok((kept, changes))
}

/// `classes` (one per recorded object, in order) applied to the recorded `cell`.
pub fn recompute(cell: &Value, classes: &[String]) -> Result<Corrected> {
    let (kept, changes) = apply(calls(cell)?, classes)?;
    let kept: Vec<Call> = kept.into_iter().map(|(_, call)| call).collect();
    let labels: Vec<String> = CLASS_NAMES.iter().map(|l| l.to_string()).collect();
    let limits: Thresholds =
        serde_json::from_value(cell["thresholds"].clone()).context("the cell's recorded limits cannot be read")?;
    let unresolved = cell["unresolved"].as_u64().unwrap_or(0) as usize;
    let found = karyotype(&kept, &labels);
    let decision = decide(&found, &kept, unresolved, &limits);
    Ok(Corrected {
        changes,
        classes: classes.to_vec(),
        karyotype: found.iscn,
        verdict: decision.verdict.to_string(),
        reasons: decision.reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(labels: &[&str]) -> Value {
        let objects: Vec<Value> = labels
            .iter()
            .map(|l| {
                let class = CLASS_NAMES.iter().position(|c| c == l).unwrap();
                serde_json::json!({"class": class, "label": l, "confidence": 0.9, "argmax": class,
                                   "structure": "normal", "structure_confidence": 0.9})
            })
            .collect();
        serde_json::json!({"objects": objects, "unresolved": 0,
                           "thresholds": {"min_count": 40, "max_count": 52, "min_confidence": 0.5, "max_low_confidence": 4}})
    }

    fn normal_female() -> Vec<&'static str> {
        CLASS_NAMES.iter().take(23).flat_map(|c| [*c, *c]).collect()
    }

    #[test]
    fn moving_a_call_and_dropping_debris_recompute_the_karyotype() {
        let mut labels = normal_female();
        labels[42] = "21"; // the model called one 22 a 21: 47,XX,+9,+21,-22 as recorded
        labels.push("9"); // and a speck a 9
        let recorded = cell(&labels);
        let as_recorded: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        assert_eq!(recompute(&recorded, &as_recorded).unwrap().karyotype, "47,XX,+9,+21,-22");

        let mut fixed = as_recorded.clone();
        fixed[42] = "22".into();
        fixed[46] = NOT_A_CHROMOSOME.into();
        let corrected = recompute(&recorded, &fixed).unwrap();
        assert_eq!(corrected.karyotype, "46,XX");
        assert_eq!(corrected.verdict, "normal");
        assert_eq!(
            corrected.changes,
            vec![
                Change { object: 43, from: "21".into(), to: "22".into() },
                Change { object: 47, from: "9".into(), to: NOT_A_CHROMOSOME.into() }
            ]
        );
    }

    #[test]
    fn classes_must_match_the_objects_and_be_classes() {
        let recorded = cell(&normal_female());
        assert!(recompute(&recorded, &["1".to_string()]).is_err());
        let mut bad: Vec<String> = normal_female().iter().map(|l| l.to_string()).collect();
        bad[0] = "23".into();
        assert!(recompute(&recorded, &bad).is_err());
    }
}
