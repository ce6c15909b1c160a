//! Routes of the review station, as a function from a request to a reply (so every route is
//! tested without a socket), and the HTTP loop that feeds it (tiny_http: one thread, no async
//! runtime, a few hundred kB of code; a board serves a handful of reviewers).
//!
//! | route | who |
//! | --- | --- |
//! | `GET /login`, `POST /login` | anyone |
//! | `GET /`: cases and cells, newest first | logged in |
//! | `GET /cell/N`, `GET /case/N` | logged in |
//! | `GET /cell/N/annotated.png`, `GET /cell/N/karyogram.png`: drawn with the current classes | logged in |
//! | `GET /case/N/report`: printable, with every cell's karyogram | logged in |
//! | `GET /live`: the newest cell, reloaded every 5 s | logged in |
//! | `POST /cell/N/review`, `/merge`, `/cut`: corrected classes, two objects merged, one cut in two; karyotype recomputed | reviewer, with the session's CSRF token |
//! | `POST /cell/N/signoff`, `POST /case/N/signoff` | reviewer, with the session's CSRF token |
//! | `POST /logout` | logged in, with the CSRF token |

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::accounts::{same_token, Role, Session, Sessions, Users};
use super::correct::{objects_now, ReviewedObject};
use super::pictures::{frame_file, render, Picture};
use super::{correct, pages, read_record, read_record_for, Entry, Reading, Review, Signoff, Wanted};
use crate::integrity::record::{RecordOptions, Recorder};

const COOKIE: &str = "ks_session";
const MAX_FORM_BYTES: usize = 64 << 10;

pub struct Request {
    pub method: String,
    /// The path without its query.
    pub path: String,
    pub cookie: Option<String>,
    pub form: HashMap<String, String>,
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    fn html(status: u16, body: String) -> Reply {
        Reply { status, headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())], body: body.into() }
    }

    fn png(body: Vec<u8>) -> Reply {
        Reply { status: 200, headers: vec![("Content-Type".into(), "image/png".into())], body }
    }

    fn redirect(to: &str) -> Reply {
        Reply { status: 303, headers: vec![("Location".into(), to.into())], body: Vec::new() }
    }

    fn message(status: u16, title: &str, session: Option<&Session>) -> Reply {
        Reply::html(status, pages::page(title, session, ""))
    }
}

pub struct Station {
    pub record: PathBuf,
    pub options: RecordOptions,
    users: Users,
    sessions: Mutex<Sessions>,
    /// Cookies carry `Secure` (the page is reached over HTTPS, directly or through a proxy).
    pub secure_cookies: bool,
    /// Where the run loop keeps the frames it recorded (`--record-frames`), if it does.
    pub frames: Option<PathBuf>,
}

impl Station {
    pub fn new(record: PathBuf, options: RecordOptions, users: Users, sessions: Sessions) -> Station {
        Station { record, options, users, sessions: Mutex::new(sessions), secure_cookies: false, frames: None }
    }

    fn session(&self, request: &Request) -> Option<(String, Session)> {
        let token = request.cookie.as_deref()?;
        let session = self.sessions.lock().ok()?.get(token)?;
        Some((token.to_string(), session))
    }

    pub fn handle(&self, request: &Request) -> Reply {
        let mut reply = self.route(request).unwrap_or_else(|e| {
            log::error!("review station: {e:#}");
            Reply::html(500, pages::page(&format!("Error: {e}"), None, ""))
        });
        // no scripts, frames, external assets or caching of case pages
        for (k, v) in [
            (
                "Content-Security-Policy",
                "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
            ),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("Cache-Control", "no-store"),
        ] {
            reply.headers.push((k.into(), v.into()));
        }
        reply
    }

