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
    Ok(read_record_for(path, keep, "", u64::MAX)?.entries)
}

/// One pass over the record: every line summarised, and the whole lines of `kind` number
/// `seq` and of its latest review (a page and its pictures need all three; each pass parses
/// every line of up to `keep` files).
pub struct Reading {
    pub entries: Vec<Entry>,
    pub whole: Option<Entry>,
    pub latest_review: Option<Entry>,
}

pub fn read_record_for(path: &Path, keep: usize, kind: &str, seq: u64) -> Result<Reading> {
    let mut reading = Reading { entries: Vec::new(), whole: None, latest_review: None };
    for_each_line(path, keep, |line| {
        if let Ok(summary) = serde_json::from_str::<Summary>(line) {
            let is = |k: &str, n: u64| summary.kind == k && summary.seq == n;
            let reviews_it = summary.kind == "review"
                && summary.of_kind.as_ref().and_then(Value::as_str) == Some(kind)
                && summary.of_seq.as_ref().and_then(Value::as_u64) == Some(seq);
            let whole = || {
                serde_json::from_str(line).ok().map(|line| Entry { seq: summary.seq, kind: summary.kind.clone(), line })
            };
            if is(kind, seq) {
                reading.whole = whole();
            } else if reviews_it {
                reading.latest_review = whole();
            }
            reading.entries.push(Entry {
                seq: summary.seq,
                kind: summary.kind.clone(),
                line: serde_json::to_value(&summary)?,
            });
        }
        Ok(())
    })?;
    Ok(reading)
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
