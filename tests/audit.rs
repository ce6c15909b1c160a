//! The audit trail under fire: the real binary is killed (SIGKILL) again and again while it
//! records, with power cuts simulated in between (a torn, unacknowledged last line), on one
//! record path with a small size bound so that it rotates. Afterwards every line of every file
//! parses, sequence numbers rise by one with no gap across files, and every record the binary
//! acknowledged (`recorded SEQ ORIGIN` on stdout, printed after the fdatasync) is there.
//! Also: `case` writes a case verdict record after its cells'.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use karyoscreen::integrity::record::record_files;
use rand::{rngs::SmallRng, RngExt, SeedableRng};

mod common;

const KILLS: usize = 30;
const MAX_BYTES: u64 = 8_000;
/// Enough that nothing is dropped here, so every acknowledged record must still be there.
const KEEP: usize = 1000;

fn scratch(name: &str) -> PathBuf {
    common::scratch("audit", name)
}

fn record_args(record: &Path, max_bytes: u64) -> Vec<String> {
    vec![
        "--record".into(),
        record.display().to_string(),
        "--record-max-bytes".into(),
        max_bytes.to_string(),
        "--record-keep".into(),
        KEEP.to_string(),
    ]
}

/// DIR/frames/f000.png … : the centre of demo frame 1, small so that a frame takes a fraction
/// of a second in the dev profile and kills land among many writes and rotations.
fn small_frames(dir: &Path, n: usize) -> PathBuf {
    let full = dir.join("full.png");
    let out = Command::new(env!("CARGO_BIN_EXE_karyoscreen"))
        .args(["demo", "--write-frame", "1", "--out"])
        .arg(&full)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let image = image::open(&full).unwrap().to_luma8();
    let side = std::env::var("AUDIT_SIDE").ok().and_then(|s| s.parse().ok()).unwrap_or(256u32);
    let (x, y) = ((image.width() - side) / 2, (image.height() - side) / 2);
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    image::imageops::crop_imm(&image, x, y, side, side).to_image().save(frames.join("f000.png")).unwrap();
    for i in 1..n {
        std::fs::hard_link(frames.join("f000.png"), frames.join(format!("f{i:03}.png"))).unwrap();
    }
    frames
}

/// Starts `run` on the frames in `frames`; returns the child and its stdout lines as they come.
fn start(record: &Path, frames: &Path, stderr: &Path, extra: &[&str]) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_karyoscreen"))
        .args(["run", "--board", "generic", "--console-leds", "--hold", "1"])
        .args(record_args(record, MAX_BYTES))
        .arg("--source")
        .arg(frames)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .expect("binary starts");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// `recorded SEQ ORIGIN` → (SEQ, ORIGIN).
fn ack(line: &str) -> Option<(u64, String)> {
    let rest = line.strip_prefix("recorded ")?;
    let (seq, origin) = rest.split_once(' ')?;
    Some((seq.parse().expect("ack carries a sequence number"), origin.to_string()))
}

/// Every record line of the kept files, oldest first, each checked to parse.
fn read_records(record: &Path, max_bytes: u64) -> (Vec<PathBuf>, Vec<serde_json::Value>) {
    let files = record_files(record, KEEP);
    let mut records = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(bytes.is_empty() || bytes.ends_with(b"\n"), "{}: ends mid-line", file.display());
        let lines = bytes.iter().filter(|&&b| b == b'\n').count();
        // Only a single line longer than the bound may take a file past it.
        assert!(
            bytes.len() as u64 <= max_bytes || lines == 1,
            "{}: {} bytes in {lines} lines, over the bound",
            file.display(),
            bytes.len()
        );
        for (n, line) in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate() {
            let value: serde_json::Value = serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!("{} line {}: {e}: {}", file.display(), n + 1, String::from_utf8_lossy(line))
            });
            records.push(value);
        }
    }
    (files, records)
}

