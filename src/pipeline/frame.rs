//! One frame through every stage: segment → preprocess → infer → analyse → decide.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use image::GrayImage;
use serde::{Deserialize, Serialize};

use crate::pipeline::analyse::{assign, karyotype, Call, Karyotype};
use crate::pipeline::decide::{decide, karyotype_determined, Decision, Thresholds, Verdict};
use crate::pipeline::infer::Model;
use crate::pipeline::preprocess::{preprocess_crop, size_features, Prepared};
use crate::pipeline::segment::learned::Segmenter;
use crate::pipeline::segment::{segment, BBox, SegmentParams, Segmentation};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectResult {
    pub bbox: BBox,
    /// Set for a part of a blob segmentation split (parts of one blob share the number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split_from: Option<usize>,
    #[serde(flatten)]
    pub call: Call,
    /// The object's pixels over its box, row-major (`bbox.width × bbox.height`); not in JSON.
    #[serde(skip)]
    pub mask: Vec<bool>,
}

/// Which segmenter cut a frame (with `auto`, the one it kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentedBy {
    Classic,
    Learned,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub segment_ms: f64,
    pub preprocess_ms: f64,
    pub infer_ms: f64,
    pub analyse_ms: f64,
}

/// As recorded (the review station reads it back from the record's line).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    pub count: usize,
    pub karyotype: String,
    /// False when the objects cannot be read as a karyotype (count implausible, clusters
    /// unresolved); `karyotype` then says "karyotype not determined: N objects found".
    pub karyotype_determined: bool,
    pub verdict: crate::pipeline::decide::Verdict,
    pub reasons: Vec<String>,
    pub objects: Vec<ObjectResult>,
    pub polarity: crate::pipeline::preprocess::Polarity,
    pub debris: usize,
    pub nuclei: usize,
    /// Clusters segmentation could not separate, reported rather than guessed.
    pub unresolved: usize,
    /// Where those clusters are (crops preprocessing refused have no box here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved_boxes: Vec<BBox>,
    pub segmenter: SegmentedBy,
    /// The segmentation network's ONNX sha256, when it cut this frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segmenter_sha256: Option<String>,
    pub timings: Timings,
    #[serde(skip)]
    pub detail: Karyotype,
}

/// A frame's model inputs and what segmentation found besides.
pub struct FrameInputs {
    pub segmentation: Segmentation,
    /// Which segmenter found `segmentation`.
    pub segmenter: SegmentedBy,
    /// Bounding boxes of the crops that were prepared, in crop order.
    pub boxes: Vec<BBox>,
    /// Which object of `segmentation.objects` each prepared crop is, in crop order.
    pub kept: Vec<usize>,
    /// Clusters segmentation could not separate plus crops preprocessing refused.
    pub unresolved: usize,
    /// One `input_size²` tensor per crop, concatenated.
    pub pixels: Vec<f32>,
    /// Cell-relative size features, one per crop.
    pub sizes: Vec<[f32; 2]>,
}

pub struct Pipeline {
    pub model: Model,
    /// The classic segmenter's parameters.
    pub segment: SegmentParams,
    pub segmenting: Segmenting,
    pub thresholds: Thresholds,
}

/// How a frame's chromosomes are found.
#[derive(Clone)]
pub enum Segmenting {
    /// Thresholds, components and neck splits ([`segment`]).
    Classic,
    /// The segmentation network ([`Segmenter`]).
    Learned(Arc<Segmenter>),
    /// The classic segmenter where it finds a clean spread (a plausible count of objects each
    /// found whole and apart, nothing unresolved: chromosomes lying apart, as in a well spread
    /// or composed frame); the network everywhere else (touching, crossing, clustered
    /// chromosomes, where the classic one merges or drops them).
    Auto(Arc<Segmenter>),
}

impl Segmenting {
    /// The network, where one is used.
    pub fn network(&self) -> Option<&Arc<Segmenter>> {
        match self {
            Segmenting::Classic => None,
            Segmenting::Learned(s) | Segmenting::Auto(s) => Some(s),
        }
    }

