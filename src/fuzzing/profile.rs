//! Target `profile`: profile text → [`profile::parse`].
//!
//! The input is the file's text (bytes that are not UTF-8 are replaced, as the CLI's
//! `read_to_string` would refuse them before parsing).
//!
//! Properties: no panic; an error names the origin and a line from 1 to the text's line
//! count (+1, for "unexpected end of file"), and its message is not empty; an accepted
//! profile's rules point at lines inside the text, its probabilities are within 0–1, and a
//! fault plan built from it can be asked about a request without panicking.

use crate::fault::profile;
use crate::fault::{ConnAuth, Facts, Faults};
use crate::proto::{ContentRange, ErrorHeader, PacketType};
use std::time::Duration;

const ORIGIN: &str = "fuzz.toml";

/// The `profile` target.
pub fn check(data: &[u8]) {
    check_text(&String::from_utf8_lossy(data));
}

/// Every property of [`profile::parse`] for one text.
pub fn check_text(text: &str) {
    let last_line = text.matches('\n').count() + 1;
    match profile::parse(text, ORIGIN) {
        Err(e) => {
            assert_eq!(e.origin, ORIGIN, "{e}");
            assert!(
                (1..=last_line).contains(&e.line),
                "error line {} outside 1..={last_line}: {e}",
                e.line
            );
            assert!(!e.message.trim().is_empty(), "an error without a message");
            assert!(e.to_string().starts_with(&format!("{ORIGIN}:{}: ", e.line)));
        }
        Ok(p) => {
            assert!(!p.name.trim().is_empty(), "a profile without a name");
            for rule in &p.rules {
                let line = rule
                    .origin
                    .strip_prefix(&format!("{ORIGIN}:"))
                    .and_then(|l| l.parse::<usize>().ok())
                    .unwrap_or_else(|| panic!("rule origin {:?} names no line", rule.origin));
                assert!((1..=last_line).contains(&line), "rule at line {line}");
                assert!(
                    rule.trigger
                        .probability
                        .is_none_or(|p| (0.0..=1.0).contains(&p)),
                    "{rule:?}"
                );
            }
            let mut faults = Faults::from_profile(&p, p.seed.unwrap_or(0), 1.0, ErrorHeader::Code);
            let mut conn = ConnAuth::default();
            let _ = faults.refuse(1, Duration::from_secs(2));
            for (packet, range) in [
                (PacketType::Ping, None),
                (PacketType::CreateSession, None),
                (PacketType::Fragment, ContentRange::new(0, 9, 20).ok()),
                (PacketType::Fragment, ContentRange::new(10, 19, 20).ok()),
                (PacketType::CloseSession, None),
            ] {
                let facts = Facts {
                    packet,
                    session: 1,
                    range,
                    path: "/drop/a.bin",
                    since_start: Duration::from_secs(2),
                    authorization: None,
                };
                let _ = faults.plan(&facts, &mut conn);
            }
        }
    }
}
