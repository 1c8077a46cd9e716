//! Profile lint: rules that parse but cannot do what their author meant. [`lint`] reads a
//! validated [`Profile`] and returns [`Warning`]s; `bitsmock profile check` prints them after
//! the parser's errors. Pure, like the rest of the fault layer, and true to
//! [`Faults::plan`](super::plan::Faults::plan): a rule is only called dead or shadowed when
//! the decision function can never let it decide anything.
//!
//! ```text
//! profiles/mine.toml:12: warning: `ack lost` can never fire: `probability = 0`
//! profiles/mine.toml:20: warning: `503s` is shadowed by `resets` (line 14): …
//! profiles/mine.toml:27: warning: `outage` refuses every connection forever: …
//! ```

use super::profile::Profile;
use super::rule::{Fault, Position, Rule, Trigger};
use crate::proto::PacketType;
use std::time::Duration;

/// A rule that will not behave as written; `line` is where the rule starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

/// Every warning for the profile's rules, in rule order.
pub fn lint(profile: &Profile) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for (j, rule) in profile.rules.iter().enumerate() {
        let at = |message: String| Warning {
            line: line_of(rule),
            message,
        };
        let dead = never_fires(rule);
        let alive = dead.is_empty();
        warnings.extend(
            dead.into_iter()
                .map(|why| at(format!("`{}` can never fire: {why}", rule.name))),
        );
        if alive && let Some(earlier) = shadowing(&profile.rules[..j], rule) {
            warnings.push(at(format!(
                "`{}` is shadowed by `{}` (line {}), which fires on every request `{}` \
                 matches and decides its fate first: `{}` never fires",
                rule.name,
                earlier.name,
                line_of(earlier),
                rule.name,
                rule.name
            )));
        }
        if alive && refuses_forever(rule) {
            let which = match rule.skip {
                0 => "every connection".to_owned(),
                n => format!("every connection after the first {n}"),
            };
            warnings.push(at(format!(
                "`{}` refuses {which} forever: give it a `from`/`until` window (an outage), \
                 `times` or a `probability`",
                rule.name
            )));
        }
    }
    warnings
}

/// The line in the rule's origin (`FILE:LINE`, `--fault:N`); 1 if it names none.
fn line_of(rule: &Rule) -> usize {
    rule.origin
        .rsplit_once(':')
        .and_then(|(_, line)| line.parse().ok())
        .unwrap_or(1)
}

/// Why the rule can never fire, one reason per way it is dead.
fn never_fires(rule: &Rule) -> Vec<String> {
    let t = &rule.trigger;
    let mut why = Vec::new();
    if t.probability == Some(0.0) {
        why.push("`probability = 0`".to_owned());
    }
    if rule.times == Some(0) {
        why.push("`times = 0`".to_owned());
    }
    if let Some(until) = t.until
        && t.from.unwrap_or(Duration::ZERO) >= until
    {
        why.push("its `from`/`until` window is empty".to_owned());
    }
    if !rule.fault.acts_on_requests() {
        // Refuse, tls and notify rules act on connections or notifications, not packets:
        // the packet checks do not apply.
        return why;
    }
    match t.packets.as_deref() {
        Some([]) => why.push("`packet = []` names no packet type".to_owned()),
        declared => {
            let types = declared.unwrap_or(&PacketType::ALL);
            let reasons: Vec<String> = types.iter().filter_map(|&p| excluded(rule, p)).collect();
            if reasons.len() == types.len() {
                let mut reasons = reasons;
                reasons.dedup();
                why.push(format!(
                    "`packet` allows {} only, and {}",
                    names(types),
                    reasons.join("; ")
                ));
            }
        }
    }
    why
}

/// Why a request of type `p` can never match the rule, if it cannot.
fn excluded(rule: &Rule, p: PacketType) -> Option<String> {
    let t = &rule.trigger;
    if let Some(only) = rule.fault.only_packets()
        && !only.contains(&p)
    {
        return Some(format!(
            "fault `{}` acts on {} only",
            rule.fault.kind(),
            names(only)
        ));
    }
    if let Some(position) = t.position
        && p != PacketType::Fragment
    {
        return Some(format!(
            "`{}` matches fragments only",
            position_key(position)
        ));
    }
    if p == PacketType::Ping && t.session.is_some() {
        return Some("`session` never matches a Ping (a Ping has no session)".to_owned());
    }
    if p == PacketType::Ping && t.nth.is_some() {
        return Some("`nth` never matches a Ping (its index is always 0)".to_owned());
    }
    None
}

