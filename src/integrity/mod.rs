//! What must not be silently wrong: the model card, signed model bundles (which model runs, and
//! who made it), and the audit record of every result.

#[cfg(feature = "inference")]
pub mod bundle;
pub mod card;
pub mod frame_store;
pub mod input;
pub mod record;
pub mod seg_card;
