//! The record (audit trail): one JSON line per analysed cell (`"kind":"cell"`) and per case
//! verdict (`"kind":"case"`), appended to FILE.
//!
//! Guarantees, for a power cut or a kill at any moment:
//! - A record is acknowledged (the append returns its sequence number) only after its one
//!   `write` and the `fdatasync` that follows have returned: an acknowledged record survives.
//! - Every line parses: a line cut short by a crash was never acknowledged, and the next open
//!   truncates it away (with a warning) before writing.
//! - `seq` rises by one per record, across restarts and rotations (recovered from the last line
//!   on open), so a reader can prove that nothing between two records is missing.
//! - Size bound: a record that would take FILE past `max_bytes` first rotates
//!   FILE → FILE.1 → FILE.2 …, keeping `keep` files in all (FILE included; the oldest is
//!   dropped). A line never spans files; the directory is fsynced after every rename and
//!   creation. Old data is never rewritten: appends and renames only, one fdatasync per record
//!   (SD-card friendly).
//! - Several processes may append to one FILE (the run loop, the review station, `analyze`):
//!   each append holds `<FILE>.lock` for its one write and first catches up with what the others
//!   wrote (their last `seq`, a rotation, a torn line left by one that died mid-write).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::integrity::card::sha256_hex;
use crate::integrity::frame_store::FrameStore;
// What a line holds comes from the analysis; opening, checking and appending need none of it,
// so the reader builds (and is fuzzed) without the inference engine.
#[cfg(feature = "inference")]
use crate::{pipeline::decide::Thresholds, pipeline::infer::Model, pipeline::CellResult, tools::case::CaseReport};

/// Rotate before a file passes 8 MiB …
pub const DEFAULT_MAX_BYTES: u64 = 8 << 20;
/// … and keep 8 files (FILE, FILE.1 … FILE.7): at most 64 MiB on the card.
pub const DEFAULT_KEEP: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordOptions {
    /// A record that would take the current file past this many bytes goes to a new file.
    pub max_bytes: u64,
    /// Files kept, the current one included (at least 2).
    pub keep: usize,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions { max_bytes: DEFAULT_MAX_BYTES, keep: DEFAULT_KEEP }
    }
}

pub struct Recorder {
    path: PathBuf,
    file: File,
    /// Bytes in the current file, all of them complete, synced lines.
    size: u64,
    /// The last sequence number written (0: none yet).
    seq: u64,
    options: RecordOptions,
    /// Set when a failed append could not be undone: further appends are refused.
    broken: bool,
    lock: RecordLock,
    /// Where each recorded cell's frame is kept for review, if anywhere.
    frames: Option<FrameStore>,
}

/// Largest sequence number accepted from an existing record: far beyond any device's life, and
/// exact in every JSON reader (2^53).
const MAX_SEQ: u64 = 1 << 53;

/// `<record>.lock`: every append (and the repair on open) holds it, so that the lines of
/// several writers never interleave and each continues the others' sequence.
struct RecordLock {
    file: File,
    path: PathBuf,
}

