//! karyoscreen: chromosome-spread screening on a small Linux board.
//!
//! A frame goes capture → segment → preprocess → infer → analyse → decide → indicate / record:
//! - [`device`]: frame sources (`device::capture`), indicator LEDs (`device::indicate`), board
//!   profiles and the run loop;
//! - [`pipeline`]: the stages from a grey frame to a verdict, one module each;
//! - [`integrity`]: the model card, signed model bundles, the audit record;
//! - [`review`]: the review station, where a person reads the record and signs off;
//! - [`tools`]: case tally, evaluation, adaptation, benchmarks, demo cells, PNG reports.
//!
//! Everything that runs the model, and the review station, sits behind the default `inference`
//! feature, so the fuzz targets build the parsers and segmentation without tract.

pub mod device;
pub mod integrity;
pub mod pipeline;
#[cfg(feature = "inference")]
pub mod review;
pub mod tools;
