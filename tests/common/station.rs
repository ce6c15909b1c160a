//! The review station for the tests that use it: a running `karyoscreen serve`, accounts, and
//! a plain HTTP/1.1 client.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub bytes: Vec<u8>,
}

/// One HTTP/1.1 request on its own connection.
pub fn http(address: &str, method: &str, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Reply {
    let body: String = form.iter().map(|(k, v)| format!("{k}={}", v.replace(' ', "+"))).collect::<Vec<_>>().join("&");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: station\r\nConnection: close\r\n");
    if let Some(token) = cookie {
        request += &format!("Cookie: ks_session={token}\r\n");
    }
    if method == "POST" {
        request += &format!("Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n", body.len());
    }
    request += "\r\n";
    request += &body;
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP reply");
    let (head, bytes) = (String::from_utf8_lossy(&raw[..split]).into_owned(), raw[split + 4..].to_vec());
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers =
        lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect();
    Reply { status, headers, body: String::from_utf8_lossy(&bytes).into_owned(), bytes }
}

pub fn add_user(users: &Path, name: &str, role: &str, password: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_karyoscreen"))
        .args(["user", "add", name, "--role", role, "--users", users.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

/// Logs in; -> the session token.
pub fn login(address: &str, name: &str, password: &str) -> String {
    let r = http(address, "POST", "/login", None, &[("name", name), ("password", password)]);
    assert_eq!(r.status, 303, "{name} could not log in");
    let cookie = &r.headers["set-cookie"];
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    cookie.split(';').next().unwrap().strip_prefix("ks_session=").unwrap().to_string()
}

/// The station process, ended when dropped.
pub struct Station(Child);

impl Drop for Station {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` on a free port of 127.0.0.1 with `extra` options; -> the process and its
/// address (`127.0.0.1:PORT`).
pub fn start_station(record: &Path, users: &Path, extra: &[&str]) -> (Station, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_karyoscreen"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--record",
            record.to_str().unwrap(),
            "--users",
            users.to_str().unwrap(),
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    let address = ready.split("http://").nth(1).expect("the station says where it listens").split('/').next().unwrap();
    (Station(child), address.to_string())
}

/// One request with a JSON body (or none) on its own connection; -> the reply's body.
pub fn http_json(address: &str, method: &str, path: &str, body: Option<&serde_json::Value>) -> String {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if method != "GET" {
        request += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    }
    request += "\r\n";
    request += &body;
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(120))).unwrap();
    (&stream).write_all(request.as_bytes()).unwrap();
    // chromedriver keeps the connection open whatever the request says: read by length
    let mut reader = BufReader::new(&stream);
    let (mut length, mut chunked) = (None, false);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(n) = line.strip_prefix("content-length:") {
            length = n.trim().parse::<usize>().ok();
        }
        chunked |= line.starts_with("transfer-encoding:") && line.contains("chunked");
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body).unwrap();
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    String::from_utf8_lossy(&body).into_owned()
}