    /// What this is, for reports: `classic`, `learned: NAME (ORIGIN)`, `auto: …`.
    pub fn describe(&self) -> String {
        match self {
            Segmenting::Classic => "classic".into(),
            Segmenting::Learned(s) => format!("learned: {} ({})", s.card.name, s.origin),
            Segmenting::Auto(s) => {
                format!("auto: classic on a clean spread, else learned: {} ({})", s.card.name, s.origin)
            }
        }
    }
}

/// A classic segmentation to keep in `auto`: a plausible count, every object whole and
/// apart, nothing unresolved.
fn clean_spread(s: &Segmentation, t: &Thresholds) -> bool {
    (t.min_count..=t.max_count).contains(&s.objects.len())
        && s.unresolved == 0
        && s.objects.iter().all(|o| o.split_from.is_none())
}

impl Pipeline {
    pub fn new(model: Model) -> Pipeline {
        let segment = SegmentParams {
            polarity_threshold: model.card.preprocessing.polarity_threshold,
            ..SegmentParams::default()
        };
        Pipeline { model, segment, segmenting: Segmenting::Classic, thresholds: Thresholds::default() }
    }

    /// The pipeline segmenting frames this way.
    pub fn with_segmenting(self, segmenting: Segmenting) -> Pipeline {
        Pipeline { segmenting, ..self }
    }

