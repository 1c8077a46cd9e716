//! The profiles shipped in `profiles/`, compiled into the binary so `--profile NAME` works
//! from any directory. Embedded text only: resolving `--profile NAME|FILE` (which may read a
//! file) happens at the edge, in [`crate::config::read_profile`].

use super::profile::{self, Profile, ProfileError};

/// (name, file text) of every shipped profile.
pub const SHIPPED: &[(&str, &str)] = &[
    ("clean", include_str!("../../profiles/clean.toml")),
    ("lost-acks", include_str!("../../profiles/lost-acks.toml")),
    (
        "session-loss",
        include_str!("../../profiles/session-loss.toml"),
    ),
    (
        "slow-server",
        include_str!("../../profiles/slow-server.toml"),
    ),
    ("flaky-wifi", include_str!("../../profiles/flaky-wifi.toml")),
    ("outage", include_str!("../../profiles/outage.toml")),
    (
        "lying-server",
        include_str!("../../profiles/lying-server.toml"),
    ),
    (
        "mid-body-resets",
        include_str!("../../profiles/mid-body-resets.toml"),
    ),
    (
        "restart-storm",
        include_str!("../../profiles/restart-storm.toml"),
    ),
    (
        "auth-challenges",
        include_str!("../../profiles/auth-challenges.toml"),
    ),
    ("hostile", include_str!("../../profiles/hostile.toml")),
    ("fuzz-acks", include_str!("../../profiles/fuzz-acks.toml")),
    (
        "fuzz-framing",
        include_str!("../../profiles/fuzz-framing.toml"),
    ),
    (
        "fuzz-everything",
        include_str!("../../profiles/fuzz-everything.toml"),
    ),
];

/// Loads a shipped profile by name.
pub fn shipped(name: &str) -> Option<Result<Profile, ProfileError>> {
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| profile::parse(text, &format!("profiles/{n}.toml")))
}

/// A shipped profile's text and the origin its errors name.
pub fn text(name: &str) -> Option<(String, &'static str)> {
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| (format!("profiles/{n}.toml"), *text))
}

/// Loads a shipped profile by name; an unknown name's error lists the shipped ones.
pub fn load(name: &str) -> Result<Profile, String> {
    match shipped(name) {
        Some(parsed) => parsed.map_err(|e| e.to_string()),
        None => Err(unknown(name)),
    }
}

/// The error for a name that is no shipped profile.
pub fn unknown(name: &str) -> String {
    format!(
        "{name}: no such file, and not a shipped profile ({})",
        SHIPPED
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_profile_is_valid_and_named_after_its_file() {
        for (name, _) in SHIPPED {
            let p = shipped(name).unwrap().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&p.name, name);
            assert!(!p.description.is_empty());
        }
    }

    #[test]
    fn every_shipped_profile_opens_with_a_comment() {
        for (name, text) in SHIPPED {
            assert!(text.starts_with(&format!("# {name} — ")), "{name}");
        }
    }

    #[test]
    fn unknown_names_list_the_shipped_ones() {
        let e = load("no-such-profile").unwrap_err();
        assert!(e.contains("lost-acks"), "{e}");
    }

    #[test]
    fn a_shipped_profile_reads_back_as_shipped() {
        let (origin, text) = text("flaky-wifi").unwrap();
        assert_eq!(origin, "profiles/flaky-wifi.toml");
        assert_eq!(text, include_str!("../../profiles/flaky-wifi.toml"));
    }
}
