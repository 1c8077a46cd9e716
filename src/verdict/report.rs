//! Verdicts for people and for CI: text, JSON, JUnit XML and one self-contained HTML page.
//!
//! A report covers one or more *runs* (one journal each: `bitsmock verdict` judges one,
//! `bitsmock exercise` one per profile × seed). Pure: strings in, strings out.

use super::input::{Req, Seen, Sent};
use super::{Outcome, Verdict};
use crate::proto::PacketType;
use std::fmt::Write as _;

/// One judged run.
#[derive(Debug, Clone)]
pub struct Run {
    /// `flaky-wifi seed 2`, or the journal's file name.
    pub name: String,
    pub verdict: Verdict,
    /// What else decided the run's cell (the client's exit, a stored file that differs…);
    /// each is a failure of the run beside the checks.
    pub problems: Vec<String>,
    /// The events, for the HTML timeline.
    pub events: Vec<Seen>,
}

impl Run {
    pub fn passed(&self) -> bool {
        self.verdict.passed() && self.problems.is_empty()
    }

    /// One cell of a matrix: `pass`, or what failed.
    pub fn cell(&self) -> String {
        let mut failed: Vec<String> = self
            .verdict
            .failed(super::Severity::Error)
            .map(|o| o.check.to_owned())
            .collect();
        failed.extend(self.problems.iter().cloned());
        if failed.is_empty() {
            "pass".into()
        } else {
            format!("FAIL {}", failed.join(", "))
        }
    }
}

fn mark(o: &Outcome) -> &'static str {
    match o.status() {
        "fail" => "FAIL",
        "warn" => "warn",
        "pass" => "pass",
        _ => " n/a",
    }
}

/// The verdict as text: a headline, then one line per check, findings under failed ones.
pub fn text(v: &Verdict) -> String {
    let mut out = String::new();
    let head = if v.passed() { "PASS" } else { "FAIL" };
    let _ = writeln!(
        out,
        "verdict: {head}: {} error(s), {} warning(s) over {} request(s) and {} session(s){}",
        v.errors(),
        v.warnings(),
        v.requests,
        v.sessions,
        if v.complete {
            ""
        } else {
            " (the journal ends before the server stopped)"
        }
    );
    for o in &v.outcomes {
        let extra = if o.judged == 0 {
            "  (not exercised)".to_owned()
        } else {
            format!("  ({} judged)", o.judged)
        };
        let _ = writeln!(out, "  {}  {}{extra}", mark(o), o.check);
        if o.passed() {
            continue;
        }
        let _ = writeln!(out, "        rule ({}): {}", o.section, o.rule);
        for f in o.findings.iter().take(10) {
            let who = f
                .session
                .as_deref()
                .map(|s| format!("{s}: "))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "        - {who}{} [events {}]",
                f.message,
                seqs(&f.evidence)
            );
        }
        if o.findings.len() > 10 {
            let _ = writeln!(out, "        … and {} more", o.findings.len() - 10);
        }
    }
    out
}

