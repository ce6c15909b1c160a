//! The model bundle: an ONNX file plus its card (JSON), checked against each other on load,
//! then run with tract. The shipped bundle is compiled into the binary so the device works
//! with nothing but itself.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use tract_onnx::prelude::*;

use crate::integrity::bundle::{Bundle, Trust};
use crate::integrity::card::{
    sha256_hex, Card, Prediction, ARM_OUTPUT, HOMOLOG_OUTPUT, IDENTITY_OUTPUT, POSITION_OUTPUT, STRUCTURE_OUTPUT,
};

mod plan;

pub use plan::{default_threads, inference_model, Plan};

const EMBEDDED_ONNX: &[u8] = include_bytes!("../../models/karyoscreen.onnx");
const EMBEDDED_CARD: &str = include_str!("../../models/karyoscreen.card.json");
const EMBEDDED_SIG: &str = include_str!("../../models/karyoscreen.sig");

pub struct Model {
    pub card: Card,
    pub sha256: String,
    /// Where it came from, for error messages and the record.
    pub origin: String,
    plan: Arc<TypedRunnableModel>,
    outputs: OutputIndex,
    execution: Plan,
    threads: usize,
    /// The plan is built for batch 1 (17 % faster per crop in tract than a symbolic batch).
    batch_one: bool,
}

/// [`Model::classify_until`]'s error when its stop flag was raised before the cell was done.
#[derive(Debug)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped before every crop was classified")
    }
}

impl std::error::Error for Stopped {}

pub type TypedRunnableModel = tract_onnx::prelude::RunnableModel<TypedFact, Box<dyn TypedOp>>;

/// Where each head's output sits among the plan's outputs.
#[derive(Debug, Clone, Copy)]
struct OutputIndex {
    identity: usize,
    structure: usize,
    /// Models made before the arm/position heads have neither.
    arm: Option<usize>,
    position: Option<usize>,
    homolog: Option<usize>,
}

impl Model {
    /// The compiled-in bundle, whose signature (models/karyoscreen.sig) must verify under the
    /// release key like any other.
    pub fn embedded() -> Result<Model> {
        let origin = "built-in model";
        let sig = Some(EMBEDDED_SIG.as_bytes());
        crate::integrity::bundle::verify(EMBEDDED_ONNX, EMBEDDED_CARD.as_bytes(), sig, origin, "models/karyoscreen.sig", &Trust::release())
            .context("built-in model refused (re-sign it with the release key: `karyoscreen model sign --key release.key models/karyoscreen.onnx`, then rebuild)")?;
        Model::from_verified_bytes(EMBEDDED_ONNX, EMBEDDED_CARD, origin)
    }

    /// `path` is the ONNX file; its card is `<stem>.card.json` and its signature `<stem>.sig`
    /// beside it. Refused unless the hash matches and the signature verifies under a key of
    /// `trust` (the release key, plus any `--trusted-key`).
    pub fn from_path(path: &Path, trust: &Trust) -> Result<Model> {
        Model::from_bundle(&Bundle::read(path)?, trust)
    }

    /// A bundle already read, checked against `trust` before its graph is built.
    pub fn from_bundle(bundle: &Bundle, trust: &Trust) -> Result<Model> {
        bundle.verify(trust)?;
        Model::from_verified_bytes(&bundle.onnx, &bundle.card, &bundle.onnx_path.display().to_string())
    }

    /// Builds the model from bytes whose signature the caller has verified.
    fn from_verified_bytes(onnx: &[u8], card_json: &str, origin: &str) -> Result<Model> {
        match crate::integrity::seg_card::card_kind(card_json) {
            None => {}
            Some(kind) if kind == crate::integrity::seg_card::SEGMENTER_KIND => {
                bail!("{origin}: this is a segmenter bundle (card kind \"segmenter\"), not a classifier: pass it with --segmenter-model")
            }
            Some(kind) => bail!("{origin}: card kind {kind:?} is not a classifier"),
        }
        let card: Card =
            serde_json::from_str(card_json).with_context(|| format!("{origin}: model card is not valid"))?;
        let sha256 = sha256_hex(onnx);
        ensure!(
            sha256 == card.onnx_sha256,
            "{origin}: ONNX sha256 {sha256} does not match its card ({}); the model or card was changed",
            card.onnx_sha256
        );
        card.preprocessing.check_supported().map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        card.check_ranges().map_err(|e| anyhow::anyhow!("{origin}: model card: {e}"))?;
        let side = card.preprocessing.input_size;
        let execution = Plan::default();
        let (plan, outputs) = build_plan(onnx, &card, side, origin, execution, true)?;
        Ok(Model {
            card,
            sha256,
            origin: origin.to_string(),
            plan,
            outputs,
            execution,
            threads: default_threads(),
            batch_one: true,
        })
    }

