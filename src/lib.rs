//! karyoscreen: chromosome-spread screening on a small Linux board.
//!
//! The modules are the pipeline, in order: capture → preprocess → segment → model (infer) →
//! analyse → decide → indicate / record. `pipeline` strings them together for one frame.

pub mod analyse;
pub mod bench;
pub mod board;
pub mod bundle;
pub mod capture;
pub mod case;
pub mod decide;
pub mod demo;
pub mod evaluate;
pub mod indicate;
pub mod model;
pub mod pipeline;
pub mod preprocess;
pub mod record;
pub mod run;
pub mod report;
pub mod segment;
pub mod service;
