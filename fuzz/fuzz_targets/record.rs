//! The record reader: whatever bytes sit in the file given as `--record` (a torn tail, another
//! file, absurd sequence numbers), opening it must end in `Err` or a recorder whose next line
//! continues the sequence, never a panic; a file that is not a record is left as it was.
#![no_main]

use libfuzzer_sys::fuzz_target;

use karyoscreen::integrity::record::Recorder;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("karyoscreen-fuzz-record-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("record.jsonl");
    std::fs::write(&path, data).unwrap();
    match Recorder::open(&path) {
        Ok(mut recorder) => {
            let before = recorder.last_seq();
            let seq = recorder.append("fuzz", &serde_json::json!({ "n": 1 })).unwrap();
            assert_eq!(seq, before + 1);
        }
        Err(_) => assert_eq!(std::fs::read(&path).unwrap(), data, "a refused record was changed"),
    }
    let _ = std::fs::remove_file(path.with_file_name("record.jsonl.1"));
});