    /// Runs one blank crop through the plan and checks that every output is finite: what
    /// `model verify` and `model install` add to the signature and load checks, so a bundle that
    /// loads but cannot run is refused before it is installed.
    pub fn check_runs(&self) -> Result<()> {
        let side = self.input_size();
        let predictions = self.classify(&vec![0.5; side * side], &[[0.0, 0.0]])?;
        let finite = predictions.iter().all(|p| p.identity.iter().chain(&p.structure).all(|v| v.is_finite()));
        ensure!(finite && predictions.len() == 1, "{}: a test crop gave no usable output", self.origin);
        Ok(())
    }

    /// Rebuilds the execution plan from the same ONNX bytes (checked against the loaded ones).
    pub fn replan(&mut self, onnx: &[u8], plan: Plan) -> Result<()> {
        self.replan_with_batch(onnx, plan, true)
    }

    /// [`Model::replan`], for batch 1 (as the device runs) or for any batch size (so one
    /// [`Model::logits`] call runs a whole batch: examples/batch_vs_single.rs).
    pub fn replan_with_batch(&mut self, onnx: &[u8], plan: Plan, batch_one: bool) -> Result<()> {
        let sha256 = sha256_hex(onnx);
        ensure!(sha256 == self.sha256, "{}: replan needs the same ONNX file", self.origin);
        let (runnable, outputs) = build_plan(onnx, &self.card, self.input_size(), &self.origin, plan, batch_one)?;
        (self.plan, self.outputs, self.execution, self.batch_one) = (runnable, outputs, plan, batch_one);
        Ok(())
    }

