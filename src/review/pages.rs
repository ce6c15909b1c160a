//! The station's HTML: server-rendered pages with no script and no external asset, one inline
//! stylesheet (print included).

use serde_json::Value;

use super::accounts::{Role, Session};
use super::correct::NOT_A_CHROMOSOME;
use super::server::current_classes;
use super::{latest_review, Entry};
use crate::tools::karyogram::CLASS_NAMES;

const STYLE: &str = "body{font:15px/1.4 sans-serif;margin:1.5em;max-width:70em}table{border-collapse:collapse}\
td,th{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}\
.abnormal{color:#a00}.indeterminate{color:#a60}.normal{color:#060}header{display:flex;gap:1em;align-items:center}\
header form{margin-left:auto}img{max-width:100%;height:auto}@media print{header form,form.signoff{display:none}body{margin:0}}";

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
    let header = match session {
        Some(s) => format!(
            "<header><a href=\"/\">karyoscreen review</a><span>{} ({})</span>\
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
         <body>{header}<h1>{}</h1>{body}<p><small>A screening aid: every call needs a person's sign-off.</small></p></body></html>",
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

/// A cell or case page; `pictures`: the cell's frame can be drawn.
pub fn entry(entries: &[Entry], e: &Entry, pictures: bool, session: &Session) -> String {
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
        for c in r["changes"].as_array().into_iter().flatten() {
            body += &format!("<li>object {}: {} &rarr; {}</li>", c["object"], text(&c["from"]), text(&c["to"]));
        }
        for reason in r["reasons"].as_array().into_iter().flatten() {
            body += &format!("<li>{}</li>", text(reason));
        }
        body += "</ul>";
    }
    let reviewer = session.role == Role::Reviewer;
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
        let current = current_classes(l, review.map(|r| &r.line)).unwrap_or_default();
        if reviewer {
            body += &format!(
                "<form method=\"post\" action=\"/cell/{}/review\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
                e.seq, session.csrf
            );
        }
        body += "<table><tr><th>#</th><th>Model's call</th><th>Confidence</th><th>Structure</th><th>Box (x, y, w, h)</th><th>Class now</th></tr>";
        for (i, o) in l["objects"].as_array().into_iter().flatten().enumerate() {
            let b = &o["bbox"];
            let now = current.get(i).cloned().unwrap_or_default();
            let class_now = if reviewer {
                let options: String = CLASS_NAMES
                    .iter()
                    .copied()
                    .chain([NOT_A_CHROMOSOME])
                    .map(|c| format!("<option{}>{}</option>", if c == now { " selected" } else { "" }, escape(c)))
                    .collect();
                format!("<select name=\"class_{}\">{options}</select>", i + 1)
            } else {
                escape(&now)
            };
            body += &format!(
                "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{} ({:.2})</td><td>{}, {}, {}, {}</td><td>{class_now}</td></tr>",
                i + 1,
                text(&o["label"]),
                o["confidence"].as_f64().unwrap_or(f64::NAN),
                text(&o["structure"]),
                o["structure_confidence"].as_f64().unwrap_or(f64::NAN),
                b["x"],
                b["y"],
                b["width"],
                b["height"]
            );
        }
        body += "</table>";
        if reviewer {
            body += "<p><button>Record corrections and recompute</button></p></form>";
        }
    } else {
        body += "<table><tr><th>Frame</th><th>sha256</th></tr>";
        for f in l["frames"].as_array().into_iter().flatten() {
            body += &format!("<tr><td>{}</td><td>{}</td></tr>", text(&f["origin"]), text(&f["frame_sha256"]));
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
    page(&format!("{} {}", if e.kind == "cell" { "Cell" } else { "Case" }, e.seq), Some(session), &body)
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
