//! Frames kept beside the record, so that a reviewer sees what the device saw: every recorded
//! cell's frame as `DIR/<frame sha256>.png`, lossless 8-bit grey (the very pixels the record's
//! `frame_sha256` is of). Each is written whole (a temporary file, fsync, rename) before its
//! record line, and the oldest are removed once the folder passes its size bound, so an SD
//! card never fills with frames.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use image::GrayImage;

pub struct FrameStore {
    dir: PathBuf,
    max_bytes: u64,
    /// The folder's frames in bytes as last listed, plus what was kept since; `UNLISTED`
    /// until the first frame. The folder is listed again only when this passes `max_bytes`,
    /// not for every cell.
    held: AtomicU64,
}

const UNLISTED: u64 = u64::MAX;

/// A frame's file name in a store, if `sha256` is one (64 lowercase hex digits): nothing else
/// ever names a file, so a recorded value cannot point outside the folder.
fn file_name(sha256: &str) -> Option<String> {
    let hex = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    hex.then(|| format!("{sha256}.png"))
}

impl FrameStore {
    /// Keeps frames in `dir` (created if needed), at most `max_bytes` of them.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<FrameStore> {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the frames folder", dir.display()))?;
        if !dir.is_dir() {
            bail!("{}: the frames folder is not a folder", dir.display());
        }
        Ok(FrameStore { dir: dir.to_path_buf(), max_bytes, held: AtomicU64::new(UNLISTED) })
    }

    /// Writes `frame` (whose sha256 is `sha256`) unless the store already holds it, then prunes.
    pub fn keep(&self, frame: &GrayImage, sha256: &str) -> Result<()> {
        let name = file_name(sha256).with_context(|| format!("{sha256:?} is not a frame sha256"))?;
        let path = self.dir.join(&name);
        let mut added = 0;
        if !path.exists() {
            let mut png = Vec::new();
            frame
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .context("cannot encode the frame as PNG")?;
            let temporary = self.dir.join(format!(".{name}.partial"));
            let written = std::fs::File::create(&temporary)
                .and_then(|mut f| f.write_all(&png).and_then(|_| f.sync_all()))
                .and_then(|_| std::fs::rename(&temporary, &path));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&temporary);
                return Err(e).with_context(|| format!("{}: cannot keep the frame", path.display()));
            }
            added = png.len() as u64;
        }
        let held = self.held.load(Ordering::Relaxed);
        if held != UNLISTED && held + added <= self.max_bytes {
            self.held.store(held + added, Ordering::Relaxed);
            return Ok(());
        }
        self.prune(&path)
    }

    /// Removes the oldest frames (by modification time) until the store is within its bound;
    /// `newest` (the frame just kept) stays whatever its size.
    fn prune(&self, newest: &Path) -> Result<()> {
        self.held.store(UNLISTED, Ordering::Relaxed); // until listed and pruned whole
        let mut frames: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&self.dir).with_context(|| format!("{}: cannot list", self.dir.display()))? {
            let entry = entry?;
            let name = entry.file_name();
            let is_frame = name.to_str().and_then(|n| n.strip_suffix(".png")).is_some_and(|s| file_name(s).is_some());
            let meta = entry.metadata()?;
            if is_frame && meta.is_file() {
                frames.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len(), entry.path()));
            }
        }
        let mut total: u64 = frames.iter().map(|f| f.1).sum();
        frames.sort();
        for (_, size, path) in frames {
            if total <= self.max_bytes {
                break;
            }
            if path != newest {
                std::fs::remove_file(&path).with_context(|| format!("{}: cannot remove", path.display()))?;
                total -= size;
            }
        }
        self.held.store(total, Ordering::Relaxed);
        Ok(())
    }
}

/// The kept frame with this sha256 in `dir`, if there is one.
pub fn kept_frame(dir: &Path, sha256: &str) -> Option<PathBuf> {
    file_name(sha256).map(|name| dir.join(name)).filter(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::record::frame_sha256;

    #[test]
    fn frames_are_kept_by_sha256_and_the_oldest_go_first() {
        let dir = std::env::temp_dir().join(format!("karyoscreen-frames-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let frames: Vec<GrayImage> =
            (0..4u8).map(|i| GrayImage::from_fn(64, 48, |x, y| image::Luma([(x * 3 + y * 5) as u8 ^ i]))).collect();
        let one = {
            let mut png = Vec::new();
            frames[0].write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
            png.len() as u64
        };
        // room for about two frames
        let store = FrameStore::open(&dir, one * 5 / 2).unwrap();
        for frame in &frames {
            store.keep(frame, &frame_sha256(frame)).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20)); // distinct modification times
        }
        let kept: Vec<bool> = frames.iter().map(|f| kept_frame(&dir, &frame_sha256(f)).is_some()).collect();
        assert_eq!(kept, [false, false, true, true]);
        let newest = kept_frame(&dir, &frame_sha256(&frames[3])).unwrap();
        assert_eq!(image::open(newest).unwrap().to_luma8(), frames[3], "the kept pixels differ");
        // what is not a sha256 names no file
        assert!(kept_frame(&dir, "../../etc/passwd").is_none());
        assert!(store.keep(&frames[0], "not-a-sha").is_err());
        assert!(!std::fs::read_dir(&dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial")));
    }
}