#[test]
fn sigkilled_writer_never_loses_an_acknowledged_record() {
    let began = Instant::now();
    let dir = scratch("sigkill");
    let record = dir.join("audit.jsonl");
    let frames = small_frames(&dir, 100);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = SmallRng::seed_from_u64(seed);
    eprintln!("seed {seed}");
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut power_cuts = 0;
    let mut torn_warnings = 0;
    let mut frame_time = Duration::from_millis(300);
    for round in 0..KILLS {
        let stderr = dir.join(format!("stderr-{round}.txt"));
        let (mut child, lines) = start(&record, &frames, &stderr, &[]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("`ready` within a minute")
            != "ready"
        {}
        // Let it acknowledge 0 to 4 records, then kill it at a random moment of the next frame
        // (measured: the time between acknowledgements, longer on a loaded machine).
        let mut seen = Vec::new();
        let mut last = Instant::now();
        let wanted = rng.random_range(0..=4);
        while seen.len() < wanted {
            let line = lines.recv_timeout(Duration::from_secs(60)).expect("a frame within a minute");
            if let Some(a) = ack(&line) {
                frame_time = frame_time.mul_f64(0.7) + last.elapsed().mul_f64(0.3);
                last = Instant::now();
                seen.push(a);
            }
        }
        std::thread::sleep(frame_time.mul_f64(rng.random_range(0.0..1.0)));
        let _ = child.kill(); // SIGKILL on Unix
        child.wait().unwrap();
        // Lines printed before the kill are still in the pipe: they were acknowledgements too.
        seen.extend(lines.iter().filter_map(|l| ack(&l)));
        for a in seen {
            if let Some(last) = acked.last() {
                // A record can be synced and the kill land before its ack is printed.
                assert!(a.0 > last.0, "acks rise across restarts (seed {seed})");
            }
            acked.push(a);
        }
        if power_cuts > 0 && std::fs::read_to_string(&stderr).unwrap().contains("torn last line") {
            torn_warnings += 1;
        }
        // Every third round, a power cut mid-write: part of a line that was never acknowledged.
        if round % 3 == 1 {
            let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&record).unwrap();
            let cut = rng.random_range(1..200);
            let partial =
                format!("{{\"kind\":\"cell\",\"seq\":{},\"time_unix_ms\":1,\"origin\":\"{}", u64::MAX, "x".repeat(cut));
            f.write_all(partial.as_bytes()).unwrap();
            power_cuts += 1;
        }
    }
    // One last run to the end (recovering whatever the last kill or cut left).
    let stderr = dir.join("stderr-final.txt");
    let (mut child, lines) = start(&record, &frames, &stderr, &["--max-frames", "1"]);
    let out: Vec<String> = lines.iter().collect();
    assert!(child.wait().unwrap().success(), "{}", std::fs::read_to_string(&stderr).unwrap());
    let final_ack = out.iter().find_map(|l| ack(l)).expect("the last run acknowledges its record");
    acked.push(final_ack);

    let (files, records) = read_records(&record, MAX_BYTES);
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().expect("every record has a seq")).collect();
    assert_eq!(seqs.first(), Some(&1), "nothing was rotated away (keep {KEEP})");
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "sequence numbers rise by one, no gaps across files (seed {seed})");
    }
    for (seq, origin) in &acked {
        let Some(r) = records.get((*seq - 1) as usize) else {
            panic!("acknowledged record {seq} is missing (seed {seed}; last seq {:?})", seqs.last())
        };
        assert_eq!(r["seq"].as_u64(), Some(*seq));
        assert_eq!(r["origin"].as_str(), Some(origin.as_str()), "record {seq}");
    }
    for r in &records {
        assert_eq!(r["kind"], "cell");
        assert_eq!(r["frame_sha256"].as_str().unwrap().len(), 64);
        assert_eq!(r["model_sha256"].as_str().unwrap().len(), 64);
        assert!(r["card_version"].is_u64() && r["thresholds"]["min_count"].is_u64() && r["verdict"].is_string());
    }
    assert!(files.len() >= 5, "the size bound forced rotations: {files:?}");
    assert!(power_cuts > 0 && torn_warnings > 0, "a torn tail was dropped with a warning");
    eprintln!(
        "{KILLS} kills, {power_cuts} power cuts, {} acknowledged of {} records in {} files, {:.1} s",
        acked.len(),
        records.len(),
        files.len(),
        began.elapsed().as_secs_f64()
    );
}

#[test]
fn case_verdict_is_recorded_after_its_cells() {
    let dir = scratch("case");
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for n in 1..=2 {
        let out = Command::new(env!("CARGO_BIN_EXE_karyoscreen"))
            .args(["demo", "--write-frame", &n.to_string(), "--out"])
            .arg(frames.join(format!("cell{n}.png")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let record = dir.join("audit.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_karyoscreen"))
        .arg("case")
        .args(record_args(&record, karyoscreen::integrity::record::DEFAULT_MAX_BYTES))
        .arg(&frames)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, records) = read_records(&record, karyoscreen::integrity::record::DEFAULT_MAX_BYTES);
    assert_eq!(records.len(), 3, "two cells, then the case");
    let case = &records[2];
    assert_eq!(case["kind"], "case");
    assert_eq!(case["seq"], 3);
    assert_eq!(case["model_sha256"], records[0]["model_sha256"]);
    assert!(case["card_version"].is_u64() && case["thresholds"]["max_count"].is_u64());
    assert_eq!(case["case_rules"]["count"], 20);
    assert!(case["verdict"].is_string() && case["reasons"].is_array() && case["cells_total"] == 2);
    for (cell, frame) in records[..2].iter().zip(case["frames"].as_array().unwrap()) {
        assert_eq!(cell["kind"], "cell");
        assert_eq!(frame["frame_sha256"], cell["frame_sha256"]);
        assert_eq!(frame["origin"], cell["origin"]);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let verdict = text.lines().find(|l| l.starts_with("verdict ")).expect("case verdict printed");
    assert!(verdict.starts_with(&format!("verdict {}", case["verdict"].as_str().unwrap())), "{verdict}");
}
