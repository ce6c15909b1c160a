//! The learned segmenter: a signed segmentation network (karyoscreen-seg-v1, docs/segmentation.md)
//! run by tract on the whole frame; its chromosome / core / overlap maps are cut into instances
//! by [`super::instances`], which gives the same [`Segmentation`] the classic segmenter does.
//!
//! The network is parsed and decluttered once with its input's height and width symbolic; the
//! optimised plan for one padded input size is built the first time a frame of that size comes
//! and kept (a camera sends one size).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use image::GrayImage;
use tract_onnx::prelude::*;

use super::instances::{self, InstanceParams, Maps};
use super::set_aside::{cell_brightness, set_aside};
use super::Segmentation;
use crate::integrity::bundle::{Bundle, Trust};
use crate::integrity::card::sha256_hex;
use crate::integrity::seg_card::{SegCard, SegPreprocessing, SEG_STRIDE};
use crate::pipeline::infer::{inference_model, Plan, TypedRunnableModel};
use crate::pipeline::preprocess::{detect_polarity, Polarity};

const EMBEDDED_ONNX: &[u8] = include_bytes!("../../../models/segmenter.onnx");
const EMBEDDED_CARD: &str = include_str!("../../../models/segmenter.card.json");
const EMBEDDED_SIG: &str = include_str!("../../../models/segmenter.sig");

/// Plans kept for this many input sizes at most (then the cache starts over).
const MAX_PLANS: usize = 8;

/// A frame as the network's input (docs/segmentation.md, "Frame → input tensor").
#[derive(Debug, Clone)]
pub struct SegInput {
    /// `[1, 1, Hp, Wp]`, row-major.
    pub pixels: Vec<f32>,
    /// (Wp, Hp): padded to multiples of `multiple_of`.
    pub padded: (usize, usize),
    /// (w, h): the frame block-averaged by `k`.
    pub scaled: (usize, usize),
    pub k: usize,
    pub polarity: Polarity,
}

/// Frame → input tensor, bit for bit as `train/karyotrain/segprep.py` computes it: polarity
/// from the border median (chromosomes made bright), integer k × k block mean (edge blocks
/// partial, rounded half up), black and white points at per-mille ranks, clamp to [0, 1],
/// zero padding right and bottom.
pub fn frame_to_input(frame: &GrayImage, p: &SegPreprocessing) -> SegInput {
    let (fw, fh) = (frame.width() as usize, frame.height() as usize);
    let polarity = detect_polarity(frame, p.polarity_threshold);
    let flip = if polarity == Polarity::DarkOnLight { 0xFF } else { 0 };
    let k = fw.max(fh).div_ceil(p.max_side as usize).max(1);
    let (w, h) = (fw.div_ceil(k), fh.div_ceil(k));
    let raw = frame.as_raw();
    let v: Vec<u8> = if k == 1 {
        raw.iter().map(|&g| g ^ flip).collect()
    } else {
        let mut out = Vec::with_capacity(w * h);
        let mut sums = vec![0u32; w];
        for by in 0..h {
            sums.fill(0);
            let rows = by * k..((by + 1) * k).min(fh);
            let n_rows = rows.len();
            for y in rows {
                for (sum, block) in sums.iter_mut().zip(raw[y * fw..(y + 1) * fw].chunks(k)) {
                    *sum += block.iter().map(|&g| u32::from(g ^ flip)).sum::<u32>();
                }
            }
            for (bx, &sum) in sums.iter().enumerate() {
                let n = (n_rows * (((bx + 1) * k).min(fw) - bx * k)) as u32;
                out.push(((sum + n / 2) / n) as u8);
            }
        }
        out
    };
    let mut histogram = [0u64; 256];
    v.iter().for_each(|&x| histogram[x as usize] += 1);
    let n = v.len() as u64;
    let at = |per_mille: u32| {
        let index = (n * u64::from(per_mille) / 1000).min(n.saturating_sub(1));
        let mut seen = 0;
        histogram
            .iter()
            .position(|&c| {
                seen += c;
                seen > index
            })
            .unwrap_or(255) as u32
    };
    let (lo, hi) = (at(p.low_per_mille), at(p.high_per_mille));
    let (lo_f, span) = (lo as f32, hi.saturating_sub(lo).max(1) as f32);
    let m = p.multiple_of as usize;
    let (wp, hp) = (w.div_ceil(m) * m, h.div_ceil(m) * m);
    let mut pixels = vec![0f32; wp * hp];
    for (row, values) in pixels.chunks_exact_mut(wp).zip(v.chunks_exact(w)) {
        for (x, &value) in row.iter_mut().zip(values) {
            *x = ((f32::from(value) - lo_f) / span).clamp(0.0, 1.0);
        }
    }
    SegInput { pixels, padded: (wp, hp), scaled: (w, h), k, polarity }
}

