//! Board profile parsing (`run --config FILE`) and model card parsing: any bytes, as the
//! loaders read them. Nothing may panic or overflow the stack; a bad file is an `Err`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Board::load reads the file as UTF-8 text first and refuses anything else.
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(board) = karyoscreen::device::board::Board::parse(text, "fuzz.toml") {
        assert!((16..=8192).contains(&board.camera.width) && (16..=8192).contains(&board.camera.height));
    }
    if let Ok(card) = serde_json::from_str::<karyoscreen::integrity::card::Card>(text) {
        let _ = card.preprocessing.check_supported();
        let _ = card.check_ranges();
        let _ = (card.identity_labels(), card.structure_labels());
    }
});
