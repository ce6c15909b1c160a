//! One source of truth for preprocessing: the trainer (Python) wrote these images and the
//! tensors its implementation of docs/preprocessing.md makes from them; the device's
//! implementation must make the same tensors.

use std::path::Path;

use karyoscreen::pipeline::preprocess::{preprocess_crop, size_features, Polarity, Prepared, PreprocessParams};
use serde::Deserialize;

#[derive(Deserialize)]
struct Manifest {
    params: PreprocessParams,
    tolerance: f32,
    images: Vec<Case>,
    cell: Cell,
}

#[derive(Deserialize)]
struct Case {
    file: String,
    polarity: Polarity,
    length: f64,
    area: usize,
    tensor: String,
}

#[derive(Deserialize)]
struct Cell {
    size: Vec<[f32; 2]>,
}

fn golden_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/golden"))
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

#[test]
fn rust_preprocessing_matches_the_trainers_golden_vectors() {
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(golden_dir().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.params, PreprocessParams::default(), "golden vectors are for another spec");
    assert!(manifest.images.len() >= 6);
    let mut prepared: Vec<Prepared> = Vec::new();
    for case in &manifest.images {
        let image = image::open(golden_dir().join(&case.file)).unwrap().to_luma8();
        let detected = karyoscreen::pipeline::preprocess::detect_polarity(&image, manifest.params.polarity_threshold);
        assert_eq!(detected, case.polarity, "{}: polarity", case.file);
        let ours = preprocess_crop(&image, None, &manifest.params).unwrap();
        assert_eq!(ours.area, case.area, "{}: mask area", case.file);
        assert!((ours.length - case.length).abs() < 1e-6, "{}: length {} vs {}", case.file, ours.length, case.length);
        let theirs = read_f32(&golden_dir().join(&case.tensor));
        assert_eq!(ours.pixels.len(), theirs.len(), "{}: tensor size", case.file);
        let (worst, at) = ours
            .pixels
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .enumerate()
            .fold((0f32, 0), |(w, at), (i, d)| if d > w { (d, i) } else { (w, at) });
        assert!(worst <= manifest.tolerance, "{}: pixel {at} differs by {worst}", case.file);
        assert!(theirs.iter().any(|&v| v > 0.5), "{}: golden tensor is empty", case.file);
        prepared.push(ours);
    }
    let sizes = size_features(&prepared);
    for (i, (ours, theirs)) in sizes.iter().zip(&manifest.cell.size).enumerate() {
        for k in 0..2 {
            assert!((ours[k] - theirs[k]).abs() < 1e-5, "object {i} size feature {k}: {} vs {}", ours[k], theirs[k]);
        }
    }
}