/// Milliseconds in each step of one frame's learned segmentation.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct SegTimings {
    pub preprocess_ms: f64,
    pub network_ms: f64,
    pub instances_ms: f64,
}

pub struct Segmenter {
    pub card: SegCard,
    pub sha256: String,
    /// Where it came from, for error messages.
    pub origin: String,
    /// Decluttered, input height and width symbolic.
    model: TypedModel,
    height: Symbol,
    width: Symbol,
    plans: Mutex<HashMap<(usize, usize), Arc<TypedRunnableModel>>>,
}

impl Segmenter {
    /// The compiled-in segmenter, whose signature (models/segmenter.sig) must verify under the
    /// release key like any other.
    pub fn embedded() -> Result<Segmenter> {
        let origin = "built-in segmenter";
        let sig = Some(EMBEDDED_SIG.as_bytes());
        crate::integrity::bundle::verify(EMBEDDED_ONNX, EMBEDDED_CARD.as_bytes(), sig, origin, "models/segmenter.sig", &Trust::release())
            .context("built-in segmenter refused (re-sign it with the release key: `karyoscreen model sign --key release.key models/segmenter.onnx`, then rebuild)")?;
        Segmenter::from_verified_bytes(EMBEDDED_ONNX, EMBEDDED_CARD, origin)
    }

    /// `path` is the ONNX file; `<stem>.card.json` and `<stem>.sig` beside it. Refused unless the
    /// hash matches and the signature verifies under a key of `trust`, as the classifier is.
    pub fn from_path(path: &Path, trust: &Trust) -> Result<Segmenter> {
        let bundle = Bundle::read(path)?;
        bundle.verify(trust)?;
        Segmenter::from_verified_bytes(&bundle.onnx, &bundle.card, &path.display().to_string())
    }

