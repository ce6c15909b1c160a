//! karyoscreen: chromosome-spread screening on a small Linux board.
//!
//! The modules are the pipeline, in order: capture → preprocess → segment → model (infer) →
//! analyse → decide → indicate / record. `pipeline` strings them together for one frame.
//! Everything that runs the model sits behind the default `inference` feature.

pub mod analyse;
#[cfg(feature = "inference")]
pub mod bench;
pub mod board;
#[cfg(feature = "inference")]
pub mod bundle;
pub mod capture;
pub mod card;
#[cfg(feature = "inference")]
pub mod case;
pub mod decide;
pub mod demo;
#[cfg(feature = "inference")]
pub mod evaluate;
pub mod indicate;
#[cfg(feature = "inference")]
pub mod model;
#[cfg(feature = "inference")]
pub mod pipeline;
pub mod preprocess;
#[cfg(feature = "inference")]
pub mod record;
#[cfg(feature = "inference")]
pub mod run;
#[cfg(feature = "inference")]
pub mod report;
pub mod segment;
#[cfg(feature = "inference")]
pub mod service;
