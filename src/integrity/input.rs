//! Reading the files a user points the program at: regular files only, opened without blocking
//! (a FIFO or a device is refused at once, never waited on or read until memory runs out), and
//! read up to a stated size. Every limit is named in the error.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Largest frame file read (a 2048×1536 16-bit TIFF is 6 MiB; bombs are refused by size).
pub const MAX_FRAME_FILE: u64 = 256 << 20;
/// Largest model file: the shipped int8 network is about 0.5 MiB.
pub const MAX_MODEL_FILE: u64 = 64 << 20;
/// Largest text file: cards, signatures, keys, board profiles, label tables.
pub const MAX_TEXT_FILE: u64 = 16 << 20;

/// Opens `path` for reading if it is a regular file; `what` names it in errors ("model").
pub fn open_regular(path: &Path, what: &str) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("{}: cannot read {what}", path.display()))?;
    let kind = file.metadata().with_context(|| format!("{}: cannot read {what}", path.display()))?.file_type();
    if !kind.is_file() {
        let is = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "something else"
        };
        bail!("{}: cannot read {what}: it is {is}, not a regular file", path.display());
    }
    Ok(file)
}

/// The bytes of the regular file at `path`, refused above `limit` bytes.
pub fn read_regular(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let file = open_regular(path, what)?;
    let too_big = || format!("{}: cannot read {what}: larger than the {} MiB allowed", path.display(), limit >> 20);
    let len = file.metadata().with_context(|| format!("{}: cannot read {what}", path.display()))?.len();
    if len > limit {
        bail!(too_big());
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1).read_to_end(&mut bytes).with_context(|| format!("{}: cannot read {what}", path.display()))?;
    if bytes.len() as u64 > limit {
        bail!(too_big()); // it grew while being read
    }
    Ok(bytes)
}

/// [`read_regular`] for UTF-8 text at most [`MAX_TEXT_FILE`] bytes.
pub fn read_text(path: &Path, what: &str) -> Result<String> {
    String::from_utf8(read_regular(path, MAX_TEXT_FILE, what)?)
        .map_err(|_| anyhow::anyhow!("{}: cannot read {what}: not UTF-8 text", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_are_refused_without_blocking_and_sizes_are_bounded() {
        let dir = std::env::temp_dir().join(format!("karyoscreen-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let error = read_regular(&fifo, 10, "model").unwrap_err().to_string();
        assert!(error.contains("a FIFO, not a regular file"), "{error}");
        let error = read_regular(Path::new("/dev/zero"), 10, "card").unwrap_err().to_string();
        assert!(error.contains("a device"), "{error}");
        assert!(format!("{:#}", read_regular(&dir, 10, "key").unwrap_err()).contains("a directory"));
        let file = dir.join("eleven");
        std::fs::write(&file, b"eleven byte").unwrap();
        assert_eq!(read_regular(&file, 11, "frame").unwrap(), b"eleven byte");
        assert!(read_regular(&file, 10, "frame").unwrap_err().to_string().contains("larger than"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
