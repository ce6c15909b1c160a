//! Model integrity. A model bundle is three files side by side: `<stem>.onnx`, its card
//! `<stem>.card.json` (which carries the ONNX sha256) and `<stem>.sig`, an ed25519 signature.
//!
//! What is signed is this exact message (ASCII, `\n` line ends), with both sha256s as lower-case
//! hex of the files' exact bytes:
//!
//! ```text
//! karyoscreen model bundle v1
//! onnx sha256 <sha256 of the .onnx>
//! card sha256 <sha256 of the .card.json>
//! ```
//!
//! so changing one byte of the model or of the card breaks the signature; file names are not
//! signed (an installed bundle is renamed `karyoscreen.*`). The runtime loads a bundle only when
//! the ONNX matches the card's `onnx_sha256` and the signature verifies under a trusted key:
//! the project's release key (`keys/release.pub`, compiled in) or a key given with
//! `--trusted-key FILE`. Key files are one line of hex (`#` comment lines allowed): 32 bytes of
//! public key in `.pub`, the 32-byte secret seed in the secret key file.
//!
//! `install` and `rollback` keep bundles in versioned folders `DIR/<version>/` and switch the
//! symlinks `DIR/current` and `DIR/previous` atomically (temporary symlink + rename).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::integrity::card::sha256_hex;
use crate::integrity::input::{read_regular, read_text, MAX_MODEL_FILE, MAX_TEXT_FILE};
use hex::encode as hex;

/// The project's release public key; bundles it signed load with no `--trusted-key`.
pub const RELEASE_PUBLIC_KEY: &str = include_str!("../../keys/release.pub");
/// The `format` field of a signature file.
pub const SIGNATURE_FORMAT: &str = "karyoscreen-bundle-signature-v1";
/// File stem of an installed bundle: `DIR/current/karyoscreen.onnx`.
pub const INSTALLED_STEM: &str = "karyoscreen";

/// The message a bundle's signature covers.
pub fn signed_message(onnx_sha256: &str, card_sha256: &str) -> Vec<u8> {
    format!("karyoscreen model bundle v1\nonnx sha256 {onnx_sha256}\ncard sha256 {card_sha256}\n").into_bytes()
}

/// `<stem>.sig` beside the ONNX file.
pub fn sig_path_for(onnx: &Path) -> PathBuf {
    let stem = onnx.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    onnx.with_file_name(format!("{stem}.sig"))
}

/// Short name of a key: the first 16 hex digits of the public key.
pub fn key_id(key: &VerifyingKey) -> String {
    hex(&key.to_bytes()[..8])
}

/// The `.sig` file (JSON). The hashes and key id are for people and clearer errors; what
/// counts is `signature` over [`signed_message`] of the files as they are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignatureFile {
    pub format: String,
    pub key_id: String,
    /// ed25519 public key of the signer, hex.
    pub public_key: String,
    pub onnx_sha256: String,
    pub card_sha256: String,
    /// ed25519 signature, hex (64 bytes).
    pub signature: String,
}

/// A key the runtime accepts signatures from, and where it was given.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub key: VerifyingKey,
    pub source: String,
}

/// The keys whose signatures the runtime accepts.
#[derive(Debug, Clone)]
pub struct Trust {
    keys: Vec<TrustedKey>,
}

impl Trust {
    /// Only the compiled-in release key.
    pub fn release() -> Trust {
        let key = parse_public_key(RELEASE_PUBLIC_KEY).expect("keys/release.pub holds a valid ed25519 public key");
        Trust { keys: vec![TrustedKey { key, source: "release key".into() }] }
    }

    /// The release key plus the public keys in `files` (`--trusted-key`).
    pub fn with_key_files(files: &[PathBuf]) -> Result<Trust> {
        let mut trust = Trust::release();
        for file in files {
            trust.add_key_file(file)?;
        }
        Ok(trust)
    }

    pub fn add_key_file(&mut self, file: &Path) -> Result<()> {
        let text = read_text(file, "trusted key")?;
        if declares(&text, SECRET_KEY_HEADER) {
            bail!(
                "{}: this is a secret signing key, not a public key: pass its .pub file to --trusted-key",
                file.display()
            );
        }
        let key =
            parse_public_key(&text).map_err(|e| anyhow::anyhow!("{}: not a public key file: {e}", file.display()))?;
        self.add(key, &file.display().to_string());
        Ok(())
    }

