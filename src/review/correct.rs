//! A reviewer's corrections to a cell: another class for an object, "not a chromosome", two
//! objects merged into one, or one cut in two along a line. Each correction turns the cell's
//! objects as they stand into new ones ([`ReviewedObject`]); the karyotype and verdict are then
//! recomputed from them by the device's own analysis (`pipeline::analyse::karyotype`,
//! `pipeline::decide::decide`) with the limits recorded with the cell, so a corrected cell
//! reads exactly as the device would have read those calls.

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pipeline::analyse::{karyotype, Call};
use crate::pipeline::decide::{decide, Decision, Thresholds};
use crate::pipeline::segment::BBox;
use crate::tools::karyogram::CLASS_NAMES;

/// What a reviewer can call an object that is not one of the 24 classes.
pub const NOT_A_CHROMOSOME: &str = "not a chromosome";

/// One object of the cell as the reviewer has it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReviewedObject {
    /// The recorded objects it is made of (1-based, as the recorded cell numbers them).
    pub from: Vec<usize>,
    pub bbox: BBox,
    /// A class label or [`NOT_A_CHROMOSOME`].
    pub label: String,
    /// For a part cut from an object: the line it was cut along, `[x1, y1, x2, y2]` in frame
    /// pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<[i64; 4]>,
}

