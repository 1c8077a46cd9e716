//! `GET /metrics`: the server's totals and gauges in the Prometheus text format 0.0.4,
//! written by hand (a dozen families do not need a crate).
//!
//! ```text
//! # HELP bitsmock_requests_total Requests by packet type and what was sent.
//! # TYPE bitsmock_requests_total counter
//! bitsmock_requests_total{packet="Fragment",sent="200"} 12
//! ```
//!
//! Totals come from [`Tally`], which is derived from the kept events, so metrics and the
//! journal agree; a `POST /reset` starts them from zero again (Prometheus reads that as a
//! counter reset).

use crate::journal::Tally;
use crate::server::Gauges;
use std::fmt::Write;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole exposition.
pub fn render(tally: &Tally, gauges: &Gauges) -> String {
    let mut out = Exposition::default();
    out.family(
        "bitsmock_requests_total",
        "counter",
        "Requests by packet type (or method) and what was sent (a status, closed, reset, hung, broken).",
    );
    for (packet, by_sent) in &tally.requests {
        for (sent, n) in by_sent {
            out.sample(
                "bitsmock_requests_total",
                &[("packet", packet), ("sent", sent)],
                *n,
            );
        }
    }
    out.family(
        "bitsmock_faults_fired_total",
        "counter",
        "Times each current rule fired, by rule id and name.",
    );
    for rule in &gauges.rules {
        out.sample(
            "bitsmock_faults_fired_total",
            &[("rule", &rule.id.to_string()), ("name", &rule.name)],
            rule.fired,
        );
    }
    out.single(
        "bitsmock_bytes_received_total",
        "counter",
        "Request body bytes read from sockets.",
        tally.bytes_received,
    );
    out.single(
        "bitsmock_bytes_stored_total",
        "counter",
        "Body bytes written to session files.",
        tally.bytes_stored,
    );
    out.single(
        "bitsmock_sessions_live",
        "gauge",
        "Upload sessions open now.",
        gauges.live_sessions as u64,
    );
    out.single(
        "bitsmock_sessions_created_total",
        "counter",
        "Upload sessions created.",
        tally.sessions_created,
    );
    out.family(
        "bitsmock_sessions_gone_total",
        "counter",
        "Sessions that ended without a committed file, by why.",
    );
    for (why, n) in &tally.gone {
        out.sample("bitsmock_sessions_gone_total", &[("why", why)], *n);
    }
    out.single(
        "bitsmock_uploads_committed_total",
        "counter",
        "Files committed by Close-Session.",
        tally.committed,
    );
    out.single(
        "bitsmock_bytes_committed_total",
        "counter",
        "Bytes of the committed files.",
        tally.bytes_committed,
    );
    out.single(
        "bitsmock_connections_refused_total",
        "counter",
        "Connections a fault refused at accept.",
        tally.refused,
    );
    out.single(
        "bitsmock_connections_open",
        "gauge",
        "Upload connections open now.",
        gauges.open_connections,
    );
    out.single(
        "bitsmock_connections_total",
        "counter",
        "Upload connections accepted.",
        gauges.connections,
    );
    out.0
}

#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "# HELP {name} {}", escape(help, false));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let shown: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v, true)))
                .collect();
            let _ = write!(self.0, "{{{}}}", shown.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// The format's escapes: backslash and newline everywhere, and the double quote in label
/// values. Rule names and unparsed packet types come from users and clients, so they may
/// hold any of them.
fn escape(text: &str, label: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if label => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::RuleState;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape("a\\b\"c\nd", true), "a\\\\b\\\"c\\nd");
        assert_eq!(escape("say \"hi\"\n", false), "say \"hi\"\\n");
    }

    #[test]
    fn every_family_has_help_and_type_and_samples_carry_their_labels() {
        let mut tally = Tally::default();
        tally
            .requests
            .entry("Fragment".into())
            .or_default()
            .insert("200".into(), 3);
        tally.bytes_received = 10;
        tally.gone.insert("cancelled".into(), 1);
        let gauges = Gauges {
            live_sessions: 2,
            open_connections: 1,
            connections: 4,
            rules: vec![RuleState {
                id: 7,
                name: "quote \" and \\ and\nnewline".into(),
                origin: "admin".into(),
                fault: "delay".into(),
                line: "fault=delay delay=1ms".into(),
                fired: 5,
            }],
        };
        let text = render(&tally, &gauges);
        assert!(text.contains("bitsmock_requests_total{packet=\"Fragment\",sent=\"200\"} 3\n"));
        assert!(text.contains(
            "bitsmock_faults_fired_total{rule=\"7\",name=\"quote \\\" and \\\\ and\\nnewline\"} 5\n"
        ));
        assert!(text.contains("bitsmock_bytes_received_total 10\n"));
        assert!(text.contains("bitsmock_sessions_live 2\n"));
        assert!(text.contains("bitsmock_connections_total 4\n"));
        assert!(text.contains("bitsmock_sessions_gone_total{why=\"cancelled\"} 1\n"));
        let mut typed = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(text.contains(&format!("# HELP {name} ")), "{name}");
                typed += 1;
            } else if !line.starts_with('#') {
                assert!(line.starts_with("bitsmock_"), "{line}");
                assert!(
                    line.rsplit(' ').next().unwrap().parse::<u64>().is_ok(),
                    "{line}"
                );
            }
        }
        assert_eq!(typed, 12);
    }
}
