//! What the integration tests that drive the real binary share.
#![allow(dead_code)] // each test crate uses its own subset

pub mod station;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the built `karyoscreen` binary with `args`.
pub fn karyoscreen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_karyoscreen")).args(args).output().expect("binary runs")
}

/// An empty scratch folder `<target tmp>/<suite>/<name>`, emptied first.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(suite).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A labelled set of the shared data (`$KARYOSCREEN_DATA/<name>`, default `../shared/data`).
pub fn data_set(name: &str) -> PathBuf {
    let dir = std::env::var_os("KARYOSCREEN_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
        .join(name);
    assert!(dir.join("labels.csv").is_file(), "{}: no labelled set here (set KARYOSCREEN_DATA)", dir.display());
    dir
}

/// A row of a set's labels.csv, the columns these tests read.
#[derive(serde::Deserialize)]
pub struct LabelRow {
    pub path: String,
    pub label_idx: usize,
    pub cell_id: String,
    pub split: String,
}
