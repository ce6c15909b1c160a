//! The review station through the real binary over real HTTP: a case recorded by `case` from
//! demo frames, two accounts (a reviewer and a read-only one), then every way in that must be
//! refused (no session, wrong password, wrong role, missing or foreign CSRF token, paths that
//! try to leave the routes), a correction recomputed, and a sign-off of a cell and of the case,
//! checked in the record. The cell's pictures come from the frames kept beside the record.

use std::path::Path;

mod common;
use common::station::{add_user, http, login, start_station};
use common::{karyoscreen, scratch};

fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    page[at..at + 64].to_string()
}

fn record_lines(record: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(record).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_reviewer_signs_a_cell_and_a_case_and_everyone_else_is_refused() {
    let dir = scratch("serve", "station");
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for n in ["1", "2", "3"] {
        let out =
            karyoscreen(&["demo", "--write-frame", n, "--out", frames.join(format!("{n}.png")).to_str().unwrap()]);
        assert!(out.status.success());
    }
    let record = dir.join("record.jsonl");
    let kept = dir.join("kept");
    let out = karyoscreen(&[
        "case",
        frames.to_str().unwrap(),
        "--record",
        record.to_str().unwrap(),
        "--record-frames",
        kept.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The frames' files are gone: the pictures can only come from the frames kept.
    std::fs::remove_dir_all(&frames).unwrap();
    let recorded = record_lines(&record);
    let case_seq = recorded.iter().find(|l| l["kind"] == "case").expect("a case line")["seq"].as_u64().unwrap();
    let cell = recorded.iter().find(|l| l["kind"] == "cell").unwrap().clone();

    let users = dir.join("users.json");
    add_user(&users, "ana", "reviewer", "ana's long password");
    add_user(&users, "ben", "viewer", "ben's long password");
    let (_station, address) = start_station(&record, &users, &["--frames", kept.to_str().unwrap()]);
    let a = address.as_str();

    assert_eq!(http(a, "GET", "/login", None, &[]).status, 200);
    // Nobody without an account reads anything.
    for path in [
        "/",
        "/live",
        "/cell/1",
        "/cell/1/karyogram.png",
        &format!("/case/{case_seq}"),
        &format!("/case/{case_seq}/report"),
    ] {
        let r = http(a, "GET", path, None, &[]);
        assert_eq!((r.status, r.headers.get("location").map(String::as_str)), (303, Some("/login")), "{path}");
    }
    assert_eq!(http(a, "GET", "/", Some(&"0".repeat(64)), &[]).status, 303, "a made-up session");
    assert_eq!(http(a, "POST", "/login", None, &[("name", "ana"), ("password", "wrong password!")]).status, 401);
    assert_eq!(http(a, "POST", "/login", None, &[("name", "zed"), ("password", "ana's long password")]).status, 401);

    let ana = login(a, "ana", "ana's long password");
    let index = http(a, "GET", "/", Some(&ana), &[]);
    assert_eq!(index.status, 200);
    assert!(index.headers["content-security-policy"].contains("default-src 'none'"));
    assert!(index.body.contains(&format!("/case/{case_seq}")) && index.body.contains("not signed"));
    let page = http(a, "GET", &format!("/cell/{}", cell["seq"]), Some(&ana), &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains(cell["frame_sha256"].as_str().unwrap()));
    let token = csrf(&page.body);
    let png = |name: &str| {
        let r = http(a, "GET", &format!("/cell/{}/{name}", cell["seq"]), Some(&ana), &[]);
        assert_eq!((r.status, r.headers["content-type"].as_str()), (200, "image/png"), "{name}: {}", r.body);
        assert!(image::load_from_memory(&r.bytes).unwrap().width() >= 400);
        r.bytes
    };
    assert!(page.body.contains(&format!("<img src=\"/cell/{}/karyogram.png\"", cell["seq"])));
    png("annotated.png");
    let karyogram_as_recorded = png("karyogram.png");
    // The live view is the newest cell, reloading itself.
    let newest_cell = recorded.iter().rev().find(|l| l["kind"] == "cell").unwrap()["seq"].clone();
    let live = http(a, "GET", "/live", Some(&ana), &[]).body;
    assert!(live.contains("http-equiv=\"refresh\"") && live.contains(&format!("Live: cell {newest_cell}")), "{live}");
    // The printable report says it is not signed, and shows the model and every cell's karyogram.
    let report_path = format!("/case/{case_seq}/report");
    let report = http(a, "GET", &report_path, Some(&ana), &[]).body;
    assert!(report.contains("Not signed") && report.contains(recorded[0]["model_sha256"].as_str().unwrap()));
    for cell in recorded.iter().filter(|l| l["kind"] == "cell") {
        assert!(report.contains(&format!("<img src=\"/cell/{}/karyogram.png\"", cell["seq"])), "{report}");
    }

    // Routes only: no path leaves them, and numbers are written one way.
    for path in
        ["/cell/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/cell/01", "/cell/1/../../users.json", "/users.json"]
    {
        assert_eq!(http(a, "GET", path, Some(&ana), &[]).status, 404, "{path}");
    }

    let sign = |session: &str, path: &str, token: &str| {
        http(
            a,
            "POST",
            path,
            Some(session),
            &[("csrf", token), ("decision", "confirmed"), ("iscn", "46,XX"), ("comment", "checked")],
        )
    };
    let cell_path = format!("/cell/{}/signoff", cell["seq"]);
    let lines_before = record_lines(&record).len();
    assert_eq!(sign(&ana, &cell_path, "").status, 403, "no CSRF token");
    assert_eq!(sign(&ana, &cell_path, &"f".repeat(64)).status, 403, "a foreign CSRF token");
    let ben = login(a, "ben", "ben's long password");
    let ben_token = csrf(&http(a, "GET", "/", Some(&ben), &[]).body);
    assert!(!http(a, "GET", &format!("/cell/{}", cell["seq"]), Some(&ben), &[]).body.contains("Sign as"));
    assert_eq!(sign(&ben, &cell_path, &ben_token).status, 403, "a read-only account");
    assert_eq!(sign(&ana, &cell_path, &ben_token).status, 403, "another session's token");
    assert_eq!(record_lines(&record).len(), lines_before, "a refused sign-off wrote to the record");

    // Corrections: an autosome marked "not a chromosome", recomputed by the device's analysis.
    let objects = cell["objects"].as_array().unwrap();
    let (dropped, label) = objects
        .iter()
        .enumerate()
        .find_map(|(i, o)| o["label"].as_str().filter(|l| l.parse::<u32>().is_ok()).map(|l| (i + 1, l.to_string())))
        .unwrap();
    let field = format!("class_{dropped}");
    let correction = [("csrf", token.as_str()), (field.as_str(), "not a chromosome")];
    let review_path = format!("/cell/{}/review", cell["seq"]);
    assert_eq!(http(a, "POST", &review_path, Some(&ben), &[("csrf", &ben_token), (field.as_str(), "1")]).status, 403);
    assert_eq!(http(a, "POST", &review_path, Some(&ana), &correction[1..]).status, 403, "no CSRF token");
    assert_eq!(http(a, "POST", &review_path, Some(&ana), &[("csrf", &token), (field.as_str(), "23")]).status, 400);
    assert_eq!(record_lines(&record).len(), lines_before, "a refused correction wrote to the record");
    assert_eq!(http(a, "POST", &review_path, Some(&ana), &correction).status, 303);
    let review = record_lines(&record).pop().unwrap();
    assert_eq!((review["kind"].as_str(), &review["of_seq"]), (Some("review"), &cell["seq"]));
    assert_eq!(review["changes"][0]["object"].as_u64(), Some(dropped as u64));
    assert_eq!(review["changes"][0]["to"], "not a chromosome");
    let sex = cell["karyotype"].as_str().unwrap().split(',').nth(1).unwrap();
    assert_eq!(cell["karyotype"].as_str().unwrap(), format!("46,{sex}"), "the demo cell reads normal as recorded");
    assert_eq!(review["karyotype"].as_str().unwrap(), format!("45,{sex},-{label}"));
    assert_eq!(review["verdict"], "abnormal");
    let page = http(a, "GET", &format!("/cell/{}", cell["seq"]), Some(&ana), &[]).body;
    assert!(page.contains("Corrected by ana") && page.contains(&format!("value=\"45,{sex},-{label}\"")));
    let lines_before = lines_before + 1;
    assert_ne!(png("karyogram.png"), karyogram_as_recorded, "the karyogram is drawn with the corrected classes");
    // A kept frame whose pixels changed is not shown as the cell's.
    let kept_frame = kept.join(format!("{}.png", cell["frame_sha256"].as_str().unwrap()));
    let original = std::fs::read(&kept_frame).unwrap();
    let mut altered = image::load_from_memory(&original).unwrap().to_luma8();
    altered.put_pixel(0, 0, image::Luma([altered.get_pixel(0, 0)[0] ^ 1]));
    altered.save(&kept_frame).unwrap();
    let r = http(a, "GET", &format!("/cell/{}/annotated.png", cell["seq"]), Some(&ana), &[]);
    assert!(r.status == 404 && r.body.contains("sha256 differs"), "{}", r.body);
    std::fs::write(&kept_frame, original).unwrap();

    // A cut: another object in two across the middle of its box, then the parts merged back.
    let keep = if dropped == 1 { 2 } else { 1 };
    let b = &objects[keep - 1]["bbox"];
    let (x, y, w, h) = (
        b["x"].as_i64().unwrap(),
        b["y"].as_i64().unwrap(),
        b["width"].as_i64().unwrap(),
        b["height"].as_i64().unwrap(),
    );
    let (left, right, middle) = ((x - 5).to_string(), (x + w + 5).to_string(), (y + h / 2).to_string());
    let object = keep.to_string();
    let cut = [
        ("csrf", token.as_str()),
        ("object", &object),
        ("x1", &left),
        ("y1", &middle),
        ("x2", &right),
        ("y2", &middle),
    ];
    let cut_path = format!("/cell/{}/cut", cell["seq"]);
    assert_eq!(
        http(a, "POST", &cut_path, Some(&ben), &[&[("csrf", ben_token.as_str())], &cut[1..]].concat()).status,
        403
    );
    let far = [("csrf", token.as_str()), ("object", &object), ("x1", "0"), ("y1", "0"), ("x2", "1"), ("y2", "0")];
    let missed = http(a, "POST", &cut_path, Some(&ana), &far);
    assert!(missed.status == 400 && missed.body.contains("does not cut"), "{}", missed.body);
    assert_eq!(http(a, "POST", &cut_path, Some(&ana), &cut).status, 303);
    let cut_review = record_lines(&record).pop().unwrap();
    assert_eq!(cut_review["objects"].as_array().unwrap().len(), objects.len() + 1);
    assert!(cut_review["edit"].as_str().unwrap().starts_with(&format!("object {keep} cut in two")), "{cut_review}");
    assert!(cut_review["karyotype"].as_str().unwrap().starts_with(&format!("46,{sex},")), "{cut_review}");
    let (part, next) = (keep.to_string(), (keep + 1).to_string());
    let label_kept = objects[keep - 1]["label"].as_str().unwrap();
    let merge = [("csrf", token.as_str()), ("a", &part), ("b", &next), ("label", label_kept)];
    assert_eq!(http(a, "POST", &format!("/cell/{}/merge", cell["seq"]), Some(&ana), &merge).status, 303);
    let review = record_lines(&record).pop().unwrap();
    assert_eq!(review["objects"].as_array().unwrap().len(), objects.len());
    assert_eq!(
        review["objects"][keep - 1]["bbox"],
        objects[keep - 1]["bbox"],
        "the parts' boxes join into the object's"
    );
    assert_eq!(review["karyotype"].as_str().unwrap(), format!("45,{sex},-{label}"));
    let lines_before = lines_before + 2;

    // Signed: a cell (its corrected reading), then the case.
    assert_eq!(sign(&ana, &cell_path, &token).status, 303);
    assert_eq!(sign(&ana, &format!("/case/{case_seq}/signoff"), &token).status, 303);
    let lines = record_lines(&record);
    assert_eq!(lines.len(), lines_before + 2);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["seq"].as_u64(), Some(i as u64 + 1), "the seq chain holds");
    }
    let (cell_signoff, case_signoff) = (&lines[lines_before], &lines[lines_before + 1]);
    assert_eq!(cell_signoff["kind"], "signoff");
    assert_eq!((cell_signoff["of_kind"].as_str(), &cell_signoff["of_seq"]), (Some("cell"), &cell["seq"]));
    assert_eq!(cell_signoff["frame_sha256"][0], cell["frame_sha256"]);
    assert_eq!((cell_signoff["reviewer"].as_str(), cell_signoff["iscn"].as_str()), (Some("ana"), Some("46,XX")));
    assert_eq!(cell_signoff["review_seq"], review["seq"], "the sign-off names the corrections it signed");
    assert_eq!(case_signoff["of_seq"].as_u64(), Some(case_seq));
    assert_eq!(case_signoff["frame_sha256"].as_array().unwrap().len(), 3);
    assert_eq!(&lines[..recorded.len()], &recorded[..], "nothing earlier was rewritten");
    assert!(http(a, "GET", &format!("/cell/{}", cell["seq"]), Some(&ana), &[]).body.contains("confirmed by ana"));
    let report = http(a, "GET", &report_path, Some(&ben), &[]).body;
    assert!(!report.contains("Not signed") && report.contains("Signed <b>confirmed</b> by <b>ana</b>"), "{report}");
    assert!(report.contains(&format!("karyotype <b>45,{sex},-{label}</b>")) && report.contains("(corrected by ana)"));

    // Logged out: the session is gone.
    assert_eq!(http(a, "POST", "/logout", Some(&ana), &[("csrf", &token)]).status, 303);
    assert_eq!(http(a, "GET", "/", Some(&ana), &[]).status, 303);
}

#[test]
fn the_board_profile_switches_the_station_on_and_sets_its_address() {
    let dir = scratch("serve", "profile");
    let users = dir.join("users.json");
    add_user(&users, "ana", "reviewer", "ana's long password");
    let profile = dir.join("board.toml");
    let generic = include_str!("../boards/generic.toml");
    let serve = |profile: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_karyoscreen"))
            .args(["serve", "--record", dir.join("record.jsonl").to_str().unwrap(), "--users"])
            .arg(&users)
            .arg("--config")
            .arg(profile)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Off, as shipped: says so and exits 0 (the service stays inactive).
    std::fs::write(&profile, generic).unwrap();
    let off = serve(&profile).wait_with_output().unwrap();
    assert!(off.status.success());
    assert!(String::from_utf8_lossy(&off.stdout).contains("off in"), "{}", String::from_utf8_lossy(&off.stdout));
    // On, at the profile's address, behind a TLS proxy: the session cookie is Secure.
    let on = generic
        .replace("enabled = false", "enabled = true")
        .replace("listen = \"0.0.0.0:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("https = false", "https = true");
    assert_ne!(on, generic);
    std::fs::write(&profile, on).unwrap();
    let mut station = serve(&profile);
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(station.stdout.take().unwrap()), &mut ready).unwrap();
    let address = ready.split("http://").nth(1).expect(&ready).split('/').next().unwrap().to_string();
    let r = http(&address, "POST", "/login", None, &[("name", "ana"), ("password", "ana's long password")]);
    station.kill().unwrap();
    station.wait().unwrap();
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    assert!(r.headers["set-cookie"].contains("; Secure"), "{:?}", r.headers);
}
