//! Execution plans: how tract runs a model file, and the rewrite of an int8 QDQ graph into
//! its float twin at load.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

/// How tract runs a model file. The shipped model is QDQ int8, which tract does not run in int8:
/// it dequantizes the weights itself and then spends a large share of the time on the activation
/// Quantize/Dequantize steps (measured on the shipped model: docs/performance.md). `Dequantized` rewrites the ONNX graph
/// before tract sees it: constant int8 weights become the exact float weights
/// ((q - zero_point) × scale, as DequantizeLinear computes them) and each activation
/// QuantizeLinear→DequantizeLinear pair becomes the Clip to its representable range (the
/// quantizer drops a Relu whose clipping the uint8 range already does), so only the rounding of
/// activations to the int8 grid is left out. Two shapes tract runs slowly are also rewritten
/// into equivalent ones it runs faster: a convolution over one input channel, split into
/// 16-channel groups (`split`), and a maximum across rows taken as a 1-D pool (`row_max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Plan {
    /// The graph as the file has it.
    AsIs,
    /// Weights dequantized at load, activation quantize/dequantize pairs bypassed, two slow
    /// shapes rewritten.
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
        Plan::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| format!("unknown plan {s:?} (as-is, dequantized)"))
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
    check_constant_sizes(&proto)?;
    if plan == Plan::Dequantized {
        dequantize::rewrite(&mut proto)?;
        split::rewrite(&mut proto)?;
        row_max::rewrite(&mut proto)?;
        drop_unread_initializers(&mut proto);
    }
    framework.model_for_proto_model(&proto)
}

mod row_max;
mod split;

/// Whether `node` is the standard ONNX operator of its name (not a custom domain's).
fn is_onnx_op(node: &tract_onnx::pb::NodeProto, op: &str) -> bool {
    node.op_type == op && (node.domain.is_empty() || node.domain == "ai.onnx")
}

/// Most elements one constant tensor may declare: the shipped model's largest holds 0.2 M. A
/// graph asking for more (a signed but absurd file) is refused before anything is allocated.
pub const MAX_CONSTANT_ELEMENTS: u64 = 64 << 20;

/// Refuses initializers and Constant nodes whose declared shape is absurdly large.
fn check_constant_sizes(proto: &tract_onnx::pb::ModelProto) -> Result<()> {
    let Some(graph) = proto.graph.as_ref() else { return Ok(()) };
    let constants = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Constant")
        .flat_map(|n| n.attribute.iter())
        .filter_map(|a| a.t.as_ref());
    for tensor in graph.initializer.iter().chain(constants) {
        let elements = tensor.dims.iter().try_fold(1u64, |n, &d| u64::try_from(d).ok().and_then(|d| n.checked_mul(d)));
        match elements {
            Some(n) if n <= MAX_CONSTANT_ELEMENTS => {}
            _ => anyhow::bail!(
                "constant {:?} declares shape {:?}: more than the {MAX_CONSTANT_ELEMENTS} elements a constant may have",
                tensor.name,
                tensor.dims
            ),
        }
    }
    Ok(())
}

/// Drops the initializers nothing reads any more (weights a rewrite replaced).
fn drop_unread_initializers(proto: &mut tract_onnx::pb::ModelProto) {
    let Some(graph) = proto.graph.as_mut() else { return };
    let read: std::collections::HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(graph.output.iter().map(|o| o.name.clone()))
        .collect();
    graph.initializer.retain(|t| read.contains(&t.name));
}

/// The shipped model's graph after the dequantize rewrite, and tract's outputs for a graph on a
/// fixed batch of three inputs: for tests of the rewrites that follow it.
#[cfg(test)]
mod testing {
    use tract_onnx::pb;
    use tract_onnx::prelude::*;

    pub fn dequantized_shipped_model() -> pb::ModelProto {
        let bytes = crate::pipeline::infer::EMBEDDED_ONNX;
        let mut proto = tract_onnx::onnx().proto_model_for_read(&mut std::io::Cursor::new(bytes)).unwrap();
        super::dequantize::rewrite(&mut proto).unwrap();
        proto
    }

    pub fn outputs(proto: &pb::ModelProto) -> Vec<Vec<f32>> {
        let pixels: Vec<f32> = (0..3 * 64 * 64).map(|k| ((k * 7919) % 1000) as f32 / 1000.0).collect();
        let image = Tensor::from_shape(&[3, 1, 64, 64], &pixels).unwrap();
        let size = Tensor::from_shape(&[3, 2], &[0.9f32, 1.1, 1.0, 0.7, 1.4, 1.2]).unwrap();
        let mut model = tract_onnx::onnx().model_for_proto_model(proto).unwrap();
        model.set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), image.shape())).unwrap();
        model.set_input_fact(1, InferenceFact::dt_shape(f32::datum_type(), size.shape())).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let outputs = plan.run(tvec!(image.into(), size.into())).unwrap();
        outputs.iter().map(|o| o.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec()).collect()
    }

    pub fn count(proto: &pb::ModelProto, op: &str) -> usize {
        proto.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type == op).count()
    }
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

    pub(super) fn floats(t: &pb::TensorProto) -> Result<Vec<f32>> {
        ensure!(t.data_type == FLOAT, "{}: expected float data", t.name);
        Ok(if t.raw_data.is_empty() {
            t.float_data.clone()
        } else {
            t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        })
    }

    pub(super) fn float_tensor(name: &str, dims: Vec<i64>, values: &[f32]) -> pb::TensorProto {
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
        let producer: HashMap<String, usize> =
            graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.clone(), i))).collect();
        let mut new_init: Vec<pb::TensorProto> = Vec::new();
        let mut replaced: HashMap<usize, Option<pb::NodeProto>> = HashMap::new();
        for (i, node) in graph.node.iter().enumerate() {
            if !super::is_onnx_op(node, "DequantizeLinear") || node.output.len() != 1 {
                continue;
            }
            let (Some(scale), zero) = (init.get(&node.input[1]), node.input.get(2).filter(|z| !z.is_empty())) else {
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
                ensure!(scale.len() == 1 || !dims.is_empty(), "{}: per-axis scale on a scalar", node.name);
                new_init.push(float_tensor(&node.output[0], dims, &floats));
                replaced.insert(i, None);
            } else if let Some(&p) = producer.get(&node.input[0]) {
                // Activation QuantizeLinear → DequantizeLinear: the same saturation, no rounding.
                let q = &graph.node[p];
                if !super::is_onnx_op(q, "QuantizeLinear") || scale.len() != 1 {
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
            let keep: Vec<bool> =
                graph.node.iter().map(|n| n.output.iter().any(|o| used.contains(o.as_str()))).collect();
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