/// How long an append waits for another writer's append (one write and one fdatasync).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl RecordLock {
    fn open(record: &Path) -> Result<RecordLock> {
        let mut name = record.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        let path = record.with_file_name(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("{}: cannot open the record's lock file", path.display()))?;
        Ok(RecordLock { file, path })
    }

    /// Holds the lock until the guard drops, waiting up to [`LOCK_WAIT`] for another writer.
    fn hold(&self, record: &Path) -> Result<LockGuard> {
        let clock = std::time::Instant::now();
        // SAFETY: flock on a descriptor this lock owns.
        while unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            if clock.elapsed() > LOCK_WAIT {
                bail!(
                    "{}: another process has held the record's lock {} for over {} s; if it is stuck, stop it",
                    record.display(),
                    self.path.display(),
                    LOCK_WAIT.as_secs()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(LockGuard(self.file.as_raw_fd()))
    }
}

/// Unlocks on drop. Holds the descriptor number only, so that the recorder stays free to
/// update itself under the lock; the lock's file outlives every guard (both live in the
/// recorder, the guard only within one call).
struct LockGuard(std::os::fd::RawFd);

impl Drop for LockGuard {
    fn drop(&mut self) {
        // SAFETY: unlocking the descriptor `hold` locked, still open (see above).
        unsafe { libc::flock(self.0, libc::LOCK_UN) };
    }
}

/// Refuses to append to (or repair) a file that is not a record: every record line starts
/// with `{"kind":"`, so a frame, a text file or a device given as `--record` is left untouched.
fn check_is_record(path: &Path) -> Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot open the record", path.display())),
    };
    if !meta.is_file() {
        bail!("{}: cannot open the record: not a regular file", path.display());
    }
    if meta.len() == 0 {
        return Ok(());
    }
    let mut start = [0u8; RECORD_START.len()];
    let read = File::open(path).and_then(|mut f| f.read_exact(&mut start));
    if read.is_err() || start != RECORD_START {
        bail!(
            "{}: not a karyoscreen record (it does not start with a record line); refusing to append to it — give --record a new file or an existing record",
            path.display()
        );
    }
    Ok(())
}

/// How every record line begins (the envelope's first field).
const RECORD_START: &[u8] = b"{\"kind\":\"";

/// What every line starts with.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    kind: &'static str,
    seq: u64,
    time_unix_ms: u128,
    #[serde(flatten)]
    body: &'a T,
}

#[cfg(feature = "inference")]
#[derive(Serialize)]
struct CellRecord<'a> {
    origin: &'a str,
    frame_sha256: String,
    model: &'a str,
    model_sha256: &'a str,
    card_version: u32,
    thresholds: &'a Thresholds,
    #[serde(flatten)]
    result: &'a CellResult,
}

/// One frame of a case, as the case record names it.
#[derive(Debug, Clone, Serialize)]
pub struct CaseFrame {
    pub origin: String,
    pub frame_sha256: String,
}

#[cfg(feature = "inference")]
#[derive(Serialize)]
struct CaseRules {
    count: usize,
    analyse: usize,
}

#[cfg(feature = "inference")]
#[derive(Serialize)]
struct CaseRecord<'a> {
    model: &'a str,
    model_sha256: &'a str,
    card_version: u32,
    thresholds: &'a Thresholds,
    case_rules: CaseRules,
    frames: &'a [CaseFrame],
    /// The case summary: counts, modal number, clones, karyotype, verdict, reasons, cells.
    #[serde(flatten)]
    report: &'a CaseReport,
}

/// The sha256 of a frame's 8-bit gray pixels, as the record names frames.
pub fn frame_sha256(frame: &image::GrayImage) -> String {
    sha256_hex(frame.as_raw())
}

/// FILE for `n == 0`, else FILE.n (FILE.1 the newest rotated file).
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The record files that exist among the `keep` of FILE, oldest first (FILE last).
pub fn record_files(path: &Path, keep: usize) -> Vec<PathBuf> {
    (0..keep.max(1)).rev().map(|n| rotated_path(path, n)).filter(|p| p.is_file()).collect()
}

impl Recorder {
    /// Opens FILE with the default size bound ([`RecordOptions::default`]).
    pub fn open(path: &Path) -> Result<Recorder> {
        Recorder::open_with(path, RecordOptions::default())
    }

