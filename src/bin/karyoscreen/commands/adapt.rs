//! `karyoscreen adapt`: a lab's labelled crops to a signed bundle whose identity head is refit to them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{ensure, Context, Result};
use clap::Args;

use karyoscreen::integrity::bundle::{self, write_atomic, Bundle, Trust};
use karyoscreen::integrity::card::card_path_for;
use karyoscreen::pipeline::infer::Model;
use karyoscreen::tools::adapt::{adapt, Options};

use super::TrustArgs;

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  karyoscreen model keygen --out lab.key\n  \
                        karyoscreen import-karyograms lab/karyograms/*.png --out lab-set\n  \
                        karyoscreen adapt lab-set --out lab-model --key lab.key\n  \
                        karyoscreen analyze frame.png --model lab-model.onnx --trusted-key lab.key.pub")]
pub struct AdaptArgs {
    /// The lab's labelled set: DIR/labels.csv and the crops it names (what `import-karyograms` writes).
    dir: PathBuf,
    /// The new bundle: STEM.onnx, STEM.card.json and STEM.sig.
    #[arg(long, value_name = "STEM")]
    out: PathBuf,
    /// The secret key that signs it (from `model keygen`); run it with --trusted-key KEY.pub.
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Only rows of this split of the set.
    #[arg(long)]
    split: Option<String>,
    /// Only the first N cells (karyograms) of the set, by cell id.
    #[arg(long, value_name = "N")]
    cells: Option<usize>,
    /// How strongly the head is held to the base model's (squared distance, per crop).
    #[arg(long, default_value_t = Options::default().strength)]
    strength: f64,
    /// Optimisation steps over all the crops.
    #[arg(long, default_value_t = Options::default().steps)]
    steps: usize,
    /// The base bundle to adapt instead of the built-in model.
    #[arg(long, value_name = "MODEL.onnx")]
    model: Option<PathBuf>,
    #[command(flatten)]
    trust: TrustArgs,
}

pub fn exec(args: AdaptArgs) -> Result<ExitCode> {
    let name = args
        .out
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && !n.ends_with(".onnx"))
        .with_context(|| {
            format!("--out {}: give the bundle's stem (lab-model, not lab-model.onnx)", args.out.display())
        })?
        .to_string();
    let onnx_path = args.out.with_file_name(format!("{name}.onnx"));
    let key_pub = bundle::pub_path_for(&args.key);
    ensure!(
        key_pub.exists(),
        "{}: no public key beside the secret key {} (make both with `karyoscreen model keygen --out KEY`)",
        key_pub.display(),
        args.key.display()
    );
    bundle::read_signing_key(&args.key)?;
    let trust = args.trust.trust()?;
    let (base, onnx, card) = match &args.model {
        Some(path) => {
            let read = Bundle::read(path)?;
            let base = Model::from_bundle(&read, &trust)?;
            (base, read.onnx, read.card)
        }
        None => (Model::embedded()?, Model::embedded_onnx().to_vec(), Model::embedded_card().to_string()),
    };
    let options = Options { split: args.split, cells: args.cells, strength: args.strength, steps: args.steps };
    let adapted = adapt(&base, &onnx, &card, &args.dir, &name, &options)?;
    write_atomic(&onnx_path, &adapted.onnx)?;
    write_atomic(&card_path_for(&onnx_path), adapted.card_json.as_bytes())?;
    let (sig, verified) = bundle::sign(&onnx_path, &args.key)?;
    // what a board will do with it: load it under the key's public half, and run it
    let mut check = Trust::with_key_files(&args.trust.trusted_keys)?;
    check.add_key_file(&key_pub)?;
    Model::from_path(&onnx_path, &check)?.check_runs()?;
    let a = &adapted.adaptation;
    outln!(
        "adapted {} to {} crops in {} cells of {} ({} rejected by preprocessing): per crop on them {:.1} % -> {:.1} %",
        a.base_model,
        a.crops,
        a.cells,
        a.set,
        a.rejected,
        100.0 * a.crop_accuracy_before,
        100.0 * a.crop_accuracy_after
    )?;
    outln!(
        "wrote {} (sha256 {}), its card and {} (key id {}); run it with --model {} --trusted-key {}",
        onnx_path.display(),
        verified.onnx_sha256,
        sig.display(),
        verified.key_id,
        onnx_path.display(),
        key_pub.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
