//! The review station: a person reads what the device recorded and signs off, in a browser on
//! the lab network, served by the device itself. What is read is the record (the audit trail);
//! what a reviewer decides is appended to it as new lines (`"kind":"signoff"`) that name the
//! sequence number and frame of what was reviewed. Nothing earlier is rewritten.

pub mod accounts;
pub mod correct;
mod pages;
pub mod pictures;
pub mod server;

use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One line of the record.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub kind: String,
    pub line: serde_json::Value,
}

/// What the station lists of a line: the heavy parts (a cell's objects, timings) are skipped
/// while parsing, so reading a full record takes little memory.
#[derive(Deserialize, Serialize)]
struct Summary {
    seq: u64,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time_unix_ms: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    frame_sha256: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    karyotype: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verdict: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reasons: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    frames: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    of_kind: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    of_seq: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reviewer: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decision: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iscn: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    comment: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    classes: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    changes: Option<Value>,
}

/// Calls `each` with every whole line of the record's files (FILE and its `keep - 1`
/// rotations), oldest first; a torn last line (a crash mid-write, never acknowledged) is skipped.
fn for_each_line(path: &Path, keep: usize, mut each: impl FnMut(&str) -> Result<()>) -> Result<()> {
    for file in crate::integrity::record::record_files(path, keep) {
        let reader = BufReader::new(
            std::fs::File::open(&file).with_context(|| format!("{}: cannot read the record", file.display()))?,
        );
        for line in reader.lines() {
            each(&line.with_context(|| format!("{}: cannot read the record", file.display()))?)?;
        }
    }
    Ok(())
}

/// Every line of the record, summarised (see [`Summary`]), in order.
pub fn read_record(path: &Path, keep: usize) -> Result<Vec<Entry>> {
    Ok(read_record_for(path, keep, Wanted::Summaries)?.entries)
}

/// Which entry's whole line a pass over the record also keeps.
#[derive(Debug, Clone, Copy)]
pub enum Wanted<'a> {
    Summaries,
    /// `kind` number `seq`.
    Entry(&'a str, u64),
    /// The newest cell (the live view).
    NewestCell,
}

/// One pass over the record: every line summarised, and the whole lines of the wanted entry
/// and of its latest review (a page and its pictures need all three; each pass parses every
/// line of up to `keep` files).
pub struct Reading {
    pub entries: Vec<Entry>,
    pub whole: Option<Entry>,
    pub latest_review: Option<Entry>,
}

pub fn read_record_for(path: &Path, keep: usize, wanted: Wanted) -> Result<Reading> {
    let mut entries = Vec::new();
    let mut target = match wanted {
        Wanted::Entry(kind, seq) => Some((kind.to_string(), seq)),
        Wanted::Summaries | Wanted::NewestCell => None,
    };
    // The lines as read: parsed whole once, at the end.
    let (mut whole, mut review): (Option<String>, Option<String>) = (None, None);
    for_each_line(path, keep, |line| {
        let Ok(summary) = serde_json::from_str::<Summary>(line) else { return Ok(()) };
        if matches!(wanted, Wanted::NewestCell) && summary.kind == "cell" {
            // A review always follows what it reviews in the record.
            (target, review) = (Some(("cell".to_string(), summary.seq)), None);
        }
        if let Some((kind, seq)) = &target {
            if summary.kind == *kind && summary.seq == *seq {
                whole = Some(line.to_string());
            } else if summary.kind == "review"
                && summary.of_kind.as_ref().and_then(Value::as_str) == Some(kind.as_str())
                && summary.of_seq.as_ref().and_then(Value::as_u64) == Some(*seq)
            {
                review = Some(line.to_string());
            }
        }
        entries.push(Entry { seq: summary.seq, kind: summary.kind.clone(), line: serde_json::to_value(&summary)? });
        Ok(())
    })?;
    let parse = |line: Option<String>| {
        let line: Value = serde_json::from_str(&line?).ok()?;
        Some(Entry { seq: line["seq"].as_u64()?, kind: line["kind"].as_str()?.to_string(), line })
    };
    Ok(Reading { entries, whole: parse(whole), latest_review: parse(review) })
}

