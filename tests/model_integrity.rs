//! Model integrity through the binary: signed bundles load, tampered or unsigned ones are
//! refused with one-line errors, trust is extended with --trusted-key, and installs switch
//! atomically with rollback.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::karyoscreen;

fn scratch(name: &str) -> PathBuf {
    common::scratch("model_integrity", name)
}

fn shipped(ext: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(format!("karyoscreen.{ext}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Copies the shipped bundle to `dir/<stem>.*` (with its signature when `sig`).
fn copy_bundle(dir: &Path, stem: &str, sig: bool) -> PathBuf {
    let onnx = dir.join(format!("{stem}.onnx"));
    std::fs::copy(shipped("onnx"), &onnx).unwrap();
    std::fs::copy(shipped("card.json"), dir.join(format!("{stem}.card.json"))).unwrap();
    if sig {
        std::fs::copy(shipped("sig"), dir.join(format!("{stem}.sig"))).unwrap();
    }
    onnx
}

fn assert_ok(out: &Output) {
    assert!(out.status.success(), "expected success: {}{}", stdout(out), stderr(out));
}

/// Refused: non-zero exit, one line on stderr naming `names` and containing `says`, no panic.
fn assert_refused(out: &Output, names: &str, says: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "expected refusal: {}", stdout(out));
    assert_eq!(err.trim_end().lines().count(), 1, "error must be one line: {err}");
    assert!(err.contains(names), "error must name {names}: {err}");
    assert!(err.contains(says), "error must say {says:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn key_id(pub_file: &Path) -> String {
    let text = std::fs::read_to_string(pub_file).unwrap();
    text.lines().find(|l| !l.starts_with('#')).unwrap().trim()[..16].to_string()
}

#[test]
fn the_shipped_bundle_verifies_under_the_release_key() {
    let out = karyoscreen(&["model", "verify", s(&shipped("onnx"))]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("release key"), "{text}");
    let sha = karyoscreen::integrity::card::sha256_hex(&std::fs::read(shipped("onnx")).unwrap());
    assert!(text.contains(&sha), "{text}");
    let release =
        karyoscreen::integrity::bundle::parse_public_key(karyoscreen::integrity::bundle::RELEASE_PUBLIC_KEY).unwrap();
    assert!(text.contains(&karyoscreen::integrity::bundle::key_id(&release)), "{text}");
}

#[test]
fn a_flipped_model_byte_is_refused() {
    let dir = scratch("flipped");
    let onnx = copy_bundle(&dir, "m", true);
    let mut bytes = std::fs::read(&onnx).unwrap();
    bytes[1000] ^= 0x10;
    std::fs::write(&onnx, bytes).unwrap();
    assert_refused(&karyoscreen(&["model", "verify", s(&onnx)]), "m.onnx", "sha256");
    assert_refused(&karyoscreen(&["demo", "--model", s(&onnx)]), "m.onnx", "does not match its card");
}

#[test]
fn a_changed_card_is_refused_even_with_the_sha_kept() {
    let dir = scratch("card");
    let onnx = copy_bundle(&dir, "m", true);
    let card_path = dir.join("m.card.json");
    let card = std::fs::read_to_string(&card_path).unwrap();
    let changed = card.replacen("\"extra_slot_cost\": 4.0", "\"extra_slot_cost\": 40.0", 1);
    assert_ne!(card, changed);
    std::fs::write(&card_path, changed).unwrap();
    assert_refused(&karyoscreen(&["model", "verify", s(&onnx)]), "m.onnx", "does not verify");
    assert_refused(&karyoscreen(&["demo", "--model", s(&onnx)]), "m.onnx", "card was changed after signing");
}

#[test]
fn a_missing_signature_is_refused() {
    let dir = scratch("unsigned");
    let onnx = copy_bundle(&dir, "m", false);
    assert_refused(&karyoscreen(&["model", "verify", s(&onnx)]), "m.sig", "missing signature");
    assert_refused(&karyoscreen(&["demo", "--model", s(&onnx)]), "m.sig", "missing signature");
}

#[test]
fn an_untrusted_key_is_refused_until_trusted() {
    let dir = scratch("untrusted");
    let key = dir.join("keys").join("mine.key");
    let made = karyoscreen(&["model", "keygen", "--out", s(&key)]);
    assert_ok(&made);
    let public = dir.join("keys").join("mine.key.pub");
    let id = key_id(&public);
    assert!(stdout(&made).contains(&id), "{}", stdout(&made));
    assert_refused(&karyoscreen(&["model", "keygen", "--out", s(&key)]), "mine.key", "already exists");

    let onnx = copy_bundle(&dir, "m", false);
    let signed = karyoscreen(&["model", "sign", "--key", s(&key), s(&onnx)]);
    assert_ok(&signed);
    assert!(dir.join("m.sig").exists());

    assert_refused(&karyoscreen(&["model", "verify", s(&onnx)]), "m.onnx", "not trusted");
    assert_refused(&karyoscreen(&["demo", "--model", s(&onnx)]), &id, "not trusted");

    let out = karyoscreen(&["model", "verify", "--trusted-key", s(&public), s(&onnx)]);
    assert_ok(&out);
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));

    let frame = dir.join("frame.png");
    assert_ok(&karyoscreen(&["demo", "--write-frame", "1", "--out", s(&frame)]));
    let out = karyoscreen(&["analyze", "--model", s(&onnx), "--trusted-key", s(&public), s(&frame), "--json"]);
    assert_ok(&out);

    // A key file that is not one is a clear error too.
    let junk = dir.join("junk.pub");
    std::fs::write(&junk, "not a key\n").unwrap();
    assert_refused(&karyoscreen(&["model", "verify", "--trusted-key", s(&junk), s(&onnx)]), "junk.pub", "public key");
}

#[test]
fn install_twice_then_rollback() {
    let dir = scratch("install");
    let models = dir.join("models");
    let key = dir.join("dev.key");
    assert_ok(&karyoscreen(&["model", "keygen", "--out", s(&key)]));
    let public = dir.join("dev.key.pub");

    // Version 1: the shipped bundle (release key).
    let one = copy_bundle(&dir, "one", true);
    assert_ok(&karyoscreen(&["model", "install", s(&one), "--dir", s(&models)]));
    let first = karyoscreen::integrity::bundle::read_link(&models, "current").unwrap().expect("current link");
    assert!(karyoscreen::integrity::bundle::read_link(&models, "previous").unwrap().is_none());

    // Version 2: same ONNX, a card that says so, signed by a second (trusted) key.
    let two_dir = dir.join("two");
    std::fs::create_dir_all(&two_dir).unwrap();
    let two = copy_bundle(&two_dir, "karyoscreen", false);
    let card_path = two_dir.join("karyoscreen.card.json");
    let card = std::fs::read_to_string(&card_path).unwrap();
    std::fs::write(&card_path, card.replacen("\"card_version\": 1", "\"card_version\": 1 ", 1)).unwrap();
    assert_ok(&karyoscreen(&["model", "sign", "--key", s(&key), s(&two)]));
    // Not trusted: refused, nothing switched.
    assert_refused(
        &karyoscreen(&["model", "install", s(&two), "--dir", s(&models)]),
        "karyoscreen.onnx",
        "not trusted",
    );
    assert_eq!(karyoscreen::integrity::bundle::read_link(&models, "current").unwrap().as_deref(), Some(first.as_str()));
    let out = karyoscreen(&["model", "install", "--trusted-key", s(&public), s(&two), "--dir", s(&models)]);
    assert_ok(&out);
    let second = karyoscreen::integrity::bundle::read_link(&models, "current").unwrap().unwrap();
    assert_ne!(first, second);
    assert_eq!(
        karyoscreen::integrity::bundle::read_link(&models, "previous").unwrap().as_deref(),
        Some(first.as_str())
    );
    for version in [&first, &second] {
        for ext in ["onnx", "card.json", "sig"] {
            assert!(models.join(version).join(format!("karyoscreen.{ext}")).is_file(), "{version} lacks {ext}");
        }
    }
    // Installing the current one again changes nothing.
    assert_ok(&karyoscreen(&["model", "install", "--trusted-key", s(&public), s(&two), "--dir", s(&models)]));
    assert_eq!(
        karyoscreen::integrity::bundle::read_link(&models, "previous").unwrap().as_deref(),
        Some(first.as_str())
    );

    // The runtime runs from DIR/current.
    let current = models.join("current").join("karyoscreen.onnx");
    let frame = dir.join("frame.png");
    assert_ok(&karyoscreen(&["demo", "--write-frame", "2", "--out", s(&frame)]));
    let out = karyoscreen(&["analyze", "--model", s(&current), "--trusted-key", s(&public), s(&frame), "--json"]);
    assert_ok(&out);
    let result: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(result["count"].as_u64().unwrap() > 40);

    // Rollback: current back to the first, the second kept as previous; and back again.
    assert_ok(&karyoscreen(&["model", "rollback", "--trusted-key", s(&public), "--dir", s(&models)]));
    assert_eq!(karyoscreen::integrity::bundle::read_link(&models, "current").unwrap().as_deref(), Some(first.as_str()));
    assert_eq!(
        karyoscreen::integrity::bundle::read_link(&models, "previous").unwrap().as_deref(),
        Some(second.as_str())
    );
    assert!(models.join(&second).join("karyoscreen.onnx").is_file());
    let out = karyoscreen(&["model", "verify", s(&current)]);
    assert_ok(&out);
    assert!(stdout(&out).contains("release key"), "{}", stdout(&out));
    assert_ok(&karyoscreen(&["analyze", "--model", s(&current), s(&frame)]));

    // Rolling back to a bundle whose key is no longer trusted is refused, nothing switched.
    assert_refused(&karyoscreen(&["model", "rollback", "--dir", s(&models)]), "karyoscreen.onnx", "not trusted");
    assert_eq!(karyoscreen::integrity::bundle::read_link(&models, "current").unwrap().as_deref(), Some(first.as_str()));

    // A tampered installed file is refused at run time.
    let installed = models.join(&first).join("karyoscreen.onnx");
    let mut bytes = std::fs::read(&installed).unwrap();
    bytes[500] ^= 1;
    let _ = std::fs::set_permissions(&installed, std::os::unix::fs::PermissionsExt::from_mode(0o644));
    std::fs::write(&installed, bytes).unwrap();
    assert_refused(&karyoscreen(&["analyze", "--model", s(&current), s(&frame)]), "karyoscreen.onnx", "sha256");

    // No previous to roll back to in a fresh folder.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_refused(&karyoscreen(&["model", "rollback", "--dir", s(&empty)]), "empty", "no current");
}
