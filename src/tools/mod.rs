//! Work around the pipeline rather than in it: a case tallied over many cells, evaluation on
//! labelled sets, benchmarks, the built-in demo cells and the PNG reports.

#[cfg(feature = "inference")]
pub mod adapt;
#[cfg(feature = "inference")]
pub mod bench;
#[cfg(feature = "inference")]
pub mod case;
pub mod demo;
#[cfg(feature = "inference")]
pub mod evaluate;
#[cfg(feature = "inference")]
pub mod frames_eval;
pub mod karyogram;
#[cfg(feature = "inference")]
pub mod report;
