//! The station's HTML: server-rendered pages with no script and no external asset, one inline
//! stylesheet (print included).

use serde_json::Value;

use super::accounts::{Role, Session};
use anyhow::Result;

use super::correct::{ReviewedObject, NOT_A_CHROMOSOME};
use super::{cell_of_frame, latest_review, Entry};
use crate::tools::karyogram::CLASS_NAMES;

const STYLE: &str = "body{font:15px/1.4 sans-serif;margin:1.5em;max-width:70em}table{border-collapse:collapse}\
td,th{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}\
.abnormal{color:#a00}.indeterminate{color:#a60}.normal{color:#060}header{display:flex;gap:1em;align-items:center}\
header form{margin-left:auto}img{max-width:100%;height:auto}section.cell{margin-top:1.5em}\
@media print{header,form,.screen{display:none}body{margin:0;max-width:none}section.cell{break-inside:avoid}}";

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text(v: &Value) -> String {
    escape(&match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

pub fn page(title: &str, session: Option<&Session>, body: &str) -> String {
    page_with_head(title, session, body, "")
}

/// The live view: the newest cell's page, reloaded by the browser every few seconds (no script).
pub fn live(
    entries: &[Entry],
    newest: Option<&Entry>,
    pictures: bool,
    objects: Option<Result<Vec<ReviewedObject>>>,
    session: &Session,
) -> String {
    let refresh = "<meta http-equiv=\"refresh\" content=\"5\">";
    let Some(cell) = newest else {
        return page_with_head("Live: no cell recorded yet", Some(session), "", refresh);
    };
    let title = format!("Live: cell {}", cell.seq);
    let body = format!(
        "<p class=\"screen\">The newest cell the device recorded, reloaded every 5 s. \
         <a href=\"/cell/{}\">Open it to correct or sign</a> (this page reloads under a half-filled form).</p>{}",
        cell.seq,
        entry_body(entries, cell, pictures, objects, session, false)
    );
    page_with_head(&title, Some(session), &body, refresh)
}

fn page_with_head(title: &str, session: Option<&Session>, body: &str, head: &str) -> String {
    let header = match session {
        Some(s) => format!(
            "<header><a href=\"/\">karyoscreen review</a><a href=\"/live\">live</a><span>{} ({})</span>\
             <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button>Log out</button></form></header>",
            escape(&s.user),
            if s.role == Role::Reviewer { "reviewer" } else { "read only" },
            s.csrf
        ),
        None => "<header>karyoscreen review</header>".to_string(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head>\
         {head}<body>{header}<h1>{}</h1>{body}<p><small>A screening aid: every call needs a person's sign-off.</small></p></body></html>",
        escape(title),
        escape(title)
    )
}

pub fn login(message: &str) -> String {
    let note =
        if message.is_empty() { String::new() } else { format!("<p class=\"abnormal\">{}</p>", escape(message)) };
    page(
        "Log in",
        None,
        &format!(
            "{note}<form method=\"post\" action=\"/login\"><p><label>Name <input name=\"name\" autocomplete=\"username\" required></label></p>\
             <p><label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
             <p><button>Log in</button></p></form>"
        ),
    )
}

/// Sign-offs that name `seq`, as "decision by reviewer".
fn signoffs_of<'a>(entries: &'a [Entry], kind: &str, seq: u64) -> impl Iterator<Item = &'a Entry> + 'a {
    let kind = kind.to_string();
    entries.iter().filter(move |e| {
        e.kind == "signoff" && e.line["of_seq"].as_u64() == Some(seq) && e.line["of_kind"] == kind.as_str()
    })
}

fn time(ms: &Value) -> String {
    let secs = ms.as_u64().unwrap_or(0) / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // civil date from days since 1970-01-01 (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year}-{month:02}-{day:02} {:02}:{:02} UTC", rest / 3600, rest / 60 % 60)
}

pub fn index(entries: &[Entry], session: &Session) -> String {
    let mut rows = String::new();
    for e in entries.iter().rev().filter(|e| e.kind == "cell" || e.kind == "case") {
        let l = &e.line;
        let what = if e.kind == "cell" {
            text(&l["origin"])
        } else {
            format!("{} cells", l["frames"].as_array().map_or(0, Vec::len))
        };
        let signed: Vec<String> = signoffs_of(entries, &e.kind, e.seq)
            .map(|s| format!("{} by {}", text(&s.line["decision"]), text(&s.line["reviewer"])))
            .collect();
        rows += &format!(
            "<tr><td><a href=\"/{kind}/{seq}\">{kind} {seq}</a></td><td>{}</td><td>{what}</td><td>{}</td>\
             <td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
            time(&l["time_unix_ms"]),
            text(&l["karyotype"]),
            text(&l["verdict"]),
            text(&l["verdict"]),
            l["reasons"].as_array().map(|r| r.iter().map(text).collect::<Vec<_>>().join("<br>")).unwrap_or_default(),
            if signed.is_empty() { "not signed".to_string() } else { signed.join("<br>") },
            kind = e.kind,
            seq = e.seq,
        );
    }
    if rows.is_empty() {
        rows = "<tr><td colspan=\"7\">Nothing recorded yet.</td></tr>".into();
    }
    page(
        "Cases and cells",
        Some(session),
        &format!(
            "<table><tr><th>Record</th><th>Time</th><th>What</th><th>Karyotype</th><th>Verdict</th><th>Reasons</th>\
             <th>Sign-off</th></tr>{rows}</table>"
        ),
    )
}

/// A cell or case page; `pictures`: the cell's frame can be drawn; `objects`: a cell's objects
/// as they stand.
pub fn entry(
    entries: &[Entry],
    e: &Entry,
    pictures: bool,
    objects: Option<Result<Vec<ReviewedObject>>>,
    session: &Session,
) -> String {
    let title = format!("{} {}", if e.kind == "cell" { "Cell" } else { "Case" }, e.seq);
    page(&title, Some(session), &entry_body(entries, e, pictures, objects, session, true))
}

/// What a cell or case page shows; with `forms`, a reviewer's correction and sign-off forms.
fn entry_body(
    entries: &[Entry],
    e: &Entry,
    pictures: bool,
    objects: Option<Result<Vec<ReviewedObject>>>,
    session: &Session,
    forms: bool,
) -> String {
    let l = &e.line;
    let mut body = format!(
        "<p>Recorded {} by model {} (sha256 {}).</p><p>Karyotype <b>{}</b>, verdict <b class=\"{}\">{}</b>.</p><ul>",
        time(&l["time_unix_ms"]),
        text(&l["model"]),
        text(&l["model_sha256"]),
        text(&l["karyotype"]),
        text(&l["verdict"]),
        text(&l["verdict"])
    );
    for reason in l["reasons"].as_array().into_iter().flatten() {
        body += &format!("<li>{}</li>", text(reason));
    }
    body += "</ul>";
    let review = latest_review(entries, &e.kind, e.seq);
    if let Some(r) = review {
        let r = &r.line;
        body += &format!(
            "<p>Corrected by {} ({}): karyotype <b>{}</b>, verdict <b class=\"{}\">{}</b>.</p><ul>",
            text(&r["reviewer"]),
            time(&r["time_unix_ms"]),
            text(&r["karyotype"]),
            text(&r["verdict"]),
            text(&r["verdict"])
        );
        if let Some(edit) = r["edit"].as_str() {
            body += &format!("<li>{}</li>", escape(edit));
        }
        for c in r["changes"].as_array().into_iter().flatten() {
            body += &format!("<li>object {}: {} &rarr; {}</li>", c["object"], text(&c["from"]), text(&c["to"]));
        }
        for reason in r["reasons"].as_array().into_iter().flatten() {
            body += &format!("<li>{}</li>", text(reason));
        }
        body += "</ul>";
    }
    let reviewer = forms && session.role == Role::Reviewer;
    if e.kind == "cell" {
        body += &format!("<p>Frame {} (sha256 {}).</p>", text(&l["origin"]), text(&l["frame_sha256"]));
        body += &if pictures {
            format!(
                "<figure><img src=\"/cell/{seq}/annotated.png\" alt=\"the frame with every object boxed and labelled\">\
                 <figcaption>The frame, every object labelled with its class now.</figcaption></figure>\
                 <figure><img src=\"/cell/{seq}/karyogram.png\" alt=\"the karyogram\">\
                 <figcaption>The karyogram with the classes as they stand now.</figcaption></figure>",
                seq = e.seq
            )
        } else {
            "<p>The frame was not kept (run with <code>--record-frames DIR</code> and serve with <code>--frames DIR</code>), \
             so there is no picture.</p>"
                .to_string()
        };
        match objects.unwrap_or_else(|| Err(anyhow::anyhow!("not given"))) {
            Ok(objects) => body += &cell_objects(l, &objects, e.seq, reviewer.then_some(session)),
            Err(e) => {
                body +=
                    &format!("<p class=\"abnormal\">The cell's objects cannot be read: {}</p>", escape(&e.to_string()))
            }
        }
    } else {
        body += &format!("<p class=\"screen\"><a href=\"/case/{}/report\">Printable case report</a></p>", e.seq);
        body += "<table><tr><th>Frame</th><th>sha256</th><th>Cell</th></tr>";
        for f in l["frames"].as_array().into_iter().flatten() {
            let cell = cell_of_frame(entries, e.seq, &f["frame_sha256"])
                .map_or("not in the record".to_string(), |c| format!("<a href=\"/cell/{0}\">cell {0}</a>", c.seq));
            body += &format!(
                "<tr><td>{}</td><td>{}</td><td>{cell}</td></tr>",
                text(&f["origin"]),
                text(&f["frame_sha256"])
            );
        }
        body += "</table>";
    }
    body += "<h2>Sign-off</h2><ul>";
    for s in signoffs_of(entries, &e.kind, e.seq) {
        body += &format!(
            "<li>{} by {} ({}): {} &mdash; {}</li>",
            text(&s.line["decision"]),
            text(&s.line["reviewer"]),
            time(&s.line["time_unix_ms"]),
            text(&s.line["iscn"]),
            text(&s.line["comment"])
        );
    }
    body += "</ul>";
    if reviewer {
        body += &format!(
            "<form class=\"signoff\" method=\"post\" action=\"/{kind}/{seq}/signoff\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <p><label>Karyotype as signed <input name=\"iscn\" value=\"{iscn}\" required></label></p>\
             <p><label><input type=\"radio\" name=\"decision\" value=\"confirmed\" required> Confirmed</label> \
             <label><input type=\"radio\" name=\"decision\" value=\"rejected\"> Rejected</label></p>\
             <p><label>Comment <textarea name=\"comment\" rows=\"3\" cols=\"60\"></textarea></label></p>\
             <p><button>Sign as {user}</button></p></form>",
            kind = e.kind,
            seq = e.seq,
            csrf = session.csrf,
            iscn = text(review.map_or(&l["karyotype"], |r| &r.line["karyotype"])),
            user = escape(&session.user)
        );
    }
    body
}

fn class_options(selected: &str, with_not_a_chromosome: bool) -> String {
    let extra: &[&str] = if with_not_a_chromosome { &[NOT_A_CHROMOSOME] } else { &[] };
    CLASS_NAMES
        .iter()
        .chain(extra)
        .map(|c| format!("<option{}>{}</option>", if *c == selected { " selected" } else { "" }, escape(c)))
        .collect()
}

/// A cell's objects as they stand (numbered as the forms number them), with the model's call
/// for each recorded object still whole; for a reviewer (`session`), the class, merge and cut
/// forms.
fn cell_objects(cell: &Value, objects: &[ReviewedObject], seq: u64, session: Option<&Session>) -> String {
    let form = |action: &str, s: &Session| {
        format!(
            "<form method=\"post\" action=\"/cell/{seq}/{action}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            s.csrf
        )
    };
    let mut body = session.map(|s| form("review", s)).unwrap_or_default();
    body += "<table><tr><th>#</th><th>Recorded object</th><th>Model's call</th><th>Confidence</th><th>Structure</th>\
             <th>Box (x, y, w, h)</th><th>Class now</th></tr>";
    for (i, o) in objects.iter().enumerate() {
        let from: Vec<String> = o.from.iter().map(usize::to_string).collect();
        let made_of = match (&o.cut, from.len()) {
            (Some([x1, y1, x2, y2]), _) => format!("part of {} cut ({x1}, {y1})-({x2}, {y2})", from.join(" + ")),
            (None, 1) => from[0].clone(),
            (None, _) => format!("{} merged", from.join(" + ")),
        };
        let model = &cell["objects"][o.from[0].saturating_sub(1)];
        let call = if o.from.len() == 1 && o.cut.is_none() {
            format!(
                "<td>{}</td><td>{:.2}</td><td>{} ({:.2})</td>",
                text(&model["label"]),
                model["confidence"].as_f64().unwrap_or(f64::NAN),
                text(&model["structure"]),
                model["structure_confidence"].as_f64().unwrap_or(f64::NAN)
            )
        } else {
            "<td colspan=\"3\">a reviewer's object</td>".to_string()
        };
        let class_now = match session {
            Some(_) => format!("<select name=\"class_{}\">{}</select>", i + 1, class_options(&o.label, true)),
            None => escape(&o.label),
        };
        let b = o.bbox;
        body += &format!(
            "<tr><td>{}</td><td>{made_of}</td>{call}<td>{}, {}, {}, {}</td><td>{class_now}</td></tr>",
            i + 1,
            b.x,
            b.y,
            b.width,
            b.height
        );
    }
    body += "</table>";
    if let Some(s) = session {
        let number = |name: &str| format!("<input name=\"{name}\" type=\"number\" min=\"0\" required size=\"5\">");
        body += &format!(
            "<p><button>Record corrections and recompute</button></p></form>\
             {merge}<p>Merge object {a} with object {b} as <select name=\"label\">{classes}</select> \
             <button>Merge and recompute</button></p></form>\
             {cut}<p>Cut object {object} in two along the line from ({x1}, {y1}) to ({x2}, {y2}) \
             (frame pixels, as the boxes) <button>Cut and recompute</button></p></form>",
            merge = form("merge", s),
            a = number("a"),
            b = number("b"),
            classes = class_options("1", false),
            cut = form("cut", s),
            object = number("object"),
            x1 = number("x1"),
            y1 = number("y1"),
            x2 = number("x2"),
            y2 = number("y2"),
        );
    }
    body
}

/// The printable case report: the sign-off (or that there is none), the device's reading with
/// its model, and every cell of the case with its reading as reviewed and its karyogram.
/// `pictures` says whether a cell's frame can be drawn.
pub fn case_report(entries: &[Entry], case: &Entry, pictures: impl Fn(&Value) -> bool, session: &Session) -> String {
    let l = &case.line;
    let mut body = String::new();
    let signoffs: Vec<&Entry> = signoffs_of(entries, "case", case.seq).collect();
    if signoffs.is_empty() {
        body += "<p class=\"abnormal\"><b>Not signed.</b> This is not a result until a reviewer signs the case.</p>";
    }
    for s in signoffs {
        let s = &s.line;
        body += &format!(
            "<p>Signed <b>{}</b> by <b>{}</b> on {}: karyotype <b>{}</b>. {}</p>",
            text(&s["decision"]),
            text(&s["reviewer"]),
            time(&s["time_unix_ms"]),
            text(&s["iscn"]),
            text(&s["comment"])
        );
    }
    body += &format!(
        "<table><tr><th>Case</th><td>record line {}, {}</td></tr>\
         <tr><th>Device's reading</th><td>karyotype {}, verdict <span class=\"{}\">{}</span></td></tr>\
         <tr><th>Reasons</th><td>{}</td></tr><tr><th>Model</th><td>{}, sha256 {}</td></tr></table>",
        case.seq,
        time(&l["time_unix_ms"]),
        text(&l["karyotype"]),
        text(&l["verdict"]),
        text(&l["verdict"]),
        l["reasons"].as_array().map(|r| r.iter().map(text).collect::<Vec<_>>().join("<br>")).unwrap_or_default(),
        text(&l["model"]),
        text(&l["model_sha256"])
    );
    for (i, frame) in l["frames"].as_array().into_iter().flatten().enumerate() {
        body += &format!("<section class=\"cell\"><h2>Cell {}: {}</h2>", i + 1, text(&frame["origin"]));
        let Some(cell) = cell_of_frame(entries, case.seq, &frame["frame_sha256"]) else {
            body += "<p>This frame's cell is no longer in the record (rotated away).</p></section>";
            continue;
        };
        let reading = latest_review(entries, "cell", cell.seq).map_or(&cell.line, |r| &r.line);
        let reviewed = if reading.get("reviewer").is_some() {
            format!(" (corrected by {})", text(&reading["reviewer"]))
        } else {
            String::new()
        };
        let signed: Vec<String> = signoffs_of(entries, "cell", cell.seq)
            .map(|s| format!("{} by {}", text(&s.line["decision"]), text(&s.line["reviewer"])))
            .collect();
        body += &format!(
            "<p>Record line {}: karyotype <b>{}</b>, verdict <span class=\"{}\">{}</span>{reviewed}; {}.</p>",
            cell.seq,
            text(&reading["karyotype"]),
            text(&reading["verdict"]),
            text(&reading["verdict"]),
            if signed.is_empty() { "cell not signed".to_string() } else { signed.join(", ") }
        );
        body += &if pictures(&cell.line) {
            format!("<img src=\"/cell/{}/karyogram.png\" alt=\"karyogram of cell {}\">", cell.seq, i + 1)
        } else {
            "<p>No karyogram: the frame was not kept.</p>".to_string()
        };
        body += "</section>";
    }
    page(&format!("Case report, case {}", case.seq), Some(session), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_recorded_text_is_escaped_and_times_read_as_dates() {
        assert_eq!(escape("<script>\"x\"&'y'"), "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;");
        assert_eq!(time(&Value::from(0u64)), "1970-01-01 00:00 UTC");
        assert_eq!(time(&Value::from(1_796_382_812_306u64)), "2026-12-04 11:13 UTC");
    }
}
