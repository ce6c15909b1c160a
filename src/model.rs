//! The model bundle: an ONNX file plus its card (JSON), checked against each other on load,
//! then run with tract. The shipped bundle is compiled into the binary so the device works
//! with nothing but itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;

use crate::preprocess::PreprocessParams;

const EMBEDDED_ONNX: &[u8] = include_bytes!("../models/karyoscreen.onnx");
const EMBEDDED_CARD: &str = include_str!("../models/karyoscreen.card.json");
const EMBEDDED_SIG: &str = include_str!("../models/karyoscreen.sig");

pub const IDENTITY_OUTPUT: &str = "identity";
pub const STRUCTURE_OUTPUT: &str = "structure";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    /// Dimensions; the batch is a string such as "N".
    pub shape: Vec<serde_json::Value>,
    pub dtype: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputSpec {
    pub name: String,
    pub labels: Vec<String>,
}

/// How each class of a cell is shared out: `capacity` regular slots per autosome, one X and
/// one X-or-Y slot, plus one extra slot per class at a cost, so a real trisomy can still
/// show; an empty regular slot costs too, so a loss needs as much evidence as a gain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellAssignment {
    pub capacity: std::collections::BTreeMap<String, usize>,
    pub extra_slot_cost: f64,
    /// Cost of a regular slot left empty; the same as `extra_slot_cost` when absent.
    #[serde(default)]
    pub missing_slot_cost: Option<f64>,
}

/// What a class looks like (G-band), measured on training crops; the demo renders from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassStats {
    pub label: String,
    pub rel_length: f64,
    pub aspect: f64,
    pub ink_profile: Vec<f64>,
    pub width_profile: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Card {
    pub name: String,
    pub card_version: u32,
    pub onnx_file: String,
    pub onnx_sha256: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<OutputSpec>,
    pub preprocessing: PreprocessParams,
    pub cell_assignment: CellAssignment,
    #[serde(default)]
    pub class_stats: Vec<ClassStats>,
    #[serde(default)]
    pub metrics: serde_json::Value,
}

impl Card {
    pub fn output(&self, name: &str) -> Result<&OutputSpec> {
        self.outputs
            .iter()
            .find(|o| o.name == name)
            .with_context(|| format!("card lists no output named {name:?}"))
    }

    pub fn identity_labels(&self) -> &[String] {
        &self.output(IDENTITY_OUTPUT).map(|o| o.labels.as_slice()).unwrap_or(&[])
    }

    pub fn structure_labels(&self) -> &[String] {
        &self.output(STRUCTURE_OUTPUT).map(|o| o.labels.as_slice()).unwrap_or(&[])
    }
}

/// Per-object class probabilities, in card label order.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub identity: Vec<f32>,
    pub structure: Vec<f32>,
}

pub struct Model {
    pub card: Card,
    pub sha256: String,
    /// Where it came from, for error messages and the record.
    pub origin: String,
    plan: Arc<TypedRunnableModel>,
    identity_index: usize,
    structure_index: usize,
    execution: Plan,
    threads: usize,
    /// The plan is built for batch 1 (17 % faster per crop in tract than a symbolic batch).
    batch_one: bool,
}

pub type TypedRunnableModel = tract_onnx::prelude::RunnableModel<TypedFact, Box<dyn TypedOp>>;

impl Model {
    /// The compiled-in bundle, whose signature (models/karyoscreen.sig) must verify under the
    /// release key like any other.
    pub fn embedded() -> Result<Model> {
        let origin = "built-in model";
        let sig = Some(EMBEDDED_SIG.as_bytes());
        let trust = crate::bundle::Trust::release();
        crate::bundle::verify(EMBEDDED_ONNX, EMBEDDED_CARD.as_bytes(), sig, origin, "models/karyoscreen.sig", &trust)
            .context("built-in model refused (re-sign it: `karyoscreen model sign --key .signing/release.key models/karyoscreen.onnx`, then rebuild)")?;
        Model::from_bytes(EMBEDDED_ONNX, EMBEDDED_CARD, origin)
    }