    fn route(&self, request: &Request) -> Result<Reply> {
        let parts: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
        let method = request.method.as_str();
        if parts == ["login"] {
            return Ok(match method {
                "GET" => Reply::html(200, pages::login("")),
                "POST" => self.login(request),
                _ => Reply::message(405, "Method not allowed", None),
            });
        }
        let Some((token, session)) = self.session(request) else {
            return Ok(Reply::redirect("/login"));
        };
        let posted = method == "POST";
        if posted && !request.form.get("csrf").is_some_and(|t| same_token(t, &session.csrf)) {
            return Ok(Reply::message(
                403,
                "Refused: the form is stale or not from this station (reload the page)",
                Some(&session),
            ));
        }
        let seq = |s: &str| s.parse::<u64>().ok().filter(|n| n.to_string() == s);
        match (method, parts.as_slice()) {
            ("GET", [""]) => {
                Ok(Reply::html(200, pages::index(&read_record(&self.record, self.options.keep)?, &session)))
            }
            ("GET", [kind @ ("cell" | "case"), n]) if seq(n).is_some() => {
                let n = seq(n).unwrap_or_default();
                let reading = read_record_for(&self.record, self.options.keep, Wanted::Entry(kind, n))?;
                Ok(match &reading.whole {
                    Some(e) => {
                        let pictures = frame_file(&e.line, self.frames.as_deref()).is_some();
                        let objects = if e.kind == "cell" { Some(objects_of(&reading, e)) } else { None };
                        Reply::html(200, pages::entry(&reading.entries, e, pictures, objects, &session))
                    }
                    None => Reply::message(404, "No such record", Some(&session)),
                })
            }
            ("GET", ["live"]) => {
                let reading = read_record_for(&self.record, self.options.keep, Wanted::NewestCell)?;
                let newest = reading.whole.as_ref();
                let pictures = newest.is_some_and(|e| frame_file(&e.line, self.frames.as_deref()).is_some());
                let objects = newest.map(|e| objects_of(&reading, e));
                Ok(Reply::html(200, pages::live(&reading.entries, newest, pictures, objects, &session)))
            }
            ("GET", ["case", n, "report"]) if seq(n).is_some() => {
                let reading = read_record_for(
                    &self.record,
                    self.options.keep,
                    Wanted::Entry("case", seq(n).unwrap_or_default()),
                )?;
                Ok(match &reading.whole {
                    Some(case) => {
                        let pictures = |cell: &serde_json::Value| frame_file(cell, self.frames.as_deref()).is_some();
                        Reply::html(200, pages::case_report(&reading.entries, case, pictures, &session))
                    }
                    None => Reply::message(404, "No such record", Some(&session)),
                })
            }
            ("GET", ["cell", n, name @ ("annotated.png" | "karyogram.png")]) if seq(n).is_some() => {
                let picture = if *name == "annotated.png" { Picture::Annotated } else { Picture::Karyogram };
                self.picture(seq(n).unwrap_or_default(), picture, &session)
            }
            ("POST", [kind @ ("cell" | "case"), n, action @ ("signoff" | "review" | "merge" | "cut")])
                if seq(n).is_some() =>
            {
                if session.role != Role::Reviewer {
                    return Ok(Reply::message(
                        403,
                        "Refused: a read-only account cannot sign off or correct",
                        Some(&session),
                    ));
                }
                match *action {
                    "signoff" => self.sign(request, &session, kind, seq(n).unwrap_or_default()),
                    _ if *kind == "cell" => self.correct(request, &session, seq(n).unwrap_or_default(), action),
                    _ => Ok(Reply::message(404, "A case is corrected through its cells", Some(&session))),
                }
            }
            ("POST", ["logout"]) => {
                if let Ok(mut sessions) = self.sessions.lock() {
                    sessions.end(&token);
                }
                Ok(Reply::redirect("/login"))
            }
            _ => Ok(Reply::message(404, "Not found", Some(&session))),
        }
    }

    fn picture(&self, seq: u64, picture: Picture, session: &Session) -> Result<Reply> {
        let reading = read_record_for(&self.record, self.options.keep, Wanted::Entry("cell", seq))?;
        let Some(cell) = &reading.whole else {
            return Ok(Reply::message(404, "No such record", Some(session)));
        };
        let Some(frame) = frame_file(&cell.line, self.frames.as_deref()) else {
            return Ok(Reply::message(404, "The frame of this cell was not kept", Some(session)));
        };
        let objects = objects_of(&reading, cell)?;
        Ok(match render(&cell.line, &objects, &frame, picture) {
            Ok(png) => Reply::png(png),
            Err(e) => Reply::message(404, &format!("No picture: {e:#}"), Some(session)),
        })
    }