/// A reviewer's decision on one cell or case, as appended to the record.
#[derive(Debug, Clone, Serialize)]
pub struct Signoff {
    /// `cell` or `case`.
    pub of_kind: String,
    pub of_seq: u64,
    /// The frame's sha256 for a cell; the case's frames' for a case.
    pub frame_sha256: Vec<String>,
    pub reviewer: String,
    /// `confirmed` (the call stands) or `rejected` (it does not; the comment says why).
    pub decision: String,
    /// The karyotype as signed (ISCN).
    pub iscn: String,
    pub comment: String,
    /// The review (corrections) whose result was signed, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_seq: Option<u64>,
}

/// A reviewer's corrections to a cell and what they make of it, as appended to the record.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub of_kind: String,
    pub of_seq: u64,
    pub frame_sha256: Vec<String>,
    pub reviewer: String,
    #[serde(flatten)]
    pub corrected: correct::Corrected,
}

/// The cell a case's frame was recorded as: the latest cell line before the case with that
/// frame's sha256.
pub fn cell_of_frame<'a>(entries: &'a [Entry], case_seq: u64, frame_sha256: &Value) -> Option<&'a Entry> {
    entries.iter().rev().find(|e| e.kind == "cell" && e.seq < case_seq && e.line["frame_sha256"] == *frame_sha256)
}

/// The latest review of `kind` number `seq` among `entries`.
pub fn latest_review<'a>(entries: &'a [Entry], kind: &str, seq: u64) -> Option<&'a Entry> {
    entries
        .iter()
        .rev()
        .find(|e| e.kind == "review" && e.line["of_seq"].as_u64() == Some(seq) && e.line["of_kind"] == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_keeps_the_wanted_line_and_its_latest_review() {
        let path = std::env::temp_dir().join(format!("karyoscreen-reading-{}.jsonl", std::process::id()));
        let review = |seq: u64, of: u64, mark: &str| {
            format!(r#"{{"seq":{seq},"kind":"review","of_kind":"cell","of_seq":{of},"comment":"{mark}"}}"#)
        };
        let lines = [
            r#"{"seq":1,"kind":"cell","karyotype":"46,XX"}"#.to_string(),
            review(2, 1, "first of 1"),
            r#"{"seq":3,"kind":"cell","karyotype":"47,XY,+21"}"#.to_string(),
            review(4, 3, "first of 3"),
            review(5, 3, "last of 3"),
            review(6, 1, "last of 1"),
            r#"{"seq":7,"kind":"case","frames":[]}"#.to_string(),
            r#"{"seq":8,"kind":"cell","karyotype":"45,X"}"#.to_string(),
        ];
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let read = |wanted| read_record_for(&path, 1, wanted).unwrap();
        let comment = |e: Option<Entry>| e.map(|e| e.line["comment"].as_str().unwrap_or_default().to_string());

        let newest = read(Wanted::NewestCell);
        assert_eq!(newest.entries.len(), 8);
        assert_eq!(newest.whole.as_ref().map(|e| (e.seq, e.line["karyotype"].clone())), Some((8, "45,X".into())));
        assert!(newest.latest_review.is_none(), "the reviews before it are of other cells");

        let third = read(Wanted::Entry("cell", 3));
        assert_eq!(comment(third.latest_review).as_deref(), Some("last of 3"));

        let first = read(Wanted::Entry("cell", 1));
        assert_eq!(first.whole.map(|e| e.seq), Some(1));
        assert_eq!(comment(first.latest_review).as_deref(), Some("last of 1"));

        let case = read(Wanted::Entry("case", 7));
        assert_eq!((case.whole.map(|e| e.kind), case.latest_review.is_none()), (Some("case".into()), true));
        let summaries = read(Wanted::Summaries);
        assert!(summaries.whole.is_none() && summaries.latest_review.is_none());
        let _ = std::fs::remove_file(&path);
    }
}