    /// `path` is the ONNX file; its card is `<stem>.card.json` and its signature `<stem>.sig`
    /// beside it. Refused unless the hash matches and the signature verifies under the release
    /// key or a key given to `bundle::trust_key_files` (`--trusted-key`).
    pub fn from_path(path: &Path) -> Result<Model> {
        Model::from_path_trusting(path, &crate::bundle::Trust::process())
    }

    /// [`Model::from_path`] with an explicit set of trusted keys.
    pub fn from_path_trusting(path: &Path, trust: &crate::bundle::Trust) -> Result<Model> {
        let bundle = crate::bundle::Bundle::read(path)?;
        bundle.verify(trust)?;
        Model::from_bytes(&bundle.onnx, &bundle.card, &path.display().to_string())
    }

    pub fn from_bytes(onnx: &[u8], card_json: &str, origin: &str) -> Result<Model> {
        let card: Card = serde_json::from_str(card_json)
            .with_context(|| format!("{origin}: model card is not valid"))?;
        let sha256 = hex(&Sha256::digest(onnx));
        ensure!(
            sha256 == card.onnx_sha256,
            "{origin}: ONNX sha256 {sha256} does not match its card ({}); the model or card was changed",
            card.onnx_sha256
        );
        card.preprocessing.check_supported().map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        let side = card.preprocessing.input_size;
        let execution = Plan::default();
        let (plan, identity_index, structure_index) = build_plan(onnx, &card, side, origin, execution, true)?;
        Ok(Model {
            card,
            sha256,
            origin: origin.to_string(),
            plan,
            identity_index,
            structure_index,
            execution,
            threads: default_threads(),
            batch_one: true,
        })
    }

    /// Rebuilds the execution plan from the same ONNX bytes (checked against the loaded ones).
    pub fn replan(&mut self, onnx: &[u8], plan: Plan) -> Result<()> {
        self.replan_with_batch(onnx, plan, true)
    }

    /// [`Model::replan`], for batch 1 (as the device runs) or for any batch size (so one
    /// [`Model::logits`] call runs a whole batch: examples/batch_vs_single.rs).
    pub fn replan_with_batch(&mut self, onnx: &[u8], plan: Plan, batch_one: bool) -> Result<()> {
        let sha256 = hex(&Sha256::digest(onnx));
        ensure!(sha256 == self.sha256, "{}: replan needs the same ONNX file", self.origin);
        let (runnable, identity, structure) =
            build_plan(onnx, &self.card, self.input_size(), &self.origin, plan, batch_one)?;
        (self.plan, self.identity_index, self.structure_index, self.execution, self.batch_one) =
            (runnable, identity, structure, plan, batch_one);
        Ok(())
    }