    pub fn add(&mut self, key: VerifyingKey, source: &str) {
        self.keys.push(TrustedKey { key, source: source.to_string() });
    }

    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    fn find(&self, key: &VerifyingKey) -> Option<&TrustedKey> {
        self.keys.iter().find(|t| t.key.as_bytes() == key.as_bytes())
    }
}

/// What a verified bundle is.
#[derive(Debug, Clone)]
pub struct Verified {
    pub onnx_sha256: String,
    pub card_sha256: String,
    pub key_id: String,
    /// Where the trusted key came from: "release key" or a `--trusted-key` file.
    pub key_source: String,
}

/// A bundle's bytes as read together from one folder.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub onnx_path: PathBuf,
    pub card_path: PathBuf,
    pub sig_path: PathBuf,
    pub onnx: Vec<u8>,
    pub card: String,
    /// None when there is no `.sig` file.
    pub sig: Option<Vec<u8>>,
}

impl Bundle {
    /// Reads `<stem>.onnx`, `<stem>.card.json` and `<stem>.sig` (if present). The folder is
    /// resolved first, so reading `DIR/current/…` while `install` switches `current` still
    /// gives the three files of one version. Errors name the paths as given.
    pub fn read(onnx_path: &Path) -> Result<Bundle> {
        let card_path = crate::integrity::card::card_path_for(onnx_path);
        let sig_path = sig_path_for(onnx_path);
        let real = resolve_dir(onnx_path);
        let onnx = read_regular(&real, MAX_MODEL_FILE, "model")?;
        let card = read_text(&crate::integrity::card::card_path_for(&real), "the model card").with_context(|| {
            format!("{}: the model card must sit beside {}", card_path.display(), onnx_path.display())
        })?;
        let sig_file = sig_path_for(&real);
        // Only a missing file means "unsigned"; any other failure to read it is reported.
        let sig = match sig_file.symlink_metadata() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            _ => Some(read_regular(&sig_file, MAX_TEXT_FILE, "signature")?),
        };
        Ok(Bundle { onnx_path: onnx_path.to_path_buf(), card_path, sig_path, onnx, card, sig })
    }

    /// Hash and signature checks; see [`verify`].
    pub fn verify(&self, trust: &Trust) -> Result<Verified> {
        verify(
            &self.onnx,
            self.card.as_bytes(),
            self.sig.as_deref(),
            &self.onnx_path.display().to_string(),
            &self.sig_path.display().to_string(),
            trust,
        )
    }
}