    fn login(&self, request: &Request) -> Reply {
        let field = |k: &str| request.form.get(k).map(String::as_str).unwrap_or("");
        let Some(user) = self.users.check(field("name"), field("password")) else {
            log::warn!("review station: failed login for {:?}", field("name"));
            return Reply::html(401, pages::login("Wrong name or password."));
        };
        let Ok(mut sessions) = self.sessions.lock() else { return Reply::message(500, "Sessions unavailable", None) };
        let token = sessions.start(user);
        let mut reply = Reply::redirect("/");
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        reply
            .headers
            .push(("Set-Cookie".into(), format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{secure}")));
        reply
    }

    fn sign(&self, request: &Request, session: &Session, kind: &str, seq: u64) -> Result<Reply> {
        let reading = read_record_for(&self.record, self.options.keep, Wanted::Entry(kind, seq))?;
        let Some(entry) = &reading.whole else {
            return Ok(Reply::message(404, "No such record", Some(session)));
        };
        let field = |k: &str| request.form.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        let decision = field("decision");
        if !["confirmed", "rejected"].contains(&decision.as_str()) || field("iscn").is_empty() {
            return Ok(Reply::message(400, "A sign-off needs a decision and the karyotype as signed", Some(session)));
        }
        let frame_sha256 = match kind {
            "cell" => vec![entry.line["frame_sha256"].as_str().unwrap_or_default().to_string()],
            _ => entry.line["frames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["frame_sha256"].as_str().map(String::from))
                .collect(),
        };
        let review_seq = reading.latest_review.as_ref().map(|r| r.seq);
        let signoff = Signoff {
            of_kind: kind.to_string(),
            of_seq: seq,
            frame_sha256,
            reviewer: session.user.clone(),
            decision,
            iscn: field("iscn"),
            comment: field("comment"),
            review_seq,
        };
        self.append("signoff", &signoff, &format!("/{kind}/{seq}"), session)
    }

    /// A correction of a cell, recomputed and recorded: `review` sets every object's class
    /// (`class_1`, `class_2`, … in the form; one left out keeps its class), `merge` joins
    /// objects `a` and `b` as class `label`, `cut` cuts object `object` along the line
    /// `x1,y1`–`x2,y2` (frame pixels). Objects are numbered as the cell page shows them now.
    fn correct(&self, request: &Request, session: &Session, seq: u64, action: &str) -> Result<Reply> {
        let reading = read_record_for(&self.record, self.options.keep, Wanted::Entry("cell", seq))?;
        let Some(cell) = &reading.whole else {
            return Ok(Reply::message(404, "No such record", Some(session)));
        };
        let before = objects_of(&reading, cell)?;
        let field = |k: &str| request.form.get(k).map(|v| v.trim()).unwrap_or("");
        let number = |k: &str| field(k).parse::<i64>().map_err(|_| anyhow::anyhow!("{k} must be a whole number"));
        let index = |k: &str| -> Result<usize> {
            let n = number(k)?;
            anyhow::ensure!((1..=before.len() as i64).contains(&n), "{k}: there is no object {n}");
            Ok(n as usize - 1)
        };
        let edited = match action {
            "merge" => index("a").and_then(|a| {
                let b = index("b")?;
                let label = field("label").to_string();
                let objects = correct::merge(&before, a, b, &label)?;
                Ok((objects, Some(format!("objects {} and {} merged into one, {label}", a + 1, b + 1))))
            }),
            "cut" => index("object").and_then(|k| {
                let line = [number("x1")?, number("y1")?, number("x2")?, number("y2")?];
                let objects = correct::cut(&before, k, line)?;
                let [x1, y1, x2, y2] = line;
                Ok((objects, Some(format!("object {} cut in two along ({x1}, {y1})-({x2}, {y2})", k + 1))))
            }),
            _ => {
                let classes: Vec<String> = before
                    .iter()
                    .enumerate()
                    .map(|(i, o)| request.form.get(&format!("class_{}", i + 1)).cloned().unwrap_or(o.label.clone()))
                    .collect();
                correct::relabel(&before, &classes).map(|objects| (objects, None))
            }
        };
        let corrected = match edited.and_then(|(objects, edit)| correct::recompute(&cell.line, &before, objects, edit))
        {
            Ok(c) => c,
            Err(e) => return Ok(Reply::message(400, &format!("Not recorded: {e:#}"), Some(session))),
        };
        let review = Review {
            of_kind: "cell".into(),
            of_seq: seq,
            frame_sha256: vec![cell.line["frame_sha256"].as_str().unwrap_or_default().to_string()],
            reviewer: session.user.clone(),
            corrected,
        };
        self.append("review", &review, &format!("/cell/{seq}"), session)
    }

    /// Appends one line and sends the browser back to `then`. The run loop may be writing the
    /// same record: the append takes the record's lock for its one line and continues the seq.
    fn append<T: serde::Serialize>(
        &self,
        kind: &'static str,
        body: &T,
        then: &str,
        session: &Session,
    ) -> Result<Reply> {
        match Recorder::open_with(&self.record, self.options).and_then(|mut r| r.append(kind, body)) {
            Ok(_) => Ok(Reply::redirect(then)),
            Err(e) => Ok(Reply::message(503, &format!("Not recorded: {e:#}. Try again."), Some(session))),
        }
    }
}

/// `application/x-www-form-urlencoded` -> fields (the last of a repeated name wins).
pub fn parse_form(body: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
                .then(|| Some(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?))
                .flatten();
            match (bytes[i], escaped) {
                (_, Some(b)) => {
                    out.push(b);
                    i += 2;
                }
                (b'+', _) => out.push(b' '),
                (b, _) => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn cookie_token(header: &str) -> Option<String> {
    header.split(';').map(str::trim).find_map(|c| c.strip_prefix(&format!("{COOKIE}="))).map(String::from)
}

/// Serves `station` on `listen` until the process ends; `ready` gets the bound address.
pub fn serve(station: &Station, listen: &str, ready: impl FnOnce(std::net::SocketAddr) -> Result<()>) -> Result<()> {
    let server = tiny_http::Server::http(listen).map_err(|e| anyhow::anyhow!("{listen}: cannot listen: {e}"))?;
    let address = server.server_addr().to_ip().context("not listening on an IP address")?;
    ready(address)?;
    for mut request in server.incoming_requests() {
        let mut body = Vec::new();
        let too_big = request.body_length().is_some_and(|n| n > MAX_FORM_BYTES)
            || request.as_reader().take(MAX_FORM_BYTES as u64 + 1).read_to_end(&mut body).is_err()
            || body.len() > MAX_FORM_BYTES;
        let reply = if too_big {
            Reply::message(413, "Request too large", None)
        } else {
            let url = request.url().to_string();
            let cookie = request
                .headers()
                .iter()
                .filter(|h| h.field.equiv("Cookie"))
                .find_map(|h| cookie_token(h.value.as_str()));
            station.handle(&Request {
                method: request.method().as_str().to_string(),
                path: url.split('?').next().unwrap_or("").to_string(),
                cookie,
                form: parse_form(&String::from_utf8_lossy(&body)),
            })
        };
        // with its length, never chunked: every reply is whole in memory already
        let mut response = tiny_http::Response::from_data(reply.body)
            .with_status_code(reply.status)
            .with_chunked_threshold(usize::MAX);
        for (k, v) in reply.headers {
            if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                response.add_header(h);
            }
        }
        if let Err(e) = request.respond(response) {
            log::warn!("review station: reply not sent: {e}");
        }
    }
    Ok(())
}

/// A cell's objects as its latest review left them (that review's whole line: the summaries
/// do not carry objects).
fn objects_of(reading: &Reading, cell: &Entry) -> Result<Vec<ReviewedObject>> {
    objects_now(&cell.line, reading.latest_review.as_ref().map(|r| &r.line))
}