    /// The ONNX bytes compiled into the binary.
    pub fn embedded_onnx() -> &'static [u8] {
        EMBEDDED_ONNX
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
        let side = self.input_size() * self.input_size();
        ensure!(images.len() == sizes.len() * side, "{} crops need {} pixels", sizes.len(), sizes.len() * side);
        let threads = self.threads.clamp(1, sizes.len().max(1));
        if threads == 1 {
            return self.classify_part(images, sizes);
        }
        let per = sizes.len().div_ceil(threads);
        let mut parts = images.chunks(per * side).zip(sizes.chunks(per));
        let (first_images, first_sizes) = parts.next().expect("at least one crop");
        std::thread::scope(|scope| {
            let others: Vec<_> =
                parts.map(|(images, sizes)| scope.spawn(move || self.classify_part(images, sizes))).collect();
            let mut predictions = self.classify_part(first_images, first_sizes)?;
            for other in others {
                predictions.extend(other.join().map_err(|_| anyhow::anyhow!("an inference thread panicked"))??);
            }
            Ok(predictions)
        })
    }

    /// One thread's share of [`Model::classify`]: its own state, one crop at a time.
    fn classify_part(&self, images: &[f32], sizes: &[[f32; 2]]) -> Result<Vec<Prediction>> {
        let side = self.input_size();
        let (identity_labels, structure_labels) =
            (self.card.identity_labels().len(), self.card.structure_labels().len());
        let mut state = self.plan.spawn()?;
        let mut predictions = Vec::with_capacity(sizes.len());
        for (image, size) in images.chunks(side * side).zip(sizes) {
            let image = Tensor::from_shape(&[1, 1, side, side], image)?;
            let size = Tensor::from_shape(&[1, 2], size)?;
            let outputs = state.run(tvec!(image.into(), size.into()))?;
            let identity = softmax_rows(&outputs[self.identity_index], identity_labels)?;
            let structure = softmax_rows(&outputs[self.structure_index], structure_labels)?;
            predictions.extend(
                identity.into_iter().zip(structure).map(|(identity, structure)| Prediction { identity, structure }),
            );
        }
        Ok(predictions)
    }

    /// Raw logits of both heads, for parity checks against onnxruntime.
    /// Runs the inputs as one batch unless the plan is built for batch 1, then one at a time.
    pub fn logits(&self, images: &[f32], sizes: &[[f32; 2]]) -> Result<(Vec<f32>, Vec<f32>)> {
        let (mut identity, mut structure) = (Vec::new(), Vec::new());
        let batches: Vec<(&[f32], &[[f32; 2]])> = if self.batch_one {
            let side = self.input_size() * self.input_size();
            images.chunks(side).zip(sizes.chunks(1)).collect()
        } else {
            vec![(images, sizes)]
        };
        for (images, sizes) in batches {
            let outputs = self.run(images, sizes)?;
            let read = |i: usize| -> Result<Vec<f32>> {
                Ok(outputs[i].try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
            };
            identity.extend(read(self.identity_index)?);
            structure.extend(read(self.structure_index)?);
        }
        Ok((identity, structure))
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
/// plan and the positions of the identity and structure outputs.
fn build_plan(
    onnx: &[u8],
    card: &Card,
    side: usize,
    origin: &str,
    plan: Plan,
    batch_one: bool,
) -> Result<(Arc<TypedRunnableModel>, usize, usize)> {
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
    for (index, labels) in [(identity_index, card.identity_labels().len()), (structure_index, card.structure_labels().len())] {
        let classes = typed.output_fact(index)?.shape.last().and_then(|d| d.as_i64()).map(|c| c as usize);
        if let Some(classes) = classes.filter(|&c| c != labels) {
            bail!("{origin}: output {:?} has {classes} classes but the card lists {labels} labels", output_names[index]);
        }
    }
    Ok((typed.into_runnable()?, identity_index, structure_index))
}

pub fn card_path_for(onnx: &Path) -> PathBuf {
    let stem = onnx.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    onnx.with_file_name(format!("{stem}.card.json"))
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
    outlets
        .iter()
        .map(|&o| model.outlet_label(o).unwrap_or(&model.node(o.node).name).to_string())
        .collect()
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

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How tract runs a model file. The shipped model is QDQ int8, which tract does not run in int8:
/// it dequantizes the weights itself and then spends a large share of the time on the activation
/// Quantize/Dequantize steps (docs: /work/shared/notes). `Dequantized` rewrites the ONNX graph
/// before tract sees it: constant int8 weights become the exact float weights
/// ((q - zero_point) × scale, as DequantizeLinear computes them) and each activation
/// QuantizeLinear→DequantizeLinear pair becomes the Clip to its representable range (the
/// quantizer drops a Relu whose clipping the uint8 range already does), so only the rounding of
/// activations to the int8 grid is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Plan {
    /// The graph as the file has it.
    AsIs,
    /// Weights dequantized at load, activation quantize/dequantize pairs bypassed.
    #[default]
    Dequantized,
}

impl Plan {
    pub const ALL: [Plan; 2] = [Plan::AsIs, Plan::Dequantized];

    pub fn name(self) -> &'static str {
        match self {
            Plan::AsIs => "as-is",
            Plan::Dequantized => "dequantized",
        }
    }
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Plan {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Plan, String> {
        Plan::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown plan {s:?} (as-is, dequantized)"))
    }
}

/// Inference threads when nobody says: two halves of a cell on two cores nearly halve its time.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(2)
}

/// Parses the ONNX bytes into tract's inference model, rewritten for `plan`.
pub fn inference_model(onnx: &[u8], plan: Plan) -> Result<InferenceModel> {
    let framework = tract_onnx::onnx();
    let mut proto = framework.proto_model_for_read(&mut std::io::Cursor::new(onnx))?;
    if plan == Plan::Dequantized {
        dequantize::rewrite(&mut proto)?;
    }
    Ok(framework.model_for_proto_model(&proto)?)
}

mod dequantize {
    use std::collections::{HashMap, HashSet};

    use anyhow::{bail, ensure, Context, Result};
    use tract_onnx::pb::{self, tensor_proto::DataType};

    const FLOAT: i32 = DataType::Float as i32;
    const UINT8: i32 = DataType::Uint8 as i32;
    const INT8: i32 = DataType::Int8 as i32;
    const INT32: i32 = DataType::Int32 as i32;

    /// Values of an initializer as i64 (integer types) or f32 (float).
    fn ints(t: &pb::TensorProto) -> Result<Vec<i64>> {
        ensure!(t.external_data.is_empty(), "{}: external data is not supported", t.name);
        Ok(match (t.data_type, t.raw_data.is_empty()) {
            (UINT8, false) => t.raw_data.iter().map(|&b| b as i64).collect(),
            (INT8, false) => t.raw_data.iter().map(|&b| b as i8 as i64).collect(),
            (INT32, false) => {
                t.raw_data.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect()
            }
            (UINT8 | INT8 | INT32, true) => t.int32_data.iter().map(|&v| v as i64).collect(),
            (dt, _) => bail!("{}: data type {dt} is not an integer type DequantizeLinear takes", t.name),
        })
    }

    fn floats(t: &pb::TensorProto) -> Result<Vec<f32>> {
        ensure!(t.data_type == FLOAT, "{}: expected float data", t.name);
        Ok(if t.raw_data.is_empty() {
            t.float_data.clone()
        } else {
            t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        })
    }

    fn float_tensor(name: &str, dims: Vec<i64>, values: &[f32]) -> pb::TensorProto {
        pb::TensorProto {
            name: name.to_string(),
            dims,
            data_type: FLOAT,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        }
    }

    fn axis(node: &pb::NodeProto) -> i64 {
        node.attribute.iter().find(|a| a.name == "axis").map(|a| a.i).unwrap_or(1)
    }

    /// Rewrites a QDQ graph in place as the float graph described on `Plan::Dequantized`;
    /// returns how many DequantizeLinear nodes it removed.
    pub fn rewrite(proto: &mut pb::ModelProto) -> Result<usize> {
        let graph = proto.graph.as_mut().context("model proto has no graph")?;
        let init: HashMap<String, pb::TensorProto> =
            graph.initializer.iter().map(|t| (t.name.clone(), t.clone())).collect();
        let producer: HashMap<String, usize> = graph
            .node
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.output.iter().map(move |o| (o.clone(), i)))
            .collect();
        let is_default_domain = |n: &pb::NodeProto| n.domain.is_empty() || n.domain == "ai.onnx";
        let mut new_init: Vec<pb::TensorProto> = Vec::new();
        let mut replaced: HashMap<usize, Option<pb::NodeProto>> = HashMap::new();
        for (i, node) in graph.node.iter().enumerate() {
            if node.op_type != "DequantizeLinear" || !is_default_domain(node) || node.output.len() != 1 {
                continue;
            }
            let (Some(scale), zero) = (init.get(&node.input[1]), node.input.get(2).filter(|z| !z.is_empty()))
            else {
                continue;
            };
            let scale = floats(scale)?;
            let (zero, zero_type) = match zero {
                Some(z) => {
                    let Some(t) = init.get(z) else { continue };
                    (ints(t)?, t.data_type)
                }
                None => (vec![0; scale.len()], UINT8),
            };
            ensure!(zero.len() == scale.len(), "{}: scale and zero point sizes differ", node.name);
            if let Some(q) = init.get(&node.input[0]) {
                // Constant weights: the exact floats DequantizeLinear would produce.
                let values = ints(q)?;
                let dims = q.dims.clone();
                let channel = |flat: usize| -> usize {
                    if scale.len() == 1 {
                        return 0;
                    }
                    let rank = dims.len() as i64;
                    let axis = axis(node).rem_euclid(rank.max(1)) as usize;
                    let inner: i64 = dims[axis + 1..].iter().product();
                    (flat / inner as usize) % dims[axis] as usize
                };
                let floats: Vec<f32> = values
                    .iter()
                    .enumerate()
                    .map(|(k, &v)| {
                        let c = channel(k);
                        ((v - zero[c]) as i32) as f32 * scale[c]
                    })
                    .collect();
                ensure!(scale.len() == 1 || dims.len() > 0, "{}: per-axis scale on a scalar", node.name);
                new_init.push(float_tensor(&node.output[0], dims, &floats));
                replaced.insert(i, None);
            } else if let Some(&p) = producer.get(&node.input[0]) {
                // Activation QuantizeLinear → DequantizeLinear: the same saturation, no rounding.
                let q = &graph.node[p];
                if q.op_type != "QuantizeLinear" || !is_default_domain(q) || scale.len() != 1 {
                    continue;
                }
                let same = |k: usize| q.input.get(k).map(|s| init.get(s)) == node.input.get(k).map(|s| init.get(s));
                if !(same(1) && same(2)) {
                    continue;
                }
                let (lo, hi) = match zero_type {
                    UINT8 => (0i64, 255i64),
                    INT8 => (-128, 127),
                    _ => continue,
                };
                let (min, max) = (format!("{}_clip_min", node.output[0]), format!("{}_clip_max", node.output[0]));
                new_init.push(float_tensor(&min, vec![], &[((lo - zero[0]) as i32) as f32 * scale[0]]));
                new_init.push(float_tensor(&max, vec![], &[((hi - zero[0]) as i32) as f32 * scale[0]]));
                let clip = pb::NodeProto {
                    name: format!("{}_as_clip", node.name),
                    op_type: "Clip".into(),
                    input: vec![q.input[0].clone(), min, max],
                    output: node.output.clone(),
                    ..Default::default()
                };
                replaced.insert(i, Some(clip));
            }
        }
        let count = replaced.len();
        let nodes = std::mem::take(&mut graph.node);
        graph.node = nodes
            .into_iter()
            .enumerate()
            .filter_map(|(i, n)| match replaced.remove(&i) {
                Some(replacement) => replacement,
                None => Some(n),
            })
            .collect();
        graph.initializer.extend(new_init);
        // Drop what nothing reads any more (the QuantizeLinear nodes, the int8 tensors).
        loop {
            let used: HashSet<&str> = graph
                .node
                .iter()
                .flat_map(|n| n.input.iter().map(String::as_str))
                .chain(graph.output.iter().map(|o| o.name.as_str()))
                .collect();
            let before = graph.node.len();
            let keep: Vec<bool> = graph.node.iter().map(|n| n.output.iter().any(|o| used.contains(o.as_str()))).collect();
            let used_inits: HashSet<String> = used.iter().map(|s| s.to_string()).collect();
            let mut k = keep.into_iter();
            graph.node.retain(|_| k.next().unwrap());
            graph.initializer.retain(|t| used_inits.contains(&t.name));
            if graph.node.len() == before {
                break;
            }
        }
        graph.value_info.clear();
        Ok(count)
    }
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
    fn plan_names_round_trip() {
        for plan in Plan::ALL {
            assert_eq!(plan.name().parse::<Plan>().unwrap(), plan);
        }
        assert!("int4".parse::<Plan>().is_err());
    }
}