/// `path` with its folder's symlinks resolved (the file name kept), or `path` when the folder
/// cannot be resolved (the read that follows then reports the error).
fn resolve_dir(path: &Path) -> PathBuf {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (fs::canonicalize(parent), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// Checks a bundle: the ONNX sha256 matches the card's `onnx_sha256`, and the signature
/// verifies under a trusted key. `origin` names the model and `sig_name` the signature file
/// in the one-line errors.
pub fn verify(
    onnx: &[u8],
    card: &[u8],
    sig: Option<&[u8]>,
    origin: &str,
    sig_name: &str,
    trust: &Trust,
) -> Result<Verified> {
    let onnx_sha256 = sha256_hex(onnx);
    let card_sha256 = sha256_hex(card);
    let carded = card_onnx_sha256(card).map_err(|e| anyhow::anyhow!("{origin}: model card is not valid: {e}"))?;
    if carded != onnx_sha256 {
        bail!(
            "{origin}: ONNX sha256 {onnx_sha256} does not match its card ({carded}); the model or card was changed — reinstall a signed bundle"
        );
    }
    let Some(sig) = sig else {
        bail!(
            "{sig_name}: missing signature; a model loads only as a signed bundle (.onnx, .card.json, .sig) — sign it with `karyoscreen model sign --key KEY {origin}` and pass --trusted-key KEY.pub, or install a signed bundle"
        );
    };
    let file: SignatureFile = serde_json::from_slice(sig)
        .map_err(|e| anyhow::anyhow!("{sig_name}: not a karyoscreen signature file ({e}); re-sign the bundle"))?;
    if file.format != SIGNATURE_FORMAT {
        bail!("{sig_name}: signature format {:?} is not {SIGNATURE_FORMAT:?}; re-sign the bundle", file.format);
    }
    let key = parse_public_key(&file.public_key).map_err(|e| anyhow::anyhow!("{sig_name}: bad public key: {e}"))?;
    let signature = parse_hex::<64>(&file.signature)
        .map(|b| Signature::from_bytes(&b))
        .map_err(|e| anyhow::anyhow!("{sig_name}: bad signature: {e}"))?;
    let id = key_id(&key);
    let Some(trusted) = trust.find(&key) else {
        bail!(
            "{origin}: signed by key {id}, which is not trusted; pass --trusted-key with that key's .pub file if you trust it, or install a bundle signed by the release key"
        );
    };
    if key.verify_strict(&signed_message(&onnx_sha256, &card_sha256), &signature).is_err() {
        let what = if file.card_sha256 != card_sha256 {
            "the card was changed after signing"
        } else if file.onnx_sha256 != onnx_sha256 {
            "the model was changed after signing"
        } else {
            "the model, card or signature was altered"
        };
        bail!(
            "{origin}: signature {sig_name} does not verify against trusted key {id} ({what}); reinstall a signed bundle or re-sign it"
        );
    }
    Ok(Verified { onnx_sha256, card_sha256, key_id: id, key_source: trusted.source.clone() })
}

fn card_onnx_sha256(card: &[u8]) -> Result<String> {
    let value: serde_json::Value = serde_json::from_slice(card)?;
    value.get("onnx_sha256").and_then(|v| v.as_str()).map(str::to_string).context("it has no onnx_sha256")
}

/// Signs the bundle at `onnx_path` with the secret key in `key_file`, writing `<stem>.sig`
/// (atomically). The card must already carry the ONNX's sha256.
pub fn sign(onnx_path: &Path, key_file: &Path) -> Result<(PathBuf, Verified)> {
    let signing = read_signing_key(key_file)?;
    let bundle = Bundle::read(onnx_path)?;
    let origin = onnx_path.display().to_string();
    let onnx_sha256 = sha256_hex(&bundle.onnx);
    let card_sha256 = sha256_hex(bundle.card.as_bytes());
    let carded = card_onnx_sha256(bundle.card.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: model card is not valid: {e}", bundle.card_path.display()))?;
    if carded != onnx_sha256 {
        bail!(
            "{origin}: ONNX sha256 {onnx_sha256} does not match its card ({carded}); refusing to sign — fix onnx_sha256 in {} first",
            bundle.card_path.display()
        );
    }
    let key = signing.verifying_key();
    let signature = signing.sign(&signed_message(&onnx_sha256, &card_sha256));
    let file = SignatureFile {
        format: SIGNATURE_FORMAT.into(),
        key_id: key_id(&key),
        public_key: hex(key.as_bytes()),
        onnx_sha256: onnx_sha256.clone(),
        card_sha256: card_sha256.clone(),
        signature: hex(signature.to_bytes()),
    };
    let text = serde_json::to_string_pretty(&file)? + "\n";
    write_atomic(&bundle.sig_path, text.as_bytes())?;
    let verified =
        Verified { onnx_sha256, card_sha256, key_id: file.key_id, key_source: key_file.display().to_string() };
    Ok((bundle.sig_path, verified))
}

/// A new signing key: the secret seed to `out` (mode 0600, never overwritten), the public key
/// to `out.pub`. Returns the public key.
pub fn keygen(out: &Path) -> Result<VerifyingKey> {
    let mut seed = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("cannot read /dev/urandom for a new key")?;
    let signing = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let key = signing.verifying_key();
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("{}: cannot create folder", parent.display()))?;
    }
    let pub_path = pub_path_for(out);
    for path in [out, pub_path.as_path()] {
        if path.exists() {
            bail!("{}: already exists; refusing to overwrite a key", path.display());
        }
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("{}: cannot create secret key", out.display()))?;
    let text = format!(
        "{SECRET_KEY_HEADER} (secret seed, hex); key id {}. Keep it private.\n{}\n",
        key_id(&key),
        hex(signing.as_bytes())
    );
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .with_context(|| format!("{}: cannot write secret key", out.display()))?;
    write_atomic(&pub_path, public_key_text(&key).as_bytes())?;
    Ok(key)
}

pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex(key.as_bytes())
}

/// The text of a `.pub` file.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("{PUBLIC_KEY_HEADER}, key id {}\n{}\n", key_id(key), hex(key.as_bytes()))
}

