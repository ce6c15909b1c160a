//! One cell step: the trainer (`karyotrain.metrics.assign_cells`) wrote the classes it gives a
//! few synthetic cells, with the slots alone and with the homolog pairing term; the device's
//! `analyse::assign` must give the same.

use std::collections::BTreeMap;

use karyoscreen::integrity::card::{CellAssignment, Prediction};
use karyoscreen::pipeline::analyse::assign;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    homolog_weight: f64,
    cells: Vec<Cell>,
}

#[derive(Deserialize)]
struct Cell {
    identity: Vec<Vec<f32>>,
    homolog: Vec<Vec<f32>>,
    slots: Vec<usize>,
    paired: Vec<usize>,
}

fn labels() -> Vec<String> {
    (1..=22).map(|i| i.to_string()).chain(["X".into(), "Y".into()]).collect()
}

/// The trainer's rules (karyotrain/metrics.py): two per class, one Y, 4 nats either way.
fn rules(homolog_weight: Option<f64>) -> CellAssignment {
    let mut capacity: BTreeMap<String, usize> = labels().into_iter().map(|l| (l, 2)).collect();
    capacity.insert("Y".into(), 1);
    CellAssignment { capacity, extra_slot_cost: 4.0, missing_slot_cost: Some(4.0), homolog_weight }
}

fn classes(cell: &Cell, homolog_weight: Option<f64>) -> Vec<usize> {
    let predictions: Vec<Prediction> = cell
        .identity
        .iter()
        .zip(&cell.homolog)
        .map(|(identity, homolog)| Prediction {
            identity: identity.clone(),
            structure: vec![1.0, 0.0],
            arm: Vec::new(),
            position: None,
            homolog: homolog.clone(),
        })
        .collect();
    let structure_labels = ["normal".to_string(), "deletion".to_string()];
    assign(&predictions, &labels(), &structure_labels, &rules(homolog_weight), 0.5).iter().map(|c| c.class).collect()
}

#[test]
fn rust_cell_step_matches_the_trainers() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cell_step.json");
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(fixture.cells.len() >= 3);
    let mut pairing_changed = 0;
    for (k, cell) in fixture.cells.iter().enumerate() {
        assert_eq!(classes(cell, None), cell.slots, "cell {k}: slots alone");
        assert_eq!(classes(cell, Some(fixture.homolog_weight)), cell.paired, "cell {k}: with the pairing term");
        pairing_changed += cell.slots.iter().zip(&cell.paired).filter(|(a, b)| a != b).count();
    }
    // the fixture must exercise the pairing term, not only agree where it does nothing
    assert!(pairing_changed >= 4, "the pairing term changed only {pairing_changed} objects");
}
