//! The board around the pipeline: where frames come from (camera, folder, files, demo), the
//! indicator LEDs, board profiles, and the run loop with its systemd wiring.

pub mod board;
pub mod capture;
pub mod indicate;
#[cfg(feature = "inference")]
pub mod run;
#[cfg(feature = "inference")]
pub mod service;