    /// The ONNX bytes compiled into the binary.
    pub fn embedded_onnx() -> &'static [u8] {
        EMBEDDED_ONNX
    }

    /// The card compiled into the binary, as signed.
    pub fn embedded_card() -> &'static str {
        EMBEDDED_CARD
    }

    pub fn plan(&self) -> Plan {
        self.execution
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Inference threads for [`Model::classify`] (at least 1).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    pub fn input_size(&self) -> usize {
        self.card.preprocessing.input_size
    }

    /// Classifies a cell's objects: `images` holds one `input_size²` tensor per entry of
    /// `sizes`, the objects' cell-relative size features. Each crop runs at batch 1 (tract is
    /// faster so than on a whole cell as one batch: examples/batch_vs_single.rs); the crops are
    /// split in contiguous parts over [`Model::threads`] threads, one tract state each over the
    /// shared plan, and the predictions come back in crop order, the same for any thread count.
    pub fn classify(&self, images: &[f32], sizes: &[[f32; 2]]) -> Result<Vec<Prediction>> {
        self.classify_until(images, sizes, &AtomicBool::new(false))
    }

    /// [`Model::classify`] that gives up with [`Stopped`] once `stop` is raised, checked before
    /// every crop: a board told to stop (SIGTERM) exits within one crop's inference, not one cell's.
    pub fn classify_until(&self, images: &[f32], sizes: &[[f32; 2]], stop: &AtomicBool) -> Result<Vec<Prediction>> {
        let side = self.input_size() * self.input_size();
        ensure!(images.len() == sizes.len() * side, "{} crops need {} pixels", sizes.len(), sizes.len() * side);
        let threads = self.threads.clamp(1, sizes.len().max(1));
        if threads == 1 {
            return self.classify_part(images, sizes, stop);
        }
        let per = sizes.len().div_ceil(threads);
        let mut parts = images.chunks(per * side).zip(sizes.chunks(per));
        let (first_images, first_sizes) = parts.next().expect("at least one crop");
        std::thread::scope(|scope| {
            let others: Vec<_> =
                parts.map(|(images, sizes)| scope.spawn(move || self.classify_part(images, sizes, stop))).collect();
            let mut predictions = self.classify_part(first_images, first_sizes, stop)?;
            for other in others {
                predictions.extend(other.join().map_err(|_| anyhow::anyhow!("an inference thread panicked"))??);
            }
            Ok(predictions)
        })
    }

    /// One thread's share of [`Model::classify`]: its own state, one crop at a time.
    fn classify_part(&self, images: &[f32], sizes: &[[f32; 2]], stop: &AtomicBool) -> Result<Vec<Prediction>> {
        let side = self.input_size();
        let (identity_labels, structure_labels) =
            (self.card.identity_labels().len(), self.card.structure_labels().len());
        let mut state = self.plan.spawn()?;
        let mut predictions = Vec::with_capacity(sizes.len());
        for (image, size) in images.chunks(side * side).zip(sizes) {
            if stop.load(Ordering::Relaxed) {
                return Err(Stopped.into());
            }
            let image = Tensor::from_shape(&[1, 1, side, side], image)?;
            let size = Tensor::from_shape(&[1, 2], size)?;
            let outputs = state.run(tvec!(image.into(), size.into()))?;
            // one crop per run: each output holds one row
            let row = |index: usize, classes: usize| -> Result<Vec<f32>> {
                Ok(softmax_rows(&outputs[index], classes)?.into_iter().next().unwrap_or_default())
            };
            let position = match self.outputs.position {
                Some(i) => outputs[i].try_as_plain_ram()?.as_slice::<f32>()?.first().copied(),
                None => None,
            };
            predictions.push(Prediction {
                identity: row(self.outputs.identity, identity_labels)?,
                structure: row(self.outputs.structure, structure_labels)?,
                arm: self.outputs.arm.map(|i| row(i, 2)).transpose()?.unwrap_or_default(),
                position,
                homolog: match self.outputs.homolog {
                    Some(i) => outputs[i].try_as_plain_ram()?.as_slice::<f32>()?.to_vec(),
                    None => Vec::new(),
                },
            });
        }
        Ok(predictions)
    }

    /// Raw logits of both heads, for parity checks against onnxruntime.
    /// Runs the inputs as one batch unless the plan is built for batch 1, then one at a time.
    pub fn logits(&self, images: &[f32], sizes: &[[f32; 2]]) -> Result<(Vec<f32>, Vec<f32>)> {
        let [identity, structure] = self.raw_outputs(images, sizes, [self.outputs.identity, self.outputs.structure])?;
        Ok((identity, structure))
    }

    /// The homolog vectors, row after row, when the model has that output (parity checks).
    pub fn homolog(&self, images: &[f32], sizes: &[[f32; 2]]) -> Result<Option<Vec<f32>>> {
        let Some(index) = self.outputs.homolog else { return Ok(None) };
        let [homolog] = self.raw_outputs(images, sizes, [index])?;
        Ok(Some(homolog))
    }

    fn raw_outputs<const K: usize>(
        &self,
        images: &[f32],
        sizes: &[[f32; 2]],
        which: [usize; K],
    ) -> Result<[Vec<f32>; K]> {
        let mut read: [Vec<f32>; K] = std::array::from_fn(|_| Vec::new());
        let batches: Vec<(&[f32], &[[f32; 2]])> = if self.batch_one {
            let side = self.input_size() * self.input_size();
            images.chunks(side).zip(sizes.chunks(1)).collect()
        } else {
            vec![(images, sizes)]
        };
        for (images, sizes) in batches {
            let outputs = self.run(images, sizes)?;
            for (rows, &i) in read.iter_mut().zip(&which) {
                rows.extend_from_slice(outputs[i].try_as_plain_ram()?.as_slice::<f32>()?);
            }
        }
        Ok(read)
    }

    fn run(&self, images: &[f32], sizes: &[[f32; 2]]) -> Result<TVec<TValue>> {
        let n = sizes.len();
        let side = self.input_size();
        ensure!(images.len() == n * side * side, "batch of {n} needs {} pixels", n * side * side);
        let image = Tensor::from_shape(&[n, 1, side, side], images)?;
        let size = Tensor::from_shape(&[n, 2], sizes.as_flattened())?;
        self.plan.run(tvec!(image.into(), size.into()))
    }
}