impl ReviewedObject {
    /// Still one recorded object, whole: the model's call for it stands unless relabelled.
    fn is_recorded_whole(&self) -> bool {
        self.from.len() == 1 && self.cut.is_none()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    /// 1-based, as the cell page numbers the objects.
    pub object: usize,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Corrected {
    /// A merge or a cut, said in words (class changes are in `changes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit: Option<String>,
    pub changes: Vec<Change>,
    pub objects: Vec<ReviewedObject>,
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

/// The cell's objects as the latest `review` left them, else as recorded.
pub fn objects_now(cell: &Value, review: Option<&Value>) -> Result<Vec<ReviewedObject>> {
    if let Some(objects) = review.and_then(|r| r.get("objects")) {
        return serde_json::from_value(objects.clone()).context("the review's objects cannot be read");
    }
    let recorded = cell["objects"].as_array().context("the cell has no objects list")?;
    let classes = review.and_then(|r| r["classes"].as_array()).filter(|c| c.len() == recorded.len());
    recorded
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let label = classes.map_or(&o["label"], |c| &c[i]).as_str().context("an object has no label")?.to_string();
            let bbox = serde_json::from_value(o["bbox"].clone()).context("an object has no box")?;
            Ok(ReviewedObject { from: vec![i + 1], bbox, label, cut: None })
        })
        .collect()
}

/// `objects` with the class of each given in `classes` (one per object, in order).
pub fn relabel(objects: &[ReviewedObject], classes: &[String]) -> Result<Vec<ReviewedObject>> {
    ensure!(classes.len() == objects.len(), "{} classes for {} objects", classes.len(), objects.len());
    Ok(objects.iter().zip(classes).map(|(o, label)| ReviewedObject { label: label.clone(), ..o.clone() }).collect())
}

/// Objects `a` and `b` (0-based) as one, of class `label`, where the first of them was.
pub fn merge(objects: &[ReviewedObject], a: usize, b: usize, label: &str) -> Result<Vec<ReviewedObject>> {
    ensure!(a != b && a < objects.len() && b < objects.len(), "merge needs two objects of the cell");
    let (first, second) = (a.min(b), a.max(b));
    let (p, q) = (&objects[first], &objects[second]);
    let (x0, y0) = (p.bbox.x.min(q.bbox.x), p.bbox.y.min(q.bbox.y));
    let x1 = (p.bbox.x + p.bbox.width).max(q.bbox.x + q.bbox.width);
    let y1 = (p.bbox.y + p.bbox.height).max(q.bbox.y + q.bbox.height);
    let mut from: Vec<usize> = p.from.iter().chain(&q.from).copied().collect();
    from.sort_unstable();
    from.dedup();
    let bbox = BBox { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
    let mut out = objects.to_vec();
    out[first] = ReviewedObject { from, bbox, label: label.to_string(), cut: None };
    out.remove(second);
    Ok(out)
}

/// Object `k` (0-based) cut in two along the line through (x1, y1) and (x2, y2): each part is
/// the piece of its box on one side of the line, with the object's class (the reviewer sets
/// each part's class next).
pub fn cut(objects: &[ReviewedObject], k: usize, line: [i64; 4]) -> Result<Vec<ReviewedObject>> {
    let object = objects.get(k).context("no such object to cut")?;
    let [x1, y1, x2, y2] = line;
    ensure!((x1, y1) != (x2, y2), "a cut needs two different points");
    let b = object.bbox;
    // Each side's box: the extent of the box's pixel centres on that side of the line.
    let mut sides = [None::<(u32, u32, u32, u32)>; 2];
    for y in b.y..b.y + b.height {
        for x in b.x..b.x + b.width {
            let cross = (x2 - x1) * (i64::from(y) - y1) - (y2 - y1) * (i64::from(x) - x1);
            let side = &mut sides[usize::from(cross > 0)];
            *side = Some(side.map_or((x, y, x, y), |(a, c, d, e)| (a.min(x), c.min(y), d.max(x), e.max(y))));
        }
    }
    let parts: Vec<BBox> = sides
        .iter()
        .flatten()
        .map(|&(x0, y0, x1, y1)| BBox { x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1 })
        .filter(|p| p.width >= 2 && p.height >= 2)
        .collect();
    if parts.len() != 2 {
        bail!("the line does not cut object {} in two (its box is {}, {}, {}x{})", k + 1, b.x, b.y, b.width, b.height);
    }
    let mut out = objects.to_vec();
    let part = |bbox| ReviewedObject { from: object.from.clone(), bbox, label: object.label.clone(), cut: Some(line) };
    out.splice(k..=k, [part(parts[0]), part(parts[1])]);
    Ok(out)
}

/// The calls the analysis reads: objects marked not a chromosome left out; a recorded object
/// still whole keeps the model's call, certain if its class was moved; a merge or a part is a
/// person's call: certain, with no structure reading.
pub fn calls_now(recorded: &[Call], objects: &[ReviewedObject]) -> Result<Vec<Call>> {
    let mut calls = Vec::new();
    for o in objects.iter().filter(|o| o.label != NOT_A_CHROMOSOME) {
        let Some(class) = CLASS_NAMES.iter().position(|l| *l == o.label) else {
            bail!("{:?} is not a chromosome class", o.label)
        };
        let recorded_call = o.from.first().and_then(|i| recorded.get(i.wrapping_sub(1)));
        let recorded_call = recorded_call.context("an object names no recorded object")?;
        calls.push(if o.is_recorded_whole() {
            let mut call = recorded_call.clone();
            if call.class != class {
                (call.class, call.label, call.confidence) = (class, o.label.clone(), 1.0);
            }
            call
        } else {
            Call {
                class,
                label: o.label.clone(),
                confidence: 1.0,
                argmax: class,
                structure: "normal".to_string(),
                structure_confidence: 1.0,
                arm: None,
                position: None,
            }
        });
    }
    Ok(calls)
}

/// The cell read again with `objects` (from `before` by `edit`, if a merge or a cut).
pub fn recompute(
    cell: &Value,
    before: &[ReviewedObject],
    objects: Vec<ReviewedObject>,
    edit: Option<String>,
) -> Result<Corrected> {
    let calls = calls_now(&calls(cell)?, &objects)?;
    let changes = if before.len() == objects.len() {
        before
            .iter()
            .zip(&objects)
            .enumerate()
            .filter(|(_, (b, o))| b.label != o.label)
            .map(|(i, (b, o))| Change { object: i + 1, from: b.label.clone(), to: o.label.clone() })
            .collect()
    } else {
        Vec::new()
    };
    let (karyotype, decision) = read(cell, &calls)?;
    Ok(Corrected {
        edit,
        changes,
        classes: objects.iter().map(|o| o.label.clone()).collect(),
        objects,
        karyotype,
        verdict: decision.verdict.to_string(),
        reasons: decision.reasons,
    })
}

/// The device's reading of `calls` with the limits recorded with the cell: the karyotype (ISCN)
/// and the decision.
pub fn read(cell: &Value, calls: &[Call]) -> Result<(String, Decision)> {
    let labels: Vec<String> = CLASS_NAMES.iter().map(|l| l.to_string()).collect();
    let limits: Thresholds =
        serde_json::from_value(cell["thresholds"].clone()).context("the cell's recorded limits cannot be read")?;
    let unresolved = cell["unresolved"].as_u64().unwrap_or(0) as usize;
    let found = karyotype(calls, &labels);
    let decision = decide(&found, calls, unresolved, &limits);
    Ok((found.iscn, decision))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(labels: &[&str]) -> Value {
        let objects: Vec<Value> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let class = CLASS_NAMES.iter().position(|c| c == l).unwrap();
                serde_json::json!({"class": class, "label": l, "confidence": 0.9, "argmax": class,
                                   "structure": "normal", "structure_confidence": 0.9,
                                   "bbox": {"x": 20 * i, "y": 10, "width": 8, "height": 30}})
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
        let before = objects_now(&recorded, None).unwrap();
        assert_eq!(recompute(&recorded, &before, before.clone(), None).unwrap().karyotype, "47,XX,+9,+21,-22");

        let mut fixed: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        fixed[42] = "22".into();
        fixed[46] = NOT_A_CHROMOSOME.into();
        let corrected = recompute(&recorded, &before, relabel(&before, &fixed).unwrap(), None).unwrap();
        assert_eq!(corrected.karyotype, "46,XX");
        assert_eq!(corrected.verdict, "normal");
        assert_eq!(
            corrected.changes,
            vec![
                Change { object: 43, from: "21".into(), to: "22".into() },
                Change { object: 47, from: "9".into(), to: NOT_A_CHROMOSOME.into() }
            ]
        );
        // The next review starts from this one's objects.
        let line = serde_json::to_value(&corrected).unwrap();
        assert_eq!(objects_now(&recorded, Some(&line)).unwrap(), corrected.objects);
    }

    #[test]
    fn classes_must_match_the_objects_and_be_classes() {
        let recorded = cell(&normal_female());
        let before = objects_now(&recorded, None).unwrap();
        assert!(relabel(&before, &["1".to_string()]).is_err());
        let mut bad: Vec<String> = normal_female().iter().map(|l| l.to_string()).collect();
        bad[0] = "23".into();
        assert!(recompute(&recorded, &before, relabel(&before, &bad).unwrap(), None).is_err());
    }

    #[test]
    fn a_cut_makes_two_objects_and_a_merge_joins_them_again() {
        let recorded = cell(&normal_female());
        let before = objects_now(&recorded, None).unwrap();
        // Object 3 (a chromosome 2, box x 40..48, y 10..40) cut across at y = 25.
        let parts = cut(&before, 2, [30, 25, 60, 25]).unwrap();
        assert_eq!(parts.len(), 47);
        assert_eq!((parts[2].bbox.y, parts[2].bbox.height, parts[3].bbox.y, parts[3].bbox.height), (10, 16, 26, 14));
        assert!(parts[2].from == [3] && parts[3].from == [3] && parts[2].cut.is_some());
        let read = recompute(&recorded, &before, parts.clone(), Some("cut".into())).unwrap();
        assert_eq!(read.karyotype, "47,XX,+2");
        assert!(read.changes.is_empty() && read.edit.as_deref() == Some("cut"));
        // A line that misses the box cuts nothing.
        assert!(cut(&before, 2, [0, 0, 0, 5]).is_err());
        // Merged again: the recorded object, whole, with the model's call.
        let merged = merge(&parts, 3, 2, "2").unwrap();
        assert_eq!((merged.len(), merged[2].bbox.y, merged[2].bbox.height), (46, 10, 30));
        assert_eq!(merged, before);
        assert_eq!(recompute(&recorded, &parts, merged.clone(), None).unwrap().karyotype, "46,XX");
        // Two recorded objects merged are a person's call.
        let joined = merge(&before, 0, 1, "1").unwrap();
        assert_eq!((joined[0].from.as_slice(), joined[0].bbox.width), ([1, 2].as_slice(), 28));
        let calls = calls_now(&calls(&recorded).unwrap(), &joined).unwrap();
        assert_eq!((calls[0].confidence, calls[1].confidence), (1.0, 0.9));
        assert_eq!(recompute(&recorded, &before, joined, None).unwrap().karyotype, "45,XX,-1");
        assert!(merge(&merged, 1, 1, "2").is_err());
    }
}
