//! Frame decoding and segmentation: any bytes through the decoder `analyze` uses (same
//! limits), then segmentation and the crops' preprocessing.
//! Nothing may panic; a refused frame is an `Err`.
#![no_main]

use libfuzzer_sys::fuzz_target;

use karyoscreen::device::capture::frame_from_bytes;
use karyoscreen::pipeline::preprocess::{preprocess_crop, PreprocessParams};
use karyoscreen::pipeline::segment::{segment, SegmentParams};

/// Frames with more pixels than this are decoded but not segmented here: large frames are
/// covered by tests/bad_input.rs; the fuzzer spends its time on many small ones.
const MAX_SEGMENTED_PIXELS: u64 = 1 << 18;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = frame_from_bytes(data, "fuzz") else { return };
    let (w, h) = frame.image.dimensions();
    assert!(w > 0 && h > 0, "a decoded frame has pixels");
    if w as u64 * h as u64 > MAX_SEGMENTED_PIXELS {
        return;
    }
    let seg = segment(&frame.image, &SegmentParams::default());
    let params = PreprocessParams::default();
    for object in &seg.objects {
        assert!(object.bbox.x + object.bbox.width <= w && object.bbox.y + object.bbox.height <= h);
        let _ = preprocess_crop(&object.crop, Some(seg.polarity), &params);
    }
});
