//! The review station in a real browser: headless Chromium driven through chromedriver
//! (WebDriver over HTTP, Debian's `chromium` and `chromium-driver`, installed by
//! tests/vm/setup-host.sh). A reviewer logs in, opens a cell, moves one of its objects to
//! another class, signs the case, and the record holds both lines with its `seq` chain whole.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::station::{add_user, http, start_station};
use common::{karyoscreen, scratch};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    process: Child,
    address: String,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = webdriver(&self.address, "DELETE", &format!("/session/{}", self.session), None);
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// One WebDriver command; -> its `value`.
fn webdriver(address: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let reply = common::station::http_json(address, method, path, body.as_ref());
    let value: Value = serde_json::from_str(&reply).unwrap_or_else(|_| panic!("chromedriver said {reply}"));
    assert!(value["value"].get("error").is_none(), "{method} {path}: {}", value["value"]);
    value["value"].clone()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Driver {
    fn start(profile: &Path) -> Driver {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                Path::new(tool).is_file(),
                "{tool} missing: install chromium and chromium-driver (tests/vm/setup-host.sh)"
            );
        }
        let port = free_port();
        let process = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Chromium as root needs --no-sandbox; the rest keeps it off a network it cannot reach.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}});
        let mut driver = Driver { process, address, session: String::new() };
        driver.session =
            webdriver(&driver.address, "POST", "/session", Some(caps))["sessionId"].as_str().unwrap().to_string();
        driver
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        webdriver(&self.address, method, &format!("/session/{}{path}", self.session), body)
    }

    fn open(&self, url: &str) {
        self.command("POST", "/url", Some(json!({"url": url})));
    }

    fn find(&self, css: &str) -> String {
        let found = self.command("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}")).to_string()
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        self.command("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.command("POST", &format!("/element/{id}/value"), Some(json!({"text": text})));
    }

    fn page(&self) -> String {
        self.command("GET", "/source", None).as_str().unwrap().to_string()
    }

    /// Waits for the image `css` to have loaded (under the page's content security policy);
    /// -> its width in pixels.
    fn loaded_width(&self, css: &str) -> u64 {
        let id = self.find(css);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let width = self.command("GET", &format!("/element/{id}/property/naturalWidth"), None).as_u64();
            match width {
                Some(w) if w > 0 => return w,
                _ => assert!(Instant::now() < deadline, "{css} never loaded"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the page to hold `text`: a click that submits a form returns before the next
    /// page has loaded.
    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.page().contains(text) {
            assert!(Instant::now() < deadline, "the page never showed {text:?}: {}", self.page());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_reviewer_corrects_a_cell_and_signs_the_case_in_a_browser() {
    let dir = scratch("browser", "review");
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for n in ["1", "2", "3"] {
        assert!(karyoscreen(&["demo", "--write-frame", n, "--out", frames.join(format!("{n}.png")).to_str().unwrap()])
            .status
            .success());
    }
    let record = dir.join("record.jsonl");
    assert!(karyoscreen(&["case", frames.to_str().unwrap(), "--record", record.to_str().unwrap()]).status.success());
    let lines = |record: &Path| -> Vec<Value> {
        std::fs::read_to_string(record).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let recorded = lines(&record);
    let cell = recorded.iter().find(|l| l["kind"] == "cell").unwrap().clone();
    let case = recorded.iter().find(|l| l["kind"] == "case").unwrap().clone();
    let users = dir.join("users.json");
    add_user(&users, "ana", "reviewer", "ana's long password");
    let (_station, address) = start_station(&record, &users, &[]);
    assert_eq!(http(&address, "GET", "/login", None, &[]).status, 200);

    let browser = Driver::start(&dir.join("profile"));
    browser.open(&format!("http://{address}/"));
    browser.wait_for("Log in"); // a visitor lands on the login page
    browser.type_into("input[name=name]", "ana");
    browser.type_into("input[name=password]", "ana's long password");
    browser.click("form[action='/login'] button");
    browser.wait_for("Cases and cells");

    // Open the cell and move its first object to another class.
    browser.click(&format!("a[href='/cell/{}']", cell["seq"]));
    for picture in ["annotated", "karyogram"] {
        assert!(browser.loaded_width(&format!("img[src='/cell/{}/{picture}.png']", cell["seq"])) >= 400);
    }
    let from = cell["objects"][0]["label"].as_str().unwrap();
    let to = if from == "1" { "2" } else { "1" };
    browser.click(&format!("select[name=class_1] option:nth-child({})", to.parse::<usize>().unwrap()));
    browser.click(&format!("form[action='/cell/{}/review'] button", cell["seq"]));
    browser.wait_for("Corrected by ana");

    // Sign the case.
    browser.open(&format!("http://{address}/case/{}", case["seq"]));
    browser.click("input[name=decision][value=confirmed]");
    browser.type_into("textarea[name=comment]", "reviewed in the browser");
    browser.click(&format!("form[action='/case/{}/signoff'] button", case["seq"]));
    browser.wait_for("confirmed by ana");

    let after = lines(&record);
    assert_eq!(&after[..recorded.len()], &recorded[..], "nothing earlier was rewritten");
    for (i, line) in after.iter().enumerate() {
        assert_eq!(line["seq"].as_u64(), Some(i as u64 + 1), "the seq chain holds");
    }
    let (review, signoff) = (&after[recorded.len()], &after[recorded.len() + 1]);
    assert_eq!(after.len(), recorded.len() + 2);
    assert_eq!((review["kind"].as_str(), &review["of_seq"]), (Some("review"), &cell["seq"]));
    assert_eq!(review["changes"][0], json!({"object": 1, "from": from, "to": to}));
    assert_eq!((signoff["kind"].as_str(), &signoff["of_seq"]), (Some("signoff"), &case["seq"]));
    assert_eq!((signoff["of_kind"].as_str(), signoff["reviewer"].as_str()), (Some("case"), Some("ana")));
    assert_eq!(signoff["comment"], "reviewed in the browser");
    assert_eq!(signoff["iscn"], case["karyotype"]);
}