    /// Segmentation and preprocessing: the model's inputs for a frame.
    pub fn prepare(&self, frame: &GrayImage, timings: &mut Timings) -> Result<FrameInputs> {
        let clock = Instant::now();
        let classic = || segment(frame, &SegmentParams { threads: self.model.threads(), ..self.segment.clone() });
        let (segmentation, segmenter) = match &self.segmenting {
            Segmenting::Classic => (classic(), SegmentedBy::Classic),
            Segmenting::Learned(network) => (network.segment(frame)?, SegmentedBy::Learned),
            Segmenting::Auto(network) => match classic() {
                found if clean_spread(&found, &self.thresholds) => (found, SegmentedBy::Classic),
                _ => (network.segment(frame)?, SegmentedBy::Learned),
            },
        };
        timings.segment_ms = ms(clock);

        let clock = Instant::now();
        if segmentation.objects.len() > MAX_OBJECTS {
            // Not a spread: noise, a comb, a texture. Nothing is cut or classified.
            let unresolved = segmentation.unresolved + segmentation.objects.len();
            return Ok(FrameInputs {
                segmentation,
                segmenter,
                boxes: Vec::new(),
                kept: Vec::new(),
                unresolved,
                pixels: Vec::new(),
                sizes: Vec::new(),
            });
        }
        let params = &self.model.card.preprocessing;
        let mut prepared: Vec<Prepared> = Vec::new();
        let mut boxes = Vec::new();
        let mut kept = Vec::new();
        let mut unresolved = segmentation.unresolved;
        // The crops on the inference threads, in crop order.
        let objects = &segmentation.objects;
        let share = objects.len().div_ceil(self.model.threads().max(1)).max(1);
        let results: Vec<_> = std::thread::scope(|scope| {
            let workers: Vec<_> = objects
                .chunks(share)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|o| preprocess_crop(&o.crop, Some(segmentation.polarity), params))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        });
        for (i, (object, result)) in objects.iter().zip(results).enumerate() {
            match result {
                Ok(p) => {
                    prepared.push(p);
                    boxes.push(object.bbox);
                    kept.push(i);
                }
                Err(_) => unresolved += 1,
            }
        }
        let sizes = size_features(&prepared);
        let pixels: Vec<f32> = prepared.iter().flat_map(|p| p.pixels.iter().copied()).collect();
        timings.preprocess_ms = ms(clock);
        Ok(FrameInputs { segmentation, segmenter, boxes, kept, unresolved, pixels, sizes })
    }

    fn network_sha256(&self, by: SegmentedBy) -> Option<String> {
        self.segmenting.network().filter(|_| by == SegmentedBy::Learned).map(|n| n.sha256.clone())
    }

    pub fn analyse(&self, frame: &GrayImage) -> Result<CellResult> {
        self.analyse_until(frame, &AtomicBool::new(false))
    }

    /// [`Pipeline::analyse`] that gives up with [`crate::pipeline::infer::Stopped`] once `stop` is raised
    /// (checked between crops).
    pub fn analyse_until(&self, frame: &GrayImage, stop: &AtomicBool) -> Result<CellResult> {
        let mut timings = Timings::default();
        let FrameInputs { mut segmentation, segmenter, kept, unresolved, pixels, sizes, .. } =
            self.prepare(frame, &mut timings)?;
        if segmentation.objects.len() > MAX_OBJECTS {
            let sha256 = self.network_sha256(segmenter);
            return Ok(too_many_objects(segmentation, (segmenter, sha256), unresolved, timings));
        }

        let clock = Instant::now();
        let predictions = self.model.classify_until(&pixels, &sizes, stop)?;
        timings.infer_ms = ms(clock);

        let clock = Instant::now();
        let card = &self.model.card;
        let calls = assign(
            &predictions,
            card.identity_labels(),
            card.structure_labels(),
            &card.cell_assignment,
            card.structure_threshold(),
        );
        let mut detail = karyotype(&calls, card.identity_labels());
        let Decision { verdict, reasons } = decide(&detail, &calls, unresolved, &self.thresholds);
        let determined = karyotype_determined(&detail, unresolved, &self.thresholds);
        if !determined {
            // Slots filled from an incomplete or merged spread would read as a list of losses.
            detail.iscn = format!("karyotype not determined: {} objects found", detail.count);
            detail.sex_chromosomes.clear();
            detail.numerical.clear();
            detail.structural.clear();
        }
        timings.analyse_ms = ms(clock);

        Ok(CellResult {
            count: detail.count,
            karyotype: detail.iscn.clone(),
            karyotype_determined: determined,
            verdict,
            reasons,
            objects: kept
                .into_iter()
                .zip(calls)
                .map(|(i, call)| {
                    let object = &mut segmentation.objects[i];
                    let mask = std::mem::take(&mut object.mask);
                    ObjectResult { bbox: object.bbox, split_from: object.split_from, call, mask }
                })
                .collect(),
            polarity: segmentation.polarity,
            debris: segmentation.debris,
            nuclei: segmentation.nuclei,
            unresolved,
            unresolved_boxes: segmentation.unresolved_boxes,
            segmenter,
            segmenter_sha256: self.network_sha256(segmenter),
            timings,
            detail,
        })
    }
}

/// More candidate objects than any metaphase has (92 chromosomes in a tetraploid cell, plus
/// what segmentation leaves): such a frame is not classified at all, which also bounds the
/// time one frame can take.
pub const MAX_OBJECTS: usize = 250;

fn too_many_objects(
    segmentation: Segmentation,
    (segmenter, segmenter_sha256): (SegmentedBy, Option<String>),
    unresolved: usize,
    timings: Timings,
) -> CellResult {
    let count = segmentation.objects.len();
    let iscn = format!("karyotype not determined: {count} objects found");
    CellResult {
        count,
        karyotype: iscn.clone(),
        karyotype_determined: false,
        verdict: Verdict::Indeterminate,
        reasons: vec![format!(
            "too many objects ({count} > {MAX_OBJECTS}): not a spread that can be read; nothing was classified"
        )],
        objects: Vec::new(),
        polarity: segmentation.polarity,
        debris: segmentation.debris,
        nuclei: segmentation.nuclei,
        unresolved,
        unresolved_boxes: segmentation.unresolved_boxes,
        segmenter,
        segmenter_sha256,
        timings,
        detail: Karyotype {
            count,
            sex_chromosomes: String::new(),
            iscn,
            numerical: Vec::new(),
            structural: Vec::new(),
        },
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
