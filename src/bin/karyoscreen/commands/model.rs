//! `karyoscreen model …`: keys, signing, verification, install and rollback of model bundles.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use karyoscreen::integrity::bundle::{self, Bundle};
use karyoscreen::pipeline::infer::Model;

use super::TrustArgs;

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Make a signing key: the secret seed to KEY (mode 0600), the public key to KEY.pub.
    #[command(after_help = "Example:\n  karyoscreen model keygen --out lab.key")]
    Keygen {
        /// Where the secret key goes; its public half goes to KEY.pub.
        #[arg(long, value_name = "KEY")]
        out: PathBuf,
    },
    /// Sign MODEL.onnx with its card: writes MODEL.sig beside them.
    #[command(after_help = "Example:\n  karyoscreen model sign --key lab.key lab-model.onnx")]
    Sign {
        /// The secret key file (from `model keygen`).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// The bundle's ONNX file; its card must sit beside it.
        model: PathBuf,
    },
    /// Check a bundle's sha256 and signature and that it loads; non-zero exit when refused.
    #[command(after_help = "Example:\n  karyoscreen model verify models/karyoscreen.onnx")]
    Verify {
        /// The bundle's ONNX file.
        model: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Verify MODEL.onnx, copy its bundle to DIR/<version>/ and switch DIR/current to it
    /// atomically, keeping the old one as DIR/previous.
    #[command(
        after_help = "Example:\n  karyoscreen model install lab-model.onnx --dir /var/lib/karyoscreen/models --trusted-key lab.key.pub"
    )]
    Install {
        /// The bundle's ONNX file.
        model: PathBuf,
        /// The models folder.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Swap DIR/current and DIR/previous atomically.
    Rollback {
        /// The models folder.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
    },
}

pub fn exec(action: ModelCommand) -> Result<ExitCode> {
    match action {
        ModelCommand::Keygen { out } => {
            let key = bundle::keygen(&out)?;
            outln!("{}", bundle::public_key_hex(&key))?;
            outln!(
                "key id {}: secret key {} (mode 0600, keep it private), public key {}",
                bundle::key_id(&key),
                out.display(),
                bundle::pub_path_for(&out).display()
            )?;
        }
        ModelCommand::Sign { key, model } => {
            let (sig, v) = bundle::sign(&model, &key)?;
            outln!(
                "signed {}: sha256 {}, card sha256 {}, key id {} -> {}",
                model.display(),
                v.onnx_sha256,
                v.card_sha256,
                v.key_id,
                sig.display()
            )?;
        }
        ModelCommand::Verify { model, trust } => {
            let trust = trust.trust()?;
            let read = Bundle::read(&model)?;
            let v = read.verify(&trust)?;
            Model::from_bundle(&read, &trust)?.check_runs()?;
            outln!(
                "ok {}: sha256 {}, card sha256 {}, signed by key {} ({})",
                model.display(),
                v.onnx_sha256,
                v.card_sha256,
                v.key_id,
                v.key_source
            )?;
        }
        ModelCommand::Install { model, dir, trust } => {
            let done = bundle::install(&model, &dir, &trust.trust()?)?;
            if done.unchanged {
                outln!(
                    "{} is already the current model in {} ({})",
                    done.version,
                    dir.display(),
                    done.model_path.display()
                )?;
            } else {
                outln!(
                    "installed {} (sha256 {}, key id {}) in {}: current -> {}, previous -> {}; run with --model {}",
                    model.display(),
                    done.verified.onnx_sha256,
                    done.verified.key_id,
                    dir.display(),
                    done.version,
                    done.previous.as_deref().unwrap_or("(none)"),
                    done.model_path.display()
                )?;
            }
        }
        ModelCommand::Rollback { dir, trust } => {
            let (current, previous) = bundle::rollback(&dir, &trust.trust()?)?;
            outln!("rolled back {}: current -> {current}, previous -> {previous}", dir.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