/// The packet types the rule can match at all.
fn reachable(rule: &Rule) -> Vec<PacketType> {
    rule.trigger
        .packets
        .as_deref()
        .unwrap_or(&PacketType::ALL)
        .iter()
        .copied()
        .filter(|&p| excluded(rule, p).is_none())
        .collect()
}

/// The first earlier rule that decides the fate of every request `later` matches, so that
/// `later` (a fate rule) never gets to: modifiers combine and are never shadowed.
fn shadowing<'a>(earlier: &'a [Rule], later: &Rule) -> Option<&'a Rule> {
    if later.fault.is_modifier() || !later.fault.acts_on_requests() {
        return None;
    }
    let theirs = reachable(later);
    earlier.iter().find(|rule| {
        always_fires(rule)
            && narrows_no_more(&rule.trigger, &later.trigger)
            && theirs.iter().all(|p| reachable(rule).contains(p))
    })
}

/// A fate rule that fires on every request it matches: no chance, count or limit gates it,
/// and its fault always sets the request's fate (an auth rule lets authenticated requests
/// through; a refuse rule never acts on requests).
fn always_fires(rule: &Rule) -> bool {
    let t = &rule.trigger;
    !rule.fault.is_modifier()
        && rule.fault.acts_on_requests()
        && !matches!(rule.fault, Fault::Auth(_))
        && t.probability.is_none_or(|p| p >= 1.0)
        && t.every.is_none_or(|e| e == 1)
        && rule.times.is_none()
        && rule.skip == 0
}

/// Every request `narrow` matches on session, index, position, path and time, `broad` does.
fn narrows_no_more(broad: &Trigger, narrow: &Trigger) -> bool {
    fn same_or_none<T: PartialEq>(broad: &Option<T>, narrow: &Option<T>) -> bool {
        broad.is_none() || broad == narrow
    }
    same_or_none(&broad.session, &narrow.session)
        && same_or_none(&broad.nth, &narrow.nth)
        && same_or_none(&broad.position, &narrow.position)
        && (broad.path.as_deref().is_none_or(|g| g == "*") || broad.path == narrow.path)
        && broad.from.unwrap_or(Duration::ZERO) <= narrow.from.unwrap_or(Duration::ZERO)
        && match (broad.until, narrow.until) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(b), Some(n)) => b >= n,
        }
}

/// A refuse rule that, once it starts, refuses every new connection for as long as the
/// server runs.
fn refuses_forever(rule: &Rule) -> bool {
    let t = &rule.trigger;
    matches!(rule.fault, Fault::Refuse)
        && t.from.is_none()
        && t.until.is_none()
        && rule.times.is_none()
        && t.probability.is_none_or(|p| p >= 1.0)
        && t.every.is_none_or(|e| e == 1)
}

fn position_key(position: Position) -> &'static str {
    match position {
        Position::Offset(_) | Position::Fraction(_) => "offset",
        Position::First | Position::Final => "fragment",
    }
}

