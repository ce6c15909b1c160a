//! The stages that turn one frame into a verdict, in the order they run:
//! segment → preprocess → infer → analyse → decide. [`frame`] strings them together.
//! Capture and the indicators, the two ends that touch hardware, live in [`crate::device`].

pub mod analyse;
pub mod decide;
#[cfg(feature = "inference")]
pub mod frame;
#[cfg(feature = "inference")]
pub mod infer;
pub mod preprocess;
pub mod segment;

#[cfg(feature = "inference")]
pub use frame::{CellResult, FrameInputs, ObjectResult, Pipeline, SegmentedBy, Segmenting, Timings};
