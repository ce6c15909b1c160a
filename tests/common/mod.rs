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