/// `KEY.pub` beside `KEY`.
pub fn pub_path_for(key_file: &Path) -> PathBuf {
    let mut name = key_file.file_name().unwrap_or_default().to_os_string();
    name.push(".pub");
    key_file.with_file_name(name)
}

pub fn read_signing_key(path: &Path) -> Result<SigningKey> {
    let text = read_text(path, "signing key")?;
    if declares(&text, PUBLIC_KEY_HEADER) {
        bail!("{}: this is a public key; signing needs the secret key file it was made with (`model keygen --out KEY` writes KEY)", path.display());
    }
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            log::warn!("{}: secret key is readable by others; chmod 600 it", path.display());
        }
    }
    let seed =
        parse_hex::<32>(key_line(&text)).map_err(|e| anyhow::anyhow!("{}: not a signing key: {e}", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A public key from `.pub` text (or bare hex).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey> {
    let bytes = parse_hex::<32>(key_line(text))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| anyhow::anyhow!("not a valid ed25519 public key"))
}

/// The first line that is neither blank nor a `#` comment.
const PUBLIC_KEY_HEADER: &str = "# karyoscreen ed25519 public key";
const SECRET_KEY_HEADER: &str = "# karyoscreen ed25519 signing key";

/// Whether a key file's comment lines say what it is.
fn declares(text: &str, header: &str) -> bool {
    text.lines().map(str::trim).any(|line| line.starts_with(header))
}

fn key_line(text: &str) -> &str {
    text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("")
}

fn parse_hex<const N: usize>(text: &str) -> Result<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text.trim(), &mut out).map_err(|_| anyhow::anyhow!("expected {} hex digits", 2 * N))?;
    Ok(out)
}

/// Writes `path` through a temporary file in the same folder, fsynced, then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let tmp =
        dir.join(format!(".{}.tmp-{}", path.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("{}: cannot write", path.display()))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// What `install` did.
#[derive(Debug, Clone)]
pub struct Installed {
    pub version: String,
    /// `DIR/current/karyoscreen.onnx`.
    pub model_path: PathBuf,
    pub previous: Option<String>,
    /// The bundle was already the current one; nothing was switched.
    pub unchanged: bool,
    pub verified: Verified,
}

/// Folder name of an installed bundle: both sha256 prefixes (a re-signed card with the same
/// ONNX is a new version).
pub fn version_name(v: &Verified) -> String {
    format!("{}-{}", &v.onnx_sha256[..16], &v.card_sha256[..8])
}

/// Installs the bundle at `onnx_path` into `dir`: checks it (hash, signature, loadable by the
/// runtime), copies its three files into `dir/<version>/` (fsynced, via a temporary folder
/// renamed into place), then points `dir/previous` at the old current version and switches
/// `dir/current` to the new one, each by renaming a temporary symlink over it.
pub fn install(onnx_path: &Path, dir: &Path, trust: &Trust) -> Result<Installed> {
    let bundle = Bundle::read(onnx_path)?;
    let verified = bundle.verify(trust)?;
    crate::pipeline::infer::Model::from_bundle(&bundle, trust)?.check_runs()?;
    let sig = bundle.sig.as_deref().unwrap_or_default();
    fs::create_dir_all(dir).with_context(|| format!("{}: cannot create model folder", dir.display()))?;
    let version = version_name(&verified);
    let target = dir.join(&version);
    let installed_onnx = target.join(format!("{INSTALLED_STEM}.onnx"));
    if target.exists() {
        // Installed before (and perhaps rolled back from): use it only if it still verifies and
        // holds exactly the bytes asked for now.
        let there = Bundle::read(&installed_onnx)?;
        there.verify(trust)?;
        if there.onnx != bundle.onnx || there.card != bundle.card || there.sig.as_deref().unwrap_or_default() != sig {
            bail!(
                "{}: version {version} is already installed with other bytes than {}; refusing to switch to it — remove that folder or install another bundle",
                dir.display(),
                onnx_path.display()
            );
        }
    } else {
        let tmp = dir.join(format!(".incoming-{version}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let result = (|| -> std::io::Result<()> {
            fs::create_dir(&tmp)?;
            for (ext, bytes) in [("onnx", &bundle.onnx[..]), ("card.json", bundle.card.as_bytes()), ("sig", sig)] {
                let path = tmp.join(format!("{INSTALLED_STEM}.{ext}"));
                let mut file = fs::File::create(&path)?;
                file.write_all(bytes)?;
                file.sync_all()?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o444))?;
            }
            sync_dir(&tmp)?;
            fs::rename(&tmp, &target)?;
            sync_dir(dir)
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e).with_context(|| format!("{}: cannot install model version {version}", dir.display()));
        }
        Bundle::read(&installed_onnx)?.verify(trust)?;
    }
    let old = read_link(dir, "current")?;
    let model_path = dir.join("current").join(format!("{INSTALLED_STEM}.onnx"));
    if old.as_deref() == Some(version.as_str()) {
        let previous = read_link(dir, "previous")?;
        return Ok(Installed { version, model_path, previous, unchanged: true, verified });
    }
    if let Some(old) = &old {
        set_link(dir, "previous", old)?;
    }
    set_link(dir, "current", &version)?;
    Ok(Installed { version, model_path, previous: old, unchanged: false, verified })
}

