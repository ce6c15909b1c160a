//! `karyoscreen demo`: the built-in cells through the whole pipeline, console LEDs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use karyoscreen::device::capture::{DemoSource, FrameSource};
use karyoscreen::device::indicate::{console, Led};
use karyoscreen::pipeline::infer::Model;
use karyoscreen::pipeline::Pipeline;
use karyoscreen::tools::demo::{render_cell, DEMO_CELLS};

use super::{analyse_and_record, ModelArgs, RecordArgs};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  karyoscreen demo\n  karyoscreen demo --write-frame 2 --out cell2.png")]
pub struct DemoArgs {
    /// Only write demo frame N (1-based) as PNG to --out and print its truth as JSON.
    #[arg(long, value_name = "N", requires = "out")]
    write_frame: Option<usize>,
    /// Where --write-frame writes the PNG.
    #[arg(long, value_name = "FILE", requires = "write_frame")]
    out: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    record: RecordArgs,
}

pub fn exec(args: DemoArgs) -> Result<ExitCode> {
    let model = args.model.load()?;
    if let (Some(n), Some(out)) = (args.write_frame, &args.out) {
        return write_frame(&model, n, out);
    }
    let mut recorder = args.record.open()?;
    let pipeline = Pipeline::new(model);
    outln!(
        "karyoscreen demo: {} built-in frames rendered from the class statistics of {} ({})",
        DEMO_CELLS.len(),
        pipeline.model.card.name,
        pipeline.model.origin
    )?;
    let mut panel = console::panel();
    let mut source = DemoSource::new(&pipeline.model.card.class_stats);
    let (mut matched, mut total) = (0, 0);
    while let Some(frame) = source.next_frame()? {
        let (truth, _) = DEMO_CELLS[total];
        total += 1;
        let result = analyse_and_record(&pipeline, &frame, recorder.as_mut())?;
        let hit = result.karyotype == truth;
        matched += hit as usize;
        outln!(
            "frame {total}: true {truth:<11} detected {:<14} {}  LED {:<13} verdict {}: {}",
            result.karyotype,
            if hit { "(match)   " } else { "(mismatch)" },
            Led::for_verdict(result.verdict).name(),
            result.verdict,
            result.reasons.join("; ")
        )?;
        panel.show_verdict(result.verdict).ok();
    }
    outln!("{matched}/{total} detected karyotypes match the truth")?;
    outln!("screening aid only: every call needs the case logic and a person's sign-off")?;
    panel.all_off().ok();
    Ok(ExitCode::SUCCESS)
}

fn write_frame(model: &Model, n: usize, out: &std::path::Path) -> Result<ExitCode> {
    let (karyotype, verdict) = *DEMO_CELLS
        .get(n.wrapping_sub(1))
        .with_context(|| format!("demo frame {n} does not exist (1..={})", DEMO_CELLS.len()))?;
    let image = render_cell(karyotype, &model.card.class_stats, (n - 1) as u64)
        .map_err(|e| anyhow::anyhow!("demo frame {n}: {e}"))?;
    image.save(out).with_context(|| format!("{}: cannot write frame", out.display()))?;
    outln!("{}", serde_json::json!({ "karyotype": karyotype, "verdict": verdict }))?;
    Ok(ExitCode::SUCCESS)
}