    /// Opens FILE for appending: drops a torn last line left by a crash, recovers the sequence
    /// number from the last record, creates FILE (and syncs its directory) if needed.
    pub fn open_with(path: &Path, options: RecordOptions) -> Result<Recorder> {
        if options.keep < 2 {
            bail!("the record must keep at least 2 files (got {})", options.keep);
        }
        if options.max_bytes == 0 {
            bail!("the record's size bound must be above 0 bytes");
        }
        // Before anything is read or repaired: no other writer mid-append, and only a record's files.
        let lock = RecordLock::open(path)?;
        let guard = lock.hold(path)?;
        for n in 0..options.keep {
            check_is_record(&rotated_path(path, n))?;
        }
        // The sequence first (it skips a torn tail): a record refused for its seq is left as
        // it was, and only one that will be written to has its torn tail cut.
        let mut seq = None;
        let files: Vec<PathBuf> = (0..options.keep).map(|n| rotated_path(path, n)).filter(|f| f.is_file()).collect();
        for file in &files {
            if seq.is_none() {
                seq = last_seq(file)?;
            }
        }
        for file in &files {
            repair_torn_tail(file)?;
        }
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}: cannot open the record for appending", path.display()))?;
        if !existed {
            sync_dir(path)?;
        }
        let size = file.metadata().with_context(|| format!("{}: cannot stat the record", path.display()))?.len();
        drop(guard);
        Ok(Recorder {
            path: path.to_path_buf(),
            file,
            size,
            seq: seq.unwrap_or(0),
            options,
            broken: false,
            lock,
            frames: None,
        })
    }

    /// Under the lock, before an append: follows another writer's rotation to the new FILE, cuts
    /// a torn line one left by dying mid-write, and continues from its last `seq`.
    fn catch_up(&mut self) -> Result<()> {
        let ours = self.file.metadata().with_context(|| format!("{}: cannot stat the record", self.path.display()))?;
        let rotated = match std::fs::metadata(&self.path) {
            Ok(now) => (now.dev(), now.ino()) != (ours.dev(), ours.ino()),
            Err(_) => true,
        };
        if rotated {
            let existed = self.path.exists();
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .with_context(|| format!("{}: cannot open the record for appending", self.path.display()))?;
            if !existed {
                sync_dir(&self.path)?;
            }
        }
        let size = self.file.metadata()?.len();
        if rotated || size != self.size {
            repair_torn_tail(&self.path)?;
            for n in 0..self.options.keep {
                let file = rotated_path(&self.path, n);
                if let Some(seq) = if file.is_file() { last_seq(&file)? } else { None } {
                    self.seq = self.seq.max(seq);
                    break;
                }
            }
            self.size = self.file.metadata()?.len();
        }
        Ok(())
    }

    /// Keeps every recorded cell's frame in `store` (before the cell's line is written).
    pub fn keep_frames(&mut self, store: FrameStore) {
        self.frames = Some(store);
    }

    /// The sequence number of the last record written (0 if none ever was).
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// Appends one cell; returns its sequence number once the line is on stable storage.
    #[cfg(feature = "inference")]
    pub fn cell(
        &mut self,
        origin: &str,
        frame: &image::GrayImage,
        model: &Model,
        thresholds: &Thresholds,
        result: &CellResult,
    ) -> Result<u64> {
        let sha256 = frame_sha256(frame);
        if let Some(store) = &self.frames {
            // The result matters more than its picture: a frame that cannot be kept (a full
            // card) is said in the log, and the cell is still recorded.
            if let Err(e) = store.keep(frame, &sha256) {
                log::warn!("{origin}: frame not kept for review: {e:#}");
            }
        }
        let record = CellRecord {
            origin,
            frame_sha256: sha256,
            model: &model.card.name,
            model_sha256: &model.sha256,
            card_version: model.card.card_version,
            thresholds,
            result,
        };
        self.append("cell", &record)
    }

    /// Appends one case verdict (the tally of `frames`, with the count/analyse rules it used);
    /// returns its sequence number once the line is on stable storage.
    #[cfg(feature = "inference")]
    pub fn case(
        &mut self,
        model: &Model,
        thresholds: &Thresholds,
        count: usize,
        analyse: usize,
        frames: &[CaseFrame],
        report: &CaseReport,
    ) -> Result<u64> {
        let record = CaseRecord {
            model: &model.card.name,
            model_sha256: &model.sha256,
            card_version: model.card.card_version,
            thresholds,
            case_rules: CaseRules { count, analyse },
            frames,
            report,
        };
        self.append("case", &record)
    }

    /// Appends one line of `kind` with `body`'s fields; returns its sequence number once the
    /// line is on stable storage.
    pub fn append<T: Serialize>(&mut self, kind: &'static str, body: &T) -> Result<u64> {
        if self.broken {
            bail!("{}: the record is unusable after a failed write; restart to recover it", self.path.display());
        }
        let _guard = self.lock.hold(&self.path)?;
        self.catch_up()?;
        self.append_held(kind, body)
    }

    /// [`Recorder::append`] with the lock held.
    fn append_held<T: Serialize>(&mut self, kind: &'static str, body: &T) -> Result<u64> {
        let seq = self.seq + 1;
        let time_unix_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let mut line = serde_json::to_vec(&Envelope { kind, seq, time_unix_ms, body })?;
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.options.max_bytes {
            self.rotate()?;
        }
        // One write of the whole line, then fdatasync: only then is the record acknowledged.
        if let Err(error) = self.file.write_all(&line).and_then(|_| self.file.sync_data()) {
            // Undo a partial line so that the file still ends on a complete record.
            if self.file.set_len(self.size).and_then(|_| self.file.sync_data()).is_err() {
                self.broken = true;
            }
            return Err(error).with_context(|| format!("{}: cannot write the record", self.path.display()));
        }
        self.size += line.len() as u64;
        self.seq = seq;
        Ok(seq)
    }

    /// FILE.(keep-2) → FILE.(keep-1) (dropping the oldest) … FILE → FILE.1, then a new FILE.
    /// Only the files below the first gap move (a gap: a crash in an earlier rotation), which
    /// fills it. Each rename is made durable before the next, so a crash at any point loses no
    /// line and leaves the files in order (a higher suffix is older).
    fn rotate(&mut self) -> Result<()> {
        let keep = self.options.keep;
        let mut top = 1;
        while top < keep - 1 && rotated_path(&self.path, top).exists() {
            top += 1;
        }
        for n in (0..top).rev() {
            let (from, to) = (rotated_path(&self.path, n), rotated_path(&self.path, n + 1));
            if let Err(e) = std::fs::rename(&from, &to) {
                self.broken = true;
                return Err(e).with_context(|| {
                    format!("rotating the record: cannot rename {} to {}", from.display(), to.display())
                });
            }
            sync_dir(&self.path)?;
        }
        let opened = OpenOptions::new().create(true).append(true).open(&self.path);
        self.file = match opened {
            Ok(file) => file,
            Err(e) => {
                self.broken = true;
                return Err(e).with_context(|| format!("{}: cannot create the record", self.path.display()));
            }
        };
        sync_dir(&self.path)?;
        self.size = self.file.metadata()?.len();
        log::info!("{}: record rotated (bound {} bytes, {keep} files)", self.path.display(), self.options.max_bytes);
        Ok(())
    }
}

