//! The record: one JSON line per analysed cell, appended and fsynced before it is reported
//! written, so a power cut loses nothing that was acknowledged.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::{hex, Model};
use crate::pipeline::CellResult;

pub struct Recorder {
    path: PathBuf,
    file: File,
}

#[derive(Serialize)]
struct CellRecord<'a> {
    kind: &'static str,
    time_unix_ms: u128,
    origin: &'a str,
    frame_sha256: String,
    model: &'a str,
    model_sha256: &'a str,
    card_version: u32,
    thresholds: &'a crate::decide::Thresholds,
    #[serde(flatten)]
    result: &'a CellResult,
}

impl Recorder {
    pub fn open(path: &Path) -> Result<Recorder> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}: cannot open the record for appending", path.display()))?;
        Ok(Recorder { path: path.to_path_buf(), file })
    }

    /// Appends one cell and returns once the line is on stable storage.
    pub fn cell(
        &mut self,
        origin: &str,
        frame: &image::GrayImage,
        model: &Model,
        thresholds: &crate::decide::Thresholds,
        result: &CellResult,
    ) -> Result<()> {
        let record = CellRecord {
            kind: "cell",
            time_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0),
            origin,
            frame_sha256: hex(&Sha256::digest(frame.as_raw())),
            model: &model.card.name,
            model_sha256: &model.sha256,
            card_version: model.card.card_version,
            thresholds,
            result,
        };
        let mut line = serde_json::to_vec(&record)?;
        line.push(b'\n');
        // One write of the whole line: O_APPEND keeps concurrent writers from interleaving.
        self.file
            .write_all(&line)
            .and_then(|_| self.file.sync_data())
            .with_context(|| format!("{}: cannot write the record", self.path.display()))
    }
}