    /// Builds the segmenter from bytes whose signature the caller has verified.
    fn from_verified_bytes(onnx: &[u8], card_json: &str, origin: &str) -> Result<Segmenter> {
        let card = SegCard::parse(card_json, origin)?;
        let sha256 = sha256_hex(onnx);
        ensure!(
            sha256 == card.onnx_sha256,
            "{origin}: ONNX sha256 {sha256} does not match its card ({}); the model or card was changed",
            card.onnx_sha256
        );
        let mut model =
            inference_model(onnx, Plan::default()).with_context(|| format!("{origin}: not a loadable ONNX model"))?;
        let names = |model: &InferenceModel, outlets: &[OutletId]| -> Vec<String> {
            outlets.iter().map(|&o| model.outlet_label(o).unwrap_or(&model.node(o.node).name).to_string()).collect()
        };
        let inputs = names(&model, model.input_outlets()?);
        ensure!(
            inputs == [card.input.name.as_str()],
            "{origin}: model inputs {inputs:?} are not the card's one input {:?}",
            card.input.name
        );
        let outputs = names(&model, model.output_outlets()?);
        let Some(index) = outputs.iter().position(|n| *n == card.output.name) else {
            bail!("{origin}: the card's output {:?} is not an output of the model ({outputs:?})", card.output.name);
        };
        let output = model.output_outlets()?[index];
        model.select_output_outlets(&[output])?;
        let (height, width) = (model.symbols.sym("H"), model.symbols.sym("W"));
        let shape = [1.to_dim(), 1.to_dim(), height.to_dim(), width.to_dim()];
        model.set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))?;
        let model = model
            .into_typed()
            .and_then(|m| m.into_decluttered())
            .with_context(|| format!("{origin}: tract cannot type it for any frame size"))?;
        let fact = model.output_fact(0)?;
        ensure!(
            fact.rank() == 4 && fact.shape[1].as_i64() == Some(3),
            "{origin}: output {:?} has shape {:?}, expected [1, 3, H/2, W/2]",
            card.output.name,
            fact.shape
        );
        Ok(Segmenter {
            card,
            sha256,
            origin: origin.to_string(),
            model,
            height,
            width,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// The optimised plan for a `wp × hp` input, built on first use.
    fn plan(&self, (wp, hp): (usize, usize)) -> Result<Arc<TypedRunnableModel>> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(plan) = plans.get(&(wp, hp)) {
            return Ok(plan.clone());
        }
        let subs =
            HashMap::from([(self.height.clone(), TDim::Val(hp as i64)), (self.width.clone(), TDim::Val(wp as i64))]);
        let plan = self
            .model
            .set_symbols(&subs)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .with_context(|| format!("{}: tract cannot plan a {wp}x{hp} input", self.origin))?;
        if plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.insert((wp, hp), plan.clone());
        Ok(plan)
    }

    /// The network's raw output for an input: `[3, Hp/2, Wp/2]` logits, row-major.
    pub fn run(&self, input: &SegInput) -> Result<Vec<f32>> {
        let (wp, hp) = input.padded;
        let plan = self.plan(input.padded)?;
        let tensor = Tensor::from_shape(&[1, 1, hp, wp], &input.pixels)?;
        let outputs = plan.run(tvec!(tensor.into()))?;
        let stride = SEG_STRIDE as usize;
        let expected = [1, 3, hp / stride, wp / stride];
        ensure!(
            outputs[0].shape() == expected,
            "{}: output shape {:?} for a {wp}x{hp} input, expected {expected:?}",
            self.origin,
            outputs[0].shape()
        );
        Ok(outputs[0].try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
    }

    /// The maps over the cells that cover the scaled frame (`ceil(h/2) × ceil(w/2)`).
    pub fn maps(&self, input: &SegInput) -> Result<Maps> {
        let raw = self.run(input)?;
        let stride = SEG_STRIDE as usize;
        let (mw, mh) = (input.padded.0 / stride, input.padded.1 / stride);
        let (w, h) = (input.scaled.0.div_ceil(stride), input.scaled.1.div_ceil(stride));
        let channel =
            |c: usize| -> Vec<f32> { (0..h).flat_map(|y| raw[c * mw * mh + y * mw..][..w].iter().copied()).collect() };
        Ok(Maps { width: w, height: h, chromosome: channel(0), core: channel(1), overlap: channel(2) })
    }

    pub fn segment(&self, frame: &GrayImage) -> Result<Segmentation> {
        Ok(self.segment_timed(frame)?.0)
    }

    /// [`Segmenter::segment`], with the time each step took.
    pub fn segment_timed(&self, frame: &GrayImage) -> Result<(Segmentation, SegTimings)> {
        let ms = |since: Instant| since.elapsed().as_secs_f64() * 1e3;
        let clock = Instant::now();
        let input = frame_to_input(frame, &self.card.preprocessing);
        let preprocess_ms = ms(clock);
        let clock = Instant::now();
        let maps = self.maps(&input)?;
        let network_ms = ms(clock);
        let clock = Instant::now();
        let cell = SEG_STRIDE * input.k as u32;
        let params = InstanceParams {
            min_core_cells: self.card.instances.min_core_pixels,
            min_object_pixels: self.card.instances.min_object_pixels,
            core_logit: match input.polarity {
                Polarity::LightOnDark => self.card.instances.core_logit.light_on_dark,
                Polarity::DarkOnLight => self.card.instances.core_logit.dark_on_light,
            },
            cell,
            frame: frame.dimensions(),
        };
        let mut cut = instances::cut(&maps, &params);
        let brightness = cell_brightness(&input.pixels, input.padded.0, SEG_STRIDE as usize, (maps.width, maps.height));
        let nuclei = set_aside(&mut cut, &brightness);
        let mut segmentation = instances::segmentation(frame, input.polarity, &cut, cell);
        segmentation.nuclei = nuclei;
        Ok((segmentation, SegTimings { preprocess_ms, network_ms, instances_ms: ms(clock) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    fn params(max_side: u32) -> SegPreprocessing {
        SegPreprocessing { polarity_threshold: 128, max_side, multiple_of: 16, low_per_mille: 10, high_per_mille: 995 }
    }

    #[test]
    fn input_is_inverted_scaled_stretched_and_padded() {
        // dark on light, 5 x 3, scaled by k = 2: blocks 2x2, 2x2, 1x2 / 2x1, 2x1, 1x1
        let frame =
            GrayImage::from_raw(5, 3, vec![200, 200, 100, 101, 255, 200, 200, 100, 100, 255, 0, 10, 200, 200, 250])
                .unwrap();
        let input = frame_to_input(&frame, &params(3));
        assert_eq!(input.polarity, Polarity::DarkOnLight);
        assert_eq!((input.k, input.scaled, input.padded), (2, (3, 2), (16, 16)));
        // inverted block means: 55, (155+154+155+155+2)/4 = 155, 0; (255+245+1)/2 = 250, 55, 5;
        // 6 values: lo at index 0 -> 0, hi at index min(5, 5) -> 250
        let row0: Vec<f32> = input.pixels[..3].to_vec();
        let row1: Vec<f32> = input.pixels[16..19].to_vec();
        assert_eq!(row0, [55.0 / 250.0, 155.0 / 250.0, 0.0]);
        assert_eq!(row1, [1.0, 55.0 / 250.0, 5.0 / 250.0]);
        assert!(input.pixels[3..16].iter().chain(&input.pixels[19..]).all(|&v| v == 0.0));
    }

    #[test]
    fn a_flat_frame_does_not_divide_by_zero() {
        let input = frame_to_input(&GrayImage::from_pixel(40, 20, Luma([30])), &params(1024));
        assert_eq!((input.k, input.padded), (1, (48, 32)));
        assert!(input.pixels.iter().all(|&v| v == 0.0));
    }
}