fn names(types: &[PacketType]) -> String {
    types
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::profile::parse;
    use crate::fault::rule::{Lie, Portion};
    use crate::fault::shipped::{SHIPPED, shipped};

    /// The warnings of a profile whose rules are these TOML tables (one string per rule).
    fn warnings(rules: &[&str]) -> Vec<Warning> {
        let mut text = String::from("name = \"t\"\ndescription = \"t\"\n");
        for rule in rules {
            text.push_str(&format!("\n[[rule]]\n{rule}\n"));
        }
        let profile = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        lint(&profile)
    }

    fn messages(rules: &[&str]) -> Vec<String> {
        warnings(rules).into_iter().map(|w| w.message).collect()
    }

    fn assert_one(rules: &[&str], expected: &str) {
        let found = messages(rules);
        assert!(
            found.len() == 1 && found[0].contains(expected),
            "expected one warning containing {expected:?}, got {found:?}"
        );
    }

    fn assert_clean(rules: &[&str]) {
        assert_eq!(messages(rules), Vec::<String>::new());
    }

    #[test]
    fn every_shipped_profile_lints_clean() {
        for (name, _) in SHIPPED {
            let profile = shipped(name).unwrap().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(lint(&profile), [], "{name}");
        }
    }

    #[test]
    fn a_warning_names_the_line_its_rule_starts_on() {
        let w = warnings(&[
            "fault = \"delay\"\ndelay = \"1ms\"",
            "name = \"dead\"\nprobability = 0.0\nfault = \"lose-ack\"",
        ]);
        assert_eq!(w.len(), 1, "{w:?}");
        // Header (2 lines), blank, [[rule]] at 4, two keys, blank, [[rule]] at 8.
        assert_eq!(w[0].line, 8);
        assert!(w[0].message.starts_with("`dead` can never fire"), "{w:?}");
    }

    #[test]
    fn a_rule_origin_without_a_number_counts_as_line_one() {
        let mut profile = parse(
            "name = \"t\"\ndescription = \"t\"\n[[rule]]\ntimes = 0\nfault = \"lose-ack\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(lint(&profile)[0].line, 3);
        profile.rules[0].origin = "somewhere".into();
        assert_eq!(lint(&profile)[0].line, 1);
    }

    #[test]
    fn a_probability_of_zero_never_fires() {
        assert_one(
            &["probability = 0.0\nfault = \"lose-ack\""],
            "`probability = 0`",
        );
        assert_clean(&["probability = 0.001\nfault = \"lose-ack\""]);
    }

    #[test]
    fn times_zero_never_fires() {
        assert_one(
            &["times = 0\nfault = \"status\"\nstatus = 503"],
            "`times = 0`",
        );
        assert_clean(&["times = 1\nfault = \"status\"\nstatus = 503"]);
    }

    #[test]
    fn an_empty_time_window_never_fires() {
        assert_one(&["until = \"0s\"\nfault = \"lose-ack\""], "window is empty");
        assert_clean(&["until = \"1ms\"\nfault = \"lose-ack\""]);
    }

    #[test]
    fn a_fragment_position_on_other_packets_never_fires() {
        for position in [
            "fragment = \"first\"",
            "fragment = \"final\"",
            "offset = 100",
            "offset = \"50%\"",
        ] {
            for packet in ["ping", "create-session", "close-session", "cancel-session"] {
                let rule = format!("packet = \"{packet}\"\n{position}\nfault = \"lose-ack\"");
                assert_one(&[&rule], "matches fragments only");
            }
        }
        assert_one(
            &["packet = [\"ping\", \"close-session\"]\nfragment = \"final\"\nfault = \"lose-ack\""],
            "`packet` allows Ping, Close-Session only, and `fragment` matches fragments only",
        );
        assert_clean(&[
            "packet = [\"ping\", \"fragment\"]\nfragment = \"final\"\nfault = \"lose-ack\"",
        ]);
        assert_clean(&["fragment = \"final\"\nfault = \"lose-ack\""]);
    }

    #[test]
    fn session_or_nth_on_pings_only_never_fires() {
        assert_one(
            &["packet = \"ping\"\nsession = 1\nfault = \"lose-ack\""],
            "a Ping has no session",
        );
        assert_one(
            &["packet = \"ping\"\nnth = 1\nfault = \"lose-ack\""],
            "its index is always 0",
        );
        assert_clean(&[
            "packet = [\"ping\", \"create-session\"]\nsession = 1\nfault = \"lose-ack\"",
        ]);
        assert_clean(&["packet = \"create-session\"\nnth = 1\nfault = \"lose-ack\""]);
    }

    #[test]
    fn an_empty_packet_list_never_fires() {
        assert_one(
            &["packet = []\nfault = \"lose-ack\""],
            "names no packet type",
        );
        assert_clean(&["packet = [\"ping\"]\nfault = \"lose-ack\""]);
    }

    #[test]
    fn a_fragment_only_fault_on_other_packets_never_fires() {
        // The parser refuses this; a rule built in code (or by a future parser) may not.
        let mut profile = parse(
            "name = \"t\"\ndescription = \"t\"\n[[rule]]\nname = \"r\"\npacket = \"fragment\"\nfault = \"reset-mid-body\"\nafter-bytes = 10\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(lint(&profile), []);
        profile.rules[0].trigger.packets = Some(vec![PacketType::Ping, PacketType::CloseSession]);
        let w = lint(&profile);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].message
                .contains("fault `reset-mid-body` acts on Fragment only"),
            "{w:?}"
        );
        profile.rules[0].fault = Fault::Lie(Lie::Behind(5));
        assert!(
            lint(&profile)[0]
                .message
                .contains("fault `lie` acts on Fragment only")
        );
        profile.rules[0].fault = Fault::Lie(Lie::OtherSession);
        assert_eq!(
            lint(&profile),
            [],
            "an other-session lie acts on every packet"
        );
        profile.rules[0].fault = Fault::ResetMidBody {
            after: Portion::Bytes(1),
            keep: false,
        };
        profile.rules[0].trigger.packets = None;
        assert_eq!(lint(&profile), []);
    }

    #[test]
    fn an_earlier_rule_that_always_fires_shadows_a_later_fate_rule() {
        let always = "name = \"all\"\npacket = [\"fragment\", \"ping\"]\nfault = \"lose-ack\"";
        assert_one(
            &[
                always,
                "name = \"later\"\npacket = \"fragment\"\nnth = 3\nfault = \"status\"\nstatus = 503",
            ],
            "`later` is shadowed by `all` (line 4)",
        );
        assert_one(
            &[
                "name = \"all\"\nfault = \"status\"\nstatus = 500",
                "fault = \"auth\"\nscheme = \"basic\"",
            ],
            "shadowed by `all`",
        );
        // Equal narrowing is as broad; a window inside the earlier one is covered.
        assert_one(
            &[
                "packet = \"fragment\"\nsession = 2\nfrom = \"1s\"\nfault = \"lose-ack\"",
                "packet = \"fragment\"\nsession = 2\nfrom = \"2s\"\nuntil = \"3s\"\nfault = \"lie\"\nlie = \"missing\"",
            ],
            "shadowed by `rule 1`",
        );
        // A fragment-only earlier fault covers a later fragment rule.
        assert_one(
            &[
                "fault = \"reset-mid-body\"\nafter-bytes = 1",
                "fragment = \"first\"\nfault = \"lose-ack\"",
            ],
            "shadowed by `rule 1`",
        );
    }

    #[test]
    fn a_limited_or_narrower_earlier_rule_shadows_nothing() {
        let later = "packet = \"fragment\"\nfault = \"status\"\nstatus = 503";
        for limit in [
            "probability = 0.5",
            "every = 2",
            "times = 3",
            "skip = 1",
            "from = \"1s\"",
            "until = \"10s\"",
            "session = 1",
            "nth = 2",
            "fragment = \"final\"",
            "path = \"/a/*\"",
            "packet = \"ping\"",
        ] {
            assert_clean(&[&format!("{limit}\nfault = \"lose-ack\""), later]);
        }
        // Modifiers combine: never shadowed, never shadowing.
        assert_clean(&["fault = \"lose-ack\"", "fault = \"delay\"\ndelay = \"1ms\""]);
        assert_clean(&["fault = \"delay\"\ndelay = \"1ms\"", later]);
        // An auth rule lets authenticated requests through.
        assert_clean(&["fault = \"auth\"\nscheme = \"basic\"", later]);
        // A broader later rule still decides requests the earlier one does not match.
        assert_clean(&[
            "packet = \"fragment\"\nfault = \"lose-ack\"",
            "fault = \"status\"\nstatus = 503",
        ]);
        // `probability = 1` and `every = 1` gate nothing; `path = "*"` narrows nothing.
        assert_one(
            &[
                "probability = 1.0\nevery = 1\npath = \"*\"\nfault = \"lose-ack\"",
                later,
            ],
            "shadowed by `rule 1`",
        );
    }

    #[test]
    fn refuse_without_a_window_refuses_forever() {
        assert_one(&["fault = \"refuse\""], "refuses every connection forever");
        assert_one(
            &["skip = 2\nfault = \"refuse\""],
            "refuses every connection after the first 2 forever",
        );
        for limit in [
            "from = \"1s\"",
            "until = \"2s\"",
            "times = 3",
            "probability = 0.5",
            "every = 3",
        ] {
            assert_clean(&[&format!("{limit}\nfault = \"refuse\"")]);
        }
    }

    #[test]
    fn a_dead_refuse_rule_is_called_dead_not_endless() {
        assert_one(&["probability = 0.0\nfault = \"refuse\""], "can never fire");
    }
}