/// Parses, checks against the card and optimises the model for `plan`, with the batch
/// dimension N fixed to 1 if `batch_one` (tract then plans every shape statically); returns the runnable
/// plan and the positions of its outputs.
fn build_plan(
    onnx: &[u8],
    card: &Card,
    side: usize,
    origin: &str,
    plan: Plan,
    batch_one: bool,
) -> Result<(Arc<TypedRunnableModel>, OutputIndex)> {
    let model = inference_model(onnx, plan).with_context(|| format!("{origin}: not a loadable ONNX model"))?;
    check_io_against_card(&model, card, side).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    let mut typed = model.into_typed().with_context(|| format!("{origin}: tract cannot type it"))?;
    if batch_one {
        let subs = std::collections::HashMap::from([(typed.symbols.sym("N"), TDim::Val(1))]);
        typed = typed.set_symbols(&subs)?;
    }
    let typed = typed.into_optimized().with_context(|| format!("{origin}: tract cannot optimise it"))?;
    let output_names = outlet_names(&typed, typed.output_outlets()?);
    let index_of = |name: &str| -> Result<usize> {
        output_names
            .iter()
            .position(|n| n == name)
            .with_context(|| format!("{origin}: model has no output {name:?} (it has {output_names:?})"))
    };
    let identity_index = index_of(IDENTITY_OUTPUT)?;
    let structure_index = index_of(STRUCTURE_OUTPUT)?;
    // A card with more or fewer labels than the model has classes is refused on load.
    for (index, labels) in
        [(identity_index, card.identity_labels().len()), (structure_index, card.structure_labels().len())]
    {
        let classes = typed.output_fact(index)?.shape.last().and_then(|d| d.as_i64()).map(|c| c as usize);
        if let Some(classes) = classes.filter(|&c| c != labels) {
            bail!(
                "{origin}: output {:?} has {classes} classes but the card lists {labels} labels",
                output_names[index]
            );
        }
    }
    let optional = |name: &str| output_names.iter().position(|n| n == name);
    let outputs = OutputIndex {
        identity: identity_index,
        structure: structure_index,
        arm: optional(ARM_OUTPUT),
        position: optional(POSITION_OUTPUT),
        homolog: optional(HOMOLOG_OUTPUT),
    };
    Ok((typed.into_runnable()?, outputs))
}

/// The ONNX graph's inputs and outputs must be the ones the card promises.
fn check_io_against_card(model: &InferenceModel, card: &Card, side: usize) -> Result<()> {
    let input_names = outlet_names(model, model.input_outlets()?);
    let card_inputs: Vec<&str> = card.inputs.iter().map(|i| i.name.as_str()).collect();
    ensure!(
        input_names == ["image", "size"] && card_inputs == ["image", "size"],
        "model inputs {input_names:?} and card inputs {card_inputs:?} must both be [\"image\", \"size\"]"
    );
    let image_shape = &card.inputs[0].shape;
    let fixed: Vec<Option<u64>> = image_shape.iter().map(|d| d.as_u64()).collect();
    ensure!(
        fixed.len() == 4 && fixed[1..] == [Some(1), Some(side as u64), Some(side as u64)],
        "card input shape {image_shape:?} does not match preprocessing input_size {side}"
    );
    for input in &card.inputs {
        ensure!(input.dtype == "float32", "input {} has dtype {}, expected float32", input.name, input.dtype);
    }
    let output_names = outlet_names(model, model.output_outlets()?);
    for spec in &card.outputs {
        ensure!(
            output_names.contains(&spec.name),
            "card output {:?} is not an output of the model ({output_names:?})",
            spec.name
        );
    }
    ensure!(card.identity_labels().len() >= 2, "card has no identity labels");
    if card.structure_labels().is_empty() {
        bail!("card has no structure labels");
    }
    Ok(())
}

