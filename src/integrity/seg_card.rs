//! The segmenter's card (`kind: "segmenter"`, spec `karyoscreen-seg-v1`): what a segmentation
//! network promises (its input and output tensors, the frame preprocessing it was trained with,
//! how instances are cut from its maps). Signed and checked like the classifier's card
//! (`crate::integrity::bundle`); docs/segmentation.md describes it for integrators.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The `spec` a segmenter card must name: the preprocessing and map layout this runtime implements.
pub const SEG_SPEC: &str = "karyoscreen-seg-v1";
/// The `kind` of a segmenter card; a classifier card has none.
pub const SEGMENTER_KIND: &str = "segmenter";
/// The output channels, in order.
pub const SEG_CHANNELS: [&str; 3] = ["chromosome", "core", "overlap"];
/// Input pixels per map cell side.
pub const SEG_STRIDE: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegInputSpec {
    pub name: String,
    /// `[1, 1, "H", "W"]`.
    pub shape: Vec<serde_json::Value>,
    pub dtype: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegOutputSpec {
    pub name: String,
    pub channels: Vec<String>,
    pub stride: u32,
}

/// Frame → input tensor (docs/segmentation.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegPreprocessing {
    /// Border median at or above this: dark chromosomes on a light background, inverted.
    pub polarity_threshold: u8,
    /// The frame is block-averaged by k = ceil(max(W, H) / max_side).
    pub max_side: u32,
    /// The input is padded right and bottom to multiples of this.
    pub multiple_of: u32,
    /// Black and white points: the values at these per-mille ranks of the scaled frame.
    pub low_per_mille: u32,
    pub high_per_mille: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SegInstances {
    /// Core components with fewer map cells are not markers.
    pub min_core_pixels: usize,
    /// Instances smaller than this many frame pixels are debris.
    pub min_object_pixels: usize,
    /// A cell is core where the core logit is above this, by the frame's polarity (cards
    /// before it have none: 0 for both).
    #[serde(default)]
    pub core_logit: CoreLogit,
}

/// The core map's threshold for each polarity: bright (fluorescent) chromosomes that touch
/// blur into one another, dark G-band ones pale at bands and centromeres, so one threshold
/// cannot both split the first and keep the second whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CoreLogit {
    pub light_on_dark: f32,
    pub dark_on_light: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegCard {
    pub name: String,
    pub kind: String,
    pub card_version: u32,
    #[serde(default)]
    pub created: Option<String>,
    pub onnx_file: String,
    pub onnx_sha256: String,
    pub spec: String,
    pub input: SegInputSpec,
    pub output: SegOutputSpec,
    pub preprocessing: SegPreprocessing,
    pub instances: SegInstances,
    #[serde(default)]
    pub training: serde_json::Value,
    #[serde(default)]
    pub metrics: serde_json::Value,
}

/// A card's `kind`: `None` for a classifier card (which has none), else the string it gives.
pub fn card_kind(card_json: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(card_json).ok()?;
    value.get("kind").map(|k| k.as_str().map_or_else(|| k.to_string(), str::to_string))
}

impl SegCard {
    /// Parses and range-checks a segmenter card; `origin` names the bundle in the one-line errors.
    /// A classifier card is refused as such.
    pub fn parse(card_json: &str, origin: &str) -> Result<SegCard> {
        match card_kind(card_json).as_deref() {
            Some(SEGMENTER_KIND) => {}
            None => bail!(
                "{origin}: this is a classifier bundle (its card has no kind \"segmenter\"), not a segmenter: pass it with --model"
            ),
            Some(other) => bail!("{origin}: card kind {other:?} is not a segmenter"),
        }
        let card: SegCard = serde_json::from_str(card_json)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("{origin}: segmenter card is not valid"))?;
        card.check_ranges().map_err(|e| anyhow::anyhow!("{origin}: segmenter card: {e}"))?;
        Ok(card)
    }

    /// Values a card may hold. Signed is not sane: these bound what the runtime computes from it.
    pub fn check_ranges(&self) -> Result<(), String> {
        if self.kind != SEGMENTER_KIND {
            return Err(format!("kind {:?} is not {SEGMENTER_KIND:?}", self.kind));
        }
        if self.spec != SEG_SPEC {
            return Err(format!("spec {:?} is not {SEG_SPEC:?} (the only one this runtime implements)", self.spec));
        }
        let input = &self.input;
        let shape_ok =
            input.shape.len() == 4 && input.shape[0].as_u64() == Some(1) && input.shape[1].as_u64() == Some(1);
        if input.name.is_empty() || input.dtype != "float32" || !shape_ok {
            return Err(format!(
                "input {:?} {:?} {}: expected a float32 [1, 1, H, W] input",
                input.name, input.shape, input.dtype
            ));
        }
        let output = &self.output;
        if output.name.is_empty() || output.channels != SEG_CHANNELS {
            return Err(format!("output {:?} channels {:?}: expected {SEG_CHANNELS:?}", output.name, output.channels));
        }
        if output.stride != SEG_STRIDE {
            return Err(format!("output stride {} (only {SEG_STRIDE} is implemented)", output.stride));
        }
        let p = &self.preprocessing;
        if !(16..=4096).contains(&p.max_side) {
            return Err(format!("preprocessing.max_side {} is outside 16..=4096", p.max_side));
        }
        if !(SEG_STRIDE..=256).contains(&p.multiple_of) || !p.multiple_of.is_multiple_of(SEG_STRIDE) {
            return Err(format!(
                "preprocessing.multiple_of {} is not a multiple of {SEG_STRIDE} in 2..=256",
                p.multiple_of
            ));
        }
        if p.low_per_mille >= p.high_per_mille || p.high_per_mille > 1000 {
            return Err(format!(
                "preprocessing per-mille ranks {}..{} (need low < high <= 1000)",
                p.low_per_mille, p.high_per_mille
            ));
        }
        let i = &self.instances;
        if !(1..=100_000).contains(&i.min_core_pixels)
            || !(1..=1_000_000).contains(&i.min_object_pixels)
            || ![i.core_logit.light_on_dark, i.core_logit.dark_on_light].iter().all(|v| (-20.0..=20.0).contains(v))
        {
            return Err(format!(
                "instances min_core_pixels {} (1..=100000), min_object_pixels {} (1..=1000000), core_logit {:?} (-20..=20)",
                i.min_core_pixels, i.min_object_pixels, i.core_logit
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = r#"{"name": "segmenter", "kind": "segmenter", "card_version": 1,
        "created": "2026-12-03", "onnx_file": "segmenter.onnx", "onnx_sha256": "00",
        "spec": "karyoscreen-seg-v1",
        "input": {"name": "frame", "shape": [1, 1, "H", "W"], "dtype": "float32"},
        "output": {"name": "maps", "channels": ["chromosome", "core", "overlap"], "stride": 2},
        "preprocessing": {"polarity_threshold": 128, "max_side": 1024, "multiple_of": 16,
                          "low_per_mille": 10, "high_per_mille": 995},
        "instances": {"min_core_pixels": 3, "min_object_pixels": 40},
        "training": {"epochs": 3}, "metrics": {}}"#;

    #[test]
    fn the_contract_card_parses_and_absurd_values_are_refused() {
        let card = SegCard::parse(CARD, "s.onnx").unwrap();
        assert_eq!(card.preprocessing.max_side, 1024);
        assert_eq!(card.instances.min_object_pixels, 40);
        assert_eq!(card.instances.core_logit, CoreLogit::default(), "a card without core_logit keeps the sign rule");
        for (from, to, says) in [
            ("\"max_side\": 1024", "\"max_side\": 0", "max_side"),
            ("\"multiple_of\": 16", "\"multiple_of\": 7", "multiple_of"),
            ("\"low_per_mille\": 10", "\"low_per_mille\": 995", "per-mille"),
            ("\"stride\": 2", "\"stride\": 4", "stride"),
            ("\"core\", \"overlap\"", "\"overlap\", \"core\"", "channels"),
            ("karyoscreen-seg-v1", "karyoscreen-seg-v9", "spec"),
            ("\"min_core_pixels\": 3", "\"min_core_pixels\": 0", "min_core_pixels"),
            (
                "\"min_object_pixels\": 40",
                "\"min_object_pixels\": 40, \"core_logit\": {\"light_on_dark\": 99, \"dark_on_light\": 0}",
                "core_logit",
            ),
            ("\"min_object_pixels\": 40", "\"min_object_pixels\": 40, \"core_logit\": 1", "CoreLogit"),
            ("\"polarity_threshold\": 128", "\"polarity_threshold\": 300", "not valid"),
        ] {
            let text = CARD.replacen(from, to, 1);
            assert_ne!(text, CARD);
            let err = format!("{:#}", SegCard::parse(&text, "s.onnx").unwrap_err());
            assert!(err.starts_with("s.onnx: ") && err.contains(says) && !err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn a_classifier_card_is_not_a_segmenter_card() {
        let classifier = include_str!("../../models/karyoscreen.card.json");
        assert_eq!(card_kind(classifier), None);
        let err = format!("{:#}", SegCard::parse(classifier, "m.onnx").unwrap_err());
        assert!(err.contains("classifier bundle") && !err.contains('\n'), "{err}");
        assert_eq!(card_kind(CARD).as_deref(), Some(SEGMENTER_KIND));
        let err = format!(
            "{:#}",
            SegCard::parse(&CARD.replacen("\"kind\": \"segmenter\"", "\"kind\": 3", 1), "m").unwrap_err()
        );
        assert!(err.contains("kind \"3\""), "{err}");
    }
}
