//! Convolutions over a single input channel, split into groups of 16 output channels (then
//! concatenated back): the same products and sums, in a shape tract runs faster. For 32 output
//! channels over one channel (the first conv: k = 9, 1,024 positions) tract 0.23.9 on this
//! machine picks its 40×2 FMA tile and takes 166 µs; each 16-channel half gets the 16×12 AVX-512
//! tile and takes 42 µs (examples/time_onnx.rs on single-conv graphs; README, speed).

use std::collections::HashMap;

use anyhow::{ensure, Result};
use tract_onnx::pb::{self, tensor_proto::DataType};

const FLOAT: i32 = DataType::Float as i32;

/// Output channels per split convolution.
const GROUP: i64 = 16;

/// Splits each Conv of the (float) graph whose constant weight is `[M, 1, kh, kw]`, M a
/// multiple of `GROUP` above it, and whose group is 1; returns how many it split.
pub fn rewrite(proto: &mut pb::ModelProto) -> Result<usize> {
    let Some(graph) = proto.graph.as_mut() else { return Ok(0) };
    let init: HashMap<String, usize> = graph.initializer.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
    let mut new_init = Vec::new();
    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut count = 0;
    for node in std::mem::take(&mut graph.node) {
        let weight = node.input.get(1).and_then(|w| init.get(w)).map(|&i| &graph.initializer[i]);
        let bias =
            node.input.get(2).filter(|b| !b.is_empty()).and_then(|b| init.get(b)).map(|&i| &graph.initializer[i]);
        let group = node.attribute.iter().find(|a| a.name == "group").map_or(1, |a| a.i);
        let channels = weight.map_or(0, |w| w.dims.first().copied().unwrap_or(0));
        let splittable = super::is_onnx_op(&node, "Conv")
            && group == 1
            && node.output.len() == 1
            && weight.is_some_and(|w| w.data_type == FLOAT && w.dims.len() == 4 && w.dims[1] == 1)
            && channels > GROUP
            && channels % GROUP == 0
            && match node.input.get(2).filter(|b| !b.is_empty()) {
                None => true,
                Some(_) => bias.is_some_and(|b| b.data_type == FLOAT && b.dims == [channels]),
            };
        let (Some(weight), true) = (weight, splittable) else {
            nodes.push(node);
            continue;
        };
        let weights = super::dequantize::floats(weight)?;
        let biases = bias.map(super::dequantize::floats).transpose()?;
        let per_channel = (weights.len() as i64 / weight.dims[0]) as usize;
        ensure!(weights.len() == weight.dims.iter().product::<i64>() as usize, "{}: weight size", weight.name);
        let mut parts = Vec::new();
        for (k, first) in (0..weight.dims[0] as usize).step_by(GROUP as usize).enumerate() {
            let channels = first..first + GROUP as usize;
            // named after the output, which is unique in the graph (node names may be empty)
            let name = |what: &str| format!("{}_{what}_{k}", node.output[0]);
            let mut dims = weight.dims.clone();
            dims[0] = GROUP;
            let mut input = vec![node.input[0].clone(), name("weight")];
            new_init.push(super::dequantize::float_tensor(
                &name("weight"),
                dims,
                &weights[channels.start * per_channel..channels.end * per_channel],
            ));
            if let Some(biases) = &biases {
                input.push(name("bias"));
                new_init.push(super::dequantize::float_tensor(&name("bias"), vec![GROUP], &biases[channels]));
            }
            parts.push(name("output"));
            nodes.push(pb::NodeProto {
                name: name("conv"),
                op_type: "Conv".into(),
                input,
                output: vec![name("output")],
                attribute: node.attribute.clone(),
                ..Default::default()
            });
        }
        nodes.push(pb::NodeProto {
            name: format!("{}_concat", node.output[0]),
            op_type: "Concat".into(),
            input: parts,
            output: node.output.clone(),
            attribute: vec![pb::AttributeProto {
                name: "axis".into(),
                r#type: pb::attribute_proto::AttributeType::Int as i32,
                i: 1,
                ..Default::default()
            }],
            ..Default::default()
        });
        count += 1;
    }
    graph.node = nodes;
    graph.initializer.extend(new_init);
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{count, dequantized_shipped_model, outputs};
    use super::*;

    #[test]
    fn split_first_conv_gives_the_same_outputs() {
        let whole = dequantized_shipped_model();
        let mut split = whole.clone();
        assert_eq!(rewrite(&mut split).unwrap(), 1, "the shipped model has one single-channel conv");
        assert_eq!(count(&split, "Conv"), count(&whole, "Conv") + 1);
        assert_eq!(rewrite(&mut split).unwrap(), 0, "16-channel convs are left as they are");
        for (a, b) in outputs(&whole).iter().zip(&outputs(&split)) {
            let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "outputs differ by {worst}");
        }
    }

    #[test]
    fn weights_it_cannot_read_are_left_alone() {
        let mut proto = dequantized_shipped_model();
        let graph = proto.graph.as_mut().unwrap();
        let first = graph.node.iter().find(|n| n.op_type == "Conv").unwrap().input[1].clone();
        graph.initializer.iter_mut().find(|t| t.name == first).unwrap().data_type = DataType::Float16 as i32;
        assert_eq!(rewrite(&mut proto).unwrap(), 0);
    }
}