/// Swaps `dir/current` and `dir/previous` after checking that the previous bundle still
/// verifies. Returns (new current, new previous).
pub fn rollback(dir: &Path, trust: &Trust) -> Result<(String, String)> {
    let current = read_link(dir, "current")?
        .with_context(|| format!("{}: no installed model (no current link)", dir.display()))?;
    let previous = read_link(dir, "previous")?
        .with_context(|| format!("{}: nothing to roll back to (no previous link)", dir.display()))?;
    Bundle::read(&dir.join(&previous).join(format!("{INSTALLED_STEM}.onnx")))?.verify(trust)?;
    set_link(dir, "current", &previous)?;
    set_link(dir, "previous", &current)?;
    Ok((previous, current))
}

/// Target of the symlink `dir/name` (a version folder name), None when absent.
pub fn read_link(dir: &Path, name: &str) -> Result<Option<String>> {
    let path = dir.join(name);
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
        Ok(meta) if !meta.file_type().is_symlink() => {
            bail!("{}: is not a symlink; move it away to install here", path.display())
        }
        Ok(_) => {}
    }
    let target = fs::read_link(&path).with_context(|| format!("{}: cannot read link", path.display()))?;
    Ok(Some(target.to_string_lossy().into_owned()))
}

/// Points `dir/name` at `target` atomically: a temporary symlink renamed over the old one.
fn set_link(dir: &Path, name: &str, target: &str) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = std::os::unix::fs::symlink(target, &tmp)
        .and_then(|_| fs::rename(&tmp, dir.join(name)))
        .and_then(|_| sync_dir(dir));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("{}: cannot point {name} at {target}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONNX: &[u8] = include_bytes!("../../models/karyoscreen.onnx");
    const CARD: &str = include_str!("../../models/karyoscreen.card.json");
    const SIG: &str = include_str!("../../models/karyoscreen.sig");

    fn test_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn signed(key: &SigningKey, onnx: &[u8], card: &[u8]) -> Vec<u8> {
        let (o, c) = (sha256_hex(onnx), sha256_hex(card));
        let file = SignatureFile {
            format: SIGNATURE_FORMAT.into(),
            key_id: key_id(&key.verifying_key()),
            public_key: hex(key.verifying_key().as_bytes()),
            onnx_sha256: o.clone(),
            card_sha256: c.clone(),
            signature: hex(key.sign(&signed_message(&o, &c)).to_bytes()),
        };
        serde_json::to_vec(&file).unwrap()
    }

    fn trust_with(key: &SigningKey) -> Trust {
        let mut trust = Trust::release();
        trust.add(key.verifying_key(), "test key");
        trust
    }

    fn check(onnx: &[u8], card: &[u8], sig: Option<&[u8]>, trust: &Trust) -> Result<Verified> {
        verify(onnx, card, sig, "m.onnx", "m.sig", trust)
    }

    #[test]
    fn release_key_parses_and_signs_the_shipped_bundle() {
        let v = check(ONNX, CARD.as_bytes(), Some(SIG.as_bytes()), &Trust::release()).unwrap_or_else(|e| {
            panic!("{e:#}\nre-sign the shipped model: cargo run -- model sign --key .signing/release.key models/karyoscreen.onnx")
        });
        assert_eq!(v.key_source, "release key");
        assert_eq!(v.onnx_sha256, sha256_hex(ONNX));
    }

    #[test]
    fn a_trusted_key_verifies_and_any_change_is_refused() {
        let key = test_key(7);
        let trust = trust_with(&key);
        let sig = signed(&key, ONNX, CARD.as_bytes());
        let v = check(ONNX, CARD.as_bytes(), Some(&sig), &trust).unwrap();
        assert_eq!(v.key_id, key_id(&key.verifying_key()));
        assert_eq!(v.key_source, "test key");

        let mut onnx = ONNX.to_vec();
        onnx[100] ^= 1;
        let err = format!("{:#}", check(&onnx, CARD.as_bytes(), Some(&sig), &trust).unwrap_err());
        assert!(err.contains("does not match its card"), "{err}");

        let card = CARD.replacen("\"card_version\": 1", "\"card_version\": 2", 1);
        assert_ne!(card, CARD);
        let err = format!("{:#}", check(ONNX, card.as_bytes(), Some(&sig), &trust).unwrap_err());
        assert!(err.contains("does not verify") && err.contains("card was changed"), "{err}");

        let err = format!("{:#}", check(ONNX, CARD.as_bytes(), None, &trust).unwrap_err());
        assert!(err.starts_with("m.sig: missing signature"), "{err}");

        let err = format!("{:#}", check(ONNX, CARD.as_bytes(), Some(&sig), &Trust::release()).unwrap_err());
        assert!(err.contains("not trusted"), "{err}");

        let mut forged: SignatureFile = serde_json::from_slice(&sig).unwrap();
        forged.signature = hex(test_key(8).sign(&signed_message(&v.onnx_sha256, &v.card_sha256)).to_bytes());
        let forged = serde_json::to_vec(&forged).unwrap();
        let err = format!("{:#}", check(ONNX, CARD.as_bytes(), Some(&forged), &trust).unwrap_err());
        assert!(err.contains("does not verify"), "{err}");

        let err = format!("{:#}", check(ONNX, CARD.as_bytes(), Some(b"garbage"), &trust).unwrap_err());
        assert!(err.contains("not a karyoscreen signature file"), "{err}");
    }

    #[test]
    fn errors_are_one_line() {
        let trust = Trust::release();
        for err in [
            check(ONNX, CARD.as_bytes(), None, &trust).unwrap_err(),
            check(ONNX, b"{}", None, &trust).unwrap_err(),
            check(ONNX, CARD.as_bytes(), Some(b"{\"format\": 1}"), &trust).unwrap_err(),
        ] {
            assert!(!format!("{err:#}").contains('\n'), "{err:#}");
        }
    }

    #[test]
    fn key_files_round_trip() {
        let dir = std::env::temp_dir().join(format!("karyoscreen-bundle-keys-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let key_file = dir.join("sub").join("k.key");
        let public = keygen(&key_file).unwrap();
        assert_eq!(fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read_signing_key(&key_file).unwrap().verifying_key(), public);
        let mut trust = Trust::release();
        trust.add_key_file(&pub_path_for(&key_file)).unwrap();
        assert_eq!(trust.keys().len(), 2);
        assert!(keygen(&key_file).is_err(), "an existing key must not be overwritten");
        assert!(parse_public_key("# only a comment\n").is_err());
        assert!(parse_public_key(&"zz".repeat(32)).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn signing_a_bundle_whose_card_does_not_match_is_refused() {
        let dir = std::env::temp_dir().join(format!("karyoscreen-bundle-sign-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("k.key");
        keygen(&key_file).unwrap();
        let onnx = dir.join("m.onnx");
        fs::write(&onnx, ONNX).unwrap();
        fs::write(dir.join("m.card.json"), CARD).unwrap();
        let (sig_path, v) = sign(&onnx, &key_file).unwrap();
        assert_eq!(sig_path, dir.join("m.sig"));
        let mut trust = Trust::release();
        trust.add_key_file(&pub_path_for(&key_file)).unwrap();
        assert_eq!(Bundle::read(&onnx).unwrap().verify(&trust).unwrap().key_id, v.key_id);

        fs::write(&onnx, &ONNX[..ONNX.len() - 1]).unwrap();
        let err = format!("{:#}", sign(&onnx, &key_file).unwrap_err());
        assert!(err.contains("refusing to sign"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