/// Makes a creation or rename in FILE's directory durable.
fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("{}: cannot sync the record's directory", dir.display()))
}

/// Truncates a file that does not end in a newline back to its last newline: the tail is a
/// write cut short (power loss), never acknowledged. Returns the bytes dropped.
fn repair_torn_tail(path: &Path) -> Result<u64> {
    let mut file =
        File::open(path).with_context(|| format!("{}: cannot open the record to check it", path.display()))?;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk).with_context(|| format!("{}: cannot read the record", path.display()))?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            break start + i as u64 + 1;
        }
        end = start;
    };
    if keep < len {
        // Opened for writing only when needed: archived, read-only files are fine as they are.
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|file| file.set_len(keep).and_then(|_| file.sync_all()))
            .with_context(|| format!("{}: cannot truncate the torn last line of the record", path.display()))?;
        log::warn!(
            "{}: dropped a torn last line ({} bytes, never acknowledged) left by an interrupted write",
            path.display(),
            len - keep
        );
    }
    Ok(len - keep)
}

/// The `seq` of the last line of a file that parses (0 for a record older than sequence
/// numbers); `None` if no line parses. Reads backwards, so a long file costs one chunk.
fn last_seq(path: &Path) -> Result<Option<u64>> {
    let mut file = File::open(path).with_context(|| format!("{}: cannot read the record", path.display()))?;
    let len = file.metadata()?.len();
    // Everything from `start` to `end` (exclusive) that has not been looked at yet, lines whole.
    let mut end = len;
    let mut chunk = 64 * 1024u64;
    let mut skipped = 0;
    while end > 0 {
        let start = end.saturating_sub(chunk);
        let mut buf = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf).with_context(|| format!("{}: cannot read the record", path.display()))?;
        // Unless at the file's start, the first piece may be part of a longer line: leave it.
        let first_whole =
            if start == 0 { 0 } else { buf.iter().position(|&b| b == b'\n').map_or(buf.len(), |i| i + 1) };
        if first_whole == buf.len() && start > 0 {
            chunk *= 2; // one line longer than the chunk
            continue;
        }
        for line in buf[first_whole..].split(|&b| b == b'\n').rev() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(value) => {
                    if skipped > 0 {
                        log::warn!("{}: {skipped} unreadable line(s) at the end of the record", path.display());
                    }
                    return match value.get("seq").and_then(|s| s.as_u64()) {
                        Some(seq) if seq <= MAX_SEQ => Ok(Some(seq)),
                        _ => bail!(
                            "{}: the last record line has no valid seq (an integer up to 2^53); the sequence cannot continue — give --record a new file",
                            path.display()
                        ),
                    };
                }
                Err(_) => skipped += 1,
            }
        }
        end = start + first_whole as u64;
    }
    if skipped > 0 {
        log::warn!("{}: {skipped} unreadable line(s), none readable", path.display());
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("karyoscreen-record-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("audit.jsonl")
    }

    #[derive(Serialize)]
    struct Body {
        payload: String,
    }

    fn write(recorder: &mut Recorder, bytes: usize) -> u64 {
        recorder.append("test", &Body { payload: "x".repeat(bytes) }).unwrap()
    }

    fn seqs(path: &Path) -> Vec<u64> {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{}: ends mid-line", path.display());
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_u64().unwrap()).collect()
    }

    #[test]
    fn writers_sharing_a_record_continue_each_others_sequence() {
        let path = scratch("shared");
        let options = RecordOptions { max_bytes: 600, keep: 4 };
        let mut run_loop = Recorder::open_with(&path, options).unwrap();
        let mut station = Recorder::open_with(&path, options).unwrap();
        let mut written = Vec::new();
        for round in 0..6 {
            written.push(write(&mut run_loop, 150));
            written.push(write(&mut station, 40 + round));
        }
        // A writer that died mid-line leaves a torn tail; the next append cuts it first.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(br#"{"kind":"te"#).unwrap();
        written.push(write(&mut run_loop, 10));
        assert_eq!(written, (1..=13).collect::<Vec<u64>>());
        // Both rotated the files in turn: every line is whole and in order across them.
        let on_disk: Vec<u64> = record_files(&path, 4).iter().flat_map(|f| seqs(f)).collect();
        assert!(rotated_path(&path, 2).exists(), "no rotation happened");
        assert_eq!(on_disk, (on_disk[0]..=13).collect::<Vec<u64>>());
    }

    #[test]
    fn record_rotation_bounds_files_and_keeps_order() {
        let path = scratch("rotate");
        let options = RecordOptions { max_bytes: 1000, keep: 3 };
        let mut recorder = Recorder::open_with(&path, options).unwrap();
        let mut last = 0;
        for _ in 0..40 {
            last = write(&mut recorder, 200);
        }
        assert_eq!(last, 40);
        let files = record_files(&path, 10);
        assert_eq!(files, [rotated_path(&path, 2), rotated_path(&path, 1), path.clone()], "exactly keep files");
        let all: Vec<u64> = files.iter().flat_map(|f| seqs(f)).collect();
        assert_eq!(*all.last().unwrap(), 40);
        assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "oldest file first, no gaps: {all:?}");
        for file in &files {
            assert!(std::fs::metadata(file).unwrap().len() <= 1000, "{}", file.display());
        }

        // A restart continues the sequence and the rotation.
        drop(recorder);
        let mut recorder = Recorder::open_with(&path, options).unwrap();
        assert_eq!(recorder.last_seq(), 40);
        assert_eq!(write(&mut recorder, 200), 41);
        // A line longer than the bound gets a file of its own rather than spanning two.
        assert_eq!(write(&mut recorder, 3000), 42);
        assert_eq!(seqs(&path), [42]);
        assert_eq!(write(&mut recorder, 10), 43);
        assert_eq!(seqs(&path), [43]);
        assert_eq!(seqs(&rotated_path(&path, 1)), [42]);
        assert!(!rotated_path(&path, 3).exists());

        // A kill between two renames of a rotation (FILE.1 → FILE.2 done, FILE → FILE.1 not)
        // leaves a gap; the next rotation moves only what is below it.
        drop(recorder);
        std::fs::rename(rotated_path(&path, 1), rotated_path(&path, 2)).unwrap();
        let mut recorder = Recorder::open_with(&path, options).unwrap();
        assert_eq!(write(&mut recorder, 900), 44);
        assert_eq!(seqs(&rotated_path(&path, 2)), [42]);
        assert_eq!(seqs(&rotated_path(&path, 1)), [43]);
        assert_eq!(seqs(&path), [44]);
        assert_eq!(record_files(&path, 10).len(), 3);
    }

    #[test]
    fn record_recovers_torn_tail_and_sequence() {
        let path = scratch("torn");
        let mut recorder = Recorder::open(&path).unwrap();
        for _ in 0..3 {
            write(&mut recorder, 50);
        }
        drop(recorder);
        let whole = std::fs::read(&path).unwrap();
        // A write cut by a power loss: part of a line, no newline (and zeros, as some
        // file systems leave after a crash).
        let mut torn = whole.clone();
        torn.extend_from_slice(b"{\"kind\":\"cell\",\"seq\":4,\"time_un");
        torn.extend_from_slice(&[0u8; 100]);
        std::fs::write(&path, &torn).unwrap();

        let mut recorder = Recorder::open(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), whole, "torn tail dropped, the rest untouched");
        assert_eq!(recorder.last_seq(), 3);
        assert_eq!(write(&mut recorder, 50), 4);
        assert_eq!(seqs(&path), [1, 2, 3, 4]);

        // A file that is nothing but a torn line is emptied; the sequence comes from FILE.1.
        drop(recorder);
        std::fs::rename(&path, rotated_path(&path, 1)).unwrap();
        std::fs::write(&path, b"{\"kind\":\"ca").unwrap();
        let mut recorder = Recorder::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(write(&mut recorder, 50), 5);

        // A last line without a seq, or one about to wrap, cannot be continued: numbering from
        // 0 again would repeat sequence numbers.
        for last in [r#"{"kind":"cell","origin":"x"}"#.to_string(), format!(r#"{{"kind":"cell","seq":{}}}"#, u64::MAX)]
        {
            let legacy = scratch("legacy");
            std::fs::write(&legacy, format!("{last}\n")).unwrap();
            let error = Recorder::open(&legacy).err().expect("refused").to_string();
            assert!(error.contains("no valid seq"), "{error}");
        }
    }

    #[test]
    fn record_sequence_survives_long_lines_and_garbage() {
        let path = scratch("long");
        let mut recorder = Recorder::open(&path).unwrap();
        write(&mut recorder, 10);
        write(&mut recorder, 200_000); // longer than one read chunk
        drop(recorder);
        assert_eq!(Recorder::open(&path).unwrap().last_seq(), 2);
        // A complete but unreadable last line (corruption) is skipped for the sequence.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"not json\n").unwrap();
        drop(f);
        assert_eq!(Recorder::open(&path).unwrap().last_seq(), 2);
        assert!(Recorder::open_with(&path, RecordOptions { max_bytes: 10, keep: 1 }).is_err());
    }
}