/// ONNX tensor names of a graph's inputs or outputs (tract keeps them as outlet labels).
fn outlet_names<F, O>(model: &Graph<F, O>, outlets: &[OutletId]) -> Vec<String>
where
    F: Fact + Clone + 'static,
    O: std::fmt::Debug + std::fmt::Display + AsRef<dyn Op> + AsMut<dyn Op> + Clone + 'static,
{
    outlets.iter().map(|&o| model.outlet_label(o).unwrap_or(&model.node(o.node).name).to_string()).collect()
}

fn softmax_rows(tensor: &TValue, classes: usize) -> Result<Vec<Vec<f32>>> {
    let view = tensor.try_as_plain_ram()?;
    let logits = view.as_slice::<f32>()?;
    ensure!(
        tensor.shape().last() == Some(&classes),
        "model output has shape {:?} but the card lists {classes} labels",
        tensor.shape()
    );
    Ok(logits
        .chunks(classes)
        .map(|row| {
            let max = row.iter().copied().fold(f32::MIN, f32::max);
            let exp: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
            let sum: f32 = exp.iter().sum();
            exp.iter().map(|v| v / sum).collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-crops in [0, 1] with plausible size features.
    fn crops(model: &Model, n: usize) -> (Vec<f32>, Vec<[f32; 2]>) {
        let side = model.input_size() * model.input_size();
        let mut state = 0x2545_f491_u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 1000) as f32 / 1000.0
        };
        let images = (0..n * side).map(|_| next()).collect();
        let sizes = (0..n).map(|i| [0.5 + i as f32 * 0.05, 0.8 + i as f32 * 0.03]).collect();
        (images, sizes)
    }

    #[test]
    fn threads_give_the_same_predictions_in_crop_order() {
        let mut model = Model::embedded().unwrap();
        let (images, sizes) = crops(&model, 7);
        model.set_threads(1);
        let one = model.classify(&images, &sizes).unwrap();
        for threads in [2, 3, 16] {
            model.set_threads(threads);
            let many = model.classify(&images, &sizes).unwrap();
            assert_eq!(many.len(), one.len());
            for (a, b) in one.iter().zip(&many) {
                assert_eq!(a.identity, b.identity, "{threads} threads");
                assert_eq!(a.structure, b.structure, "{threads} threads");
            }
        }
        assert!(model.classify(&[], &[]).unwrap().is_empty());
    }

    #[test]
    fn dequantized_plan_has_no_quantize_steps_and_keeps_the_outputs() {
        let model = inference_model(EMBEDDED_ONNX, Plan::Dequantized).unwrap().into_optimized().unwrap();
        let ops: Vec<String> = model.nodes().iter().map(|n| n.op().name().to_string()).collect();
        assert!(!ops.iter().any(|o| o.contains("Quant")), "{ops:?}");
        let mut as_is = Model::embedded().unwrap();
        as_is.replan(EMBEDDED_ONNX, Plan::AsIs).unwrap();
        let dequantized = Model::embedded().unwrap();
        assert_eq!(dequantized.plan(), Plan::Dequantized);
        let (images, sizes) = crops(&as_is, 4);
        let (a, _) = as_is.logits(&images, &sizes).unwrap();
        let (b, _) = dequantized.logits(&images, &sizes).unwrap();
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst < 2.0, "max logit difference {worst}");
    }

    #[test]
    fn a_raised_stop_flag_stops_classification_on_every_thread() {
        let mut model = Model::embedded().unwrap();
        let (images, sizes) = crops(&model, 6);
        for threads in [1, 2] {
            model.set_threads(threads);
            let error = model.classify_until(&images, &sizes, &AtomicBool::new(true)).unwrap_err();
            assert!(error.is::<Stopped>(), "{threads} threads: {error:#}");
            assert_eq!(model.classify_until(&images, &sizes, &AtomicBool::new(false)).unwrap().len(), 6);
        }
    }

    #[test]
    fn plan_names_round_trip() {
        for plan in Plan::ALL {
            assert_eq!(plan.name().parse::<Plan>().unwrap(), plan);
        }
        assert!("int4".parse::<Plan>().is_err());
    }
}