fn seqs(evidence: &[u64]) -> String {
    evidence
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The verdict as JSON (docs/verdicts.md).
pub fn json(v: &Verdict) -> serde_json::Value {
    serde_json::json!({
        "passed": v.passed(),
        "errors": v.errors(),
        "warnings": v.warnings(),
        "requests": v.requests,
        "sessions": v.sessions,
        "complete": v.complete,
        "checks": v.outcomes.iter().map(|o| serde_json::json!({
            "check": o.check,
            "severity": o.severity,
            "status": o.status(),
            "rule": o.rule,
            "section": o.section,
            "judged": o.judged,
            "findings": o.findings,
        })).collect::<Vec<_>>(),
    })
}

/// Runs as JSON: one object per run with its verdict and problems.
pub fn runs_json(runs: &[Run]) -> serde_json::Value {
    serde_json::json!({
        "passed": runs.iter().all(Run::passed),
        "runs": runs.iter().map(|r| serde_json::json!({
            "name": r.name,
            "passed": r.passed(),
            "problems": r.problems,
            "verdict": json(&r.verdict),
        })).collect::<Vec<_>>(),
    })
}

/// JUnit XML: one test suite per run, one test case per check (skipped when not
/// exercised), plus a `run` case carrying the run's own problems.
pub fn junit(runs: &[Run]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let tests: usize = runs.iter().map(|r| r.verdict.outcomes.len() + 1).sum();
    let failures: usize = runs
        .iter()
        .map(|r| r.verdict.errors() + usize::from(!r.problems.is_empty()))
        .sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"bitsmock\" tests=\"{tests}\" failures=\"{failures}\">"
    );
    for run in runs {
        let suite = xml(&run.name);
        let fails = run.verdict.errors() + usize::from(!run.problems.is_empty());
        let skipped = run
            .verdict
            .outcomes
            .iter()
            .filter(|o| o.judged == 0)
            .count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{fails}\" skipped=\"{skipped}\">",
            run.verdict.outcomes.len() + 1
        );
        let _ = write!(out, "    <testcase classname=\"{suite}\" name=\"run\"");
        if run.problems.is_empty() {
            out.push_str("/>\n");
        } else {
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{}\"/>\n    </testcase>",
                xml(&run.problems.join("; "))
            );
        }
        for o in &run.verdict.outcomes {
            let _ = write!(
                out,
                "    <testcase classname=\"{suite}\" name=\"{}\"",
                o.check
            );
            match o.status() {
                "pass" => out.push_str("/>\n"),
                "not exercised" => {
                    out.push_str(">\n      <skipped message=\"not exercised\"/>\n    </testcase>\n")
                }
                status => {
                    // A warning is reported, but does not fail the build.
                    let (tag, close) = if status == "fail" {
                        ("failure", "failure")
                    } else {
                        ("system-out", "system-out")
                    };
                    let body: String = o
                        .findings
                        .iter()
                        .map(|f| {
                            format!(
                                "{}{} [events {}]\n",
                                f.session
                                    .as_deref()
                                    .map(|s| format!("{s}: "))
                                    .unwrap_or_default(),
                                f.message,
                                seqs(&f.evidence)
                            )
                        })
                        .collect();
                    let first = o.findings.first().map_or("", |f| f.message.as_str());
                    if tag == "failure" {
                        let _ = writeln!(
                            out,
                            ">\n      <failure message=\"{}\" type=\"{}\">{}\n{}</failure>\n    </testcase>",
                            xml(first),
                            o.check,
                            xml(o.rule),
                            xml(&body)
                        );
                    } else {
                        let _ = writeln!(
                            out,
                            ">\n      <{tag}>warning: {}</{close}>\n    </testcase>",
                            xml(&body)
                        );
                    }
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Escapes text for XML and HTML (attributes and content).
pub fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // XML 1.0 cannot carry most control characters at all.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The matrix as text: one row per run name's first word (the profile), one column per seed.
pub fn matrix(rows: &[(String, Vec<(String, String)>)]) -> String {
    let width = rows.iter().map(|(p, _)| p.len()).max().unwrap_or(7).max(7);
    let mut out = String::new();
    for (profile, cells) in rows {
        let _ = write!(out, "{profile:<width$}");
        for (seed, cell) in cells {
            let _ = write!(out, "  seed {seed}: {cell:<6}");
        }
        out.push('\n');
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table.matrix{border-collapse:collapse;margin-bottom:1.5em}
.matrix td,.matrix th{border:1px solid #bbb;padding:4px 8px;text-align:left}
.pass{background:#dff5df}.fail{background:#f8d7d7}
section.run{border-top:2px solid #888;margin-top:2em}
.finding{color:#900}.rule{color:#555;font-style:italic}
svg{background:#fafafa;border:1px solid #ccc}
svg text{font:11px monospace}
.hl{stroke:#d00;stroke-width:3}
.legend span{display:inline-block;margin-right:1em}
.sw{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}";

/// One self-contained page (no scripts, no fonts, no links out): the matrix, then per run
/// its checks and a timeline with one lane per session.
pub fn html(title: &str, runs: &[Run]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        xml(title),
        xml(title)
    );
    let passed = runs.iter().filter(|r| r.passed()).count();
    let _ = writeln!(
        out,
        "<p id=\"summary\">{passed} of {} run(s) passed.</p>",
        runs.len()
    );
    out.push_str("<table class=\"matrix\"><tr><th>run</th><th>result</th></tr>\n");
    for (n, run) in runs.iter().enumerate() {
        let class = if run.passed() { "pass" } else { "fail" };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td><a href=\"#run{n}\">{}</a></td><td>{}</td></tr>",
            xml(&run.name),
            xml(&run.cell())
        );
    }
    out.push_str("</table>\n");
    for (n, run) in runs.iter().enumerate() {
        run_section(&mut out, n, run);
    }
    out.push_str("</body></html>\n");
    out
}

fn run_section(out: &mut String, n: usize, run: &Run) {
    let class = if run.passed() { "pass" } else { "fail" };
    let _ = writeln!(
        out,
        "<section class=\"run\" id=\"run{n}\"><h2 class=\"{class}\">{}: {}</h2>",
        xml(&run.name),
        xml(&run.cell())
    );
    for p in &run.problems {
        let _ = writeln!(out, "<p class=\"finding\">{}</p>", xml(p));
    }
    out.push_str("<ul>\n");
    let mut highlighted = Vec::new();
    for o in &run.verdict.outcomes {
        let _ = write!(
            out,
            "<li class=\"check-{}\"><b>{}</b> {}",
            o.status().replace(' ', "-"),
            o.check,
            o.status()
        );
        if !o.passed() {
            let _ = write!(
                out,
                " <span class=\"rule\">({}: {})</span><ul>",
                o.section,
                xml(o.rule)
            );
            for f in &o.findings {
                highlighted.extend(f.evidence.iter().copied());
                let who = f
                    .session
                    .as_deref()
                    .map(|s| format!("{s}: "))
                    .unwrap_or_default();
                let _ = write!(
                    out,
                    "<li class=\"finding\">{}{} <small>[events {}]</small></li>",
                    xml(&who),
                    xml(&f.message),
                    seqs(&f.evidence)
                );
            }
            out.push_str("</ul>");
        }
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n");
    timeline(out, &run.events, &highlighted);
    out.push_str("</section>\n");
}

/// The timeline: time across, one lane per session (and one for packets without one);
/// each fragment a bar whose height shows its byte range within the file, coloured by what
/// the client got back; faults ringed; the evidence of failed checks outlined in red.
fn timeline(out: &mut String, events: &[Seen], highlighted: &[u64]) {
    let requests: Vec<&Req> = events
        .iter()
        .filter_map(|e| match e {
            Seen::Request(r) => Some(&**r),
            _ => None,
        })
        .collect();
    if requests.is_empty() {
        out.push_str("<p>No requests.</p>\n");
        return;
    }
    let mut lanes: Vec<String> = vec!["(no session)".into()];
    let mut labels: Vec<String> = vec!["no session".into()];
    for r in &requests {
        if let Some(s) = &r.session
            && !lanes.iter().any(|l| l.eq_ignore_ascii_case(&s.id))
        {
            lanes.push(s.id.clone());
            labels.push(s.label());
        }
    }
    let t0 = requests.iter().map(|r| r.start_ms).fold(f64::MAX, f64::min);
    let t1 = requests.iter().map(|r| r.end_ms).fold(f64::MIN, f64::max);
    let span = (t1 - t0).max(1.0);
    let (left, width, lane_h) = (130.0, 900.0, 60.0);
    let height = lane_h * lanes.len() as f64 + 30.0;
    let _ = writeln!(
        out,
        "<p class=\"legend\"><span><i class=\"sw\" style=\"background:#4a4\"></i>2xx</span><span><i class=\"sw\" style=\"background:#e90\"></i>416/413/4xx</span><span><i class=\"sw\" style=\"background:#c33\"></i>5xx</span><span><i class=\"sw\" style=\"background:#777\"></i>no answer (closed, reset, hung, broken)</span><span>dashed: a fault fired; red outline: evidence of a failed check; diamond: the session was committed (blue) or ended otherwise (red)</span></p>"
    );
    let _ = writeln!(
        out,
        "<svg class=\"timeline\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\" role=\"img\">",
        left + width + 20.0,
        left + width + 20.0
    );
    for (n, label) in labels.iter().enumerate() {
        let y = lane_h * n as f64 + 15.0;
        let _ = writeln!(
            out,
            "<text x=\"4\" y=\"{:.1}\">{}</text><line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
            y + lane_h / 2.0,
            xml(label),
            y + lane_h,
            left + width,
            y + lane_h
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{left}\" y=\"{:.1}\">0 ms</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0} ms</text>",
        height - 4.0,
        left + width,
        height - 4.0,
        span
    );
    for r in &requests {
        let lane = r
            .session
            .as_ref()
            .and_then(|s| lanes.iter().position(|l| l.eq_ignore_ascii_case(&s.id)))
            .unwrap_or(0);
        let top = lane_h * lane as f64 + 15.0;
        let x = left + (r.start_ms - t0) / span * width;
        let w = ((r.end_ms - r.start_ms) / span * width).max(2.0);
        let (y, h) = match r.range {
            Some(g) if g.total > 0 => {
                let y = top + g.first as f64 / g.total as f64 * (lane_h - 6.0);
                let h = (g.len() as f64 / g.total as f64 * (lane_h - 6.0)).max(2.0);
                (y, h)
            }
            _ => (top + lane_h / 2.0 - 4.0, 8.0),
        };
        let colour = match r.sent {
            Sent::Status(s) if s < 300 => "#4a4",
            Sent::Status(s) if s < 500 => "#e90",
            Sent::Status(_) => "#c33",
            _ => "#777",
        };
        let shape = if r.is(PacketType::Fragment) { 0.0 } else { 4.0 };
        let class = if highlighted.contains(&r.seq) {
            " class=\"hl\" stroke=\"#d00\""
        } else if !r.faults.is_empty() {
            " stroke=\"#000\" stroke-dasharray=\"2,1\""
        } else {
            ""
        };
        let faults: Vec<&str> = r.faults.iter().map(|f| f.kind.as_str()).collect();
        let told = r
            .ack
            .as_ref()
            .and_then(|a| a.received.as_deref())
            .map(|v| format!(", told {v}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<rect data-seq=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"{shape}\" fill=\"{colour}\"{class}><title>#{} {} → {}{told}{}</title></rect>",
            r.seq,
            r.seq,
            xml(&r.describe()),
            r.sent,
            if faults.is_empty() {
                String::new()
            } else {
                format!(" (fault: {})", xml(&faults.join(", ")))
            }
        );
    }
    // Server-side ends of sessions: a diamond where each session was committed or lost.
    for e in events {
        let (at, session, what, colour) = match e {
            Seen::Committed { at_ms, session, .. } => {
                (*at_ms, session, "committed".to_owned(), "#06c")
            }
            Seen::Gone {
                at_ms,
                session,
                why,
                ..
            } => (*at_ms, session, why.clone(), "#c33"),
            _ => continue,
        };
        let Some(lane) = lanes
            .iter()
            .position(|l| l.eq_ignore_ascii_case(&session.id))
        else {
            continue;
        };
        let x = left + (at - t0).clamp(0.0, span) / span * width;
        let y = lane_h * lane as f64 + 15.0 + lane_h / 2.0;
        let _ = writeln!(
            out,
            "<path class=\"end\" d=\"M{x:.1} {:.1} l5 5 l-5 5 l-5 -5 z\" fill=\"{colour}\"><title>{}: {}</title></path>",
            y - 5.0,
            xml(&session.label()),
            xml(&what)
        );
    }
    out.push_str("</svg>\n");
}
