//! A plan's action plus the core's Ack → the one [`Wire`] value the server puts on the wire.
//!
//! Pure: this decides what is sent (the Ack, a lie, a replacement status, broken bytes) or how
//! the connection ends (close, reset, hang); the server's executor carries it out and does
//! nothing else to decide it.

use super::mutate::{Mutation, mutate};
use super::plan::{Action, Outcome, broken_bytes, lie};
use crate::proto::{Ack, ErrorHeader, Rendered};
use std::time::Duration;

/// What goes on the wire for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// Send this response.
    Send(Rendered),
    /// Send these bytes instead of a response, then close. `shaped` is the response they
    /// were built from, for the record.
    Raw { bytes: Vec<u8>, shaped: Rendered },
    /// Close the connection without an answer (FIN).
    Close,
    /// Abort the connection (RST).
    Reset,
    /// Say nothing for this long, then close.
    Hang(Duration),
    /// Send these mutated bytes of the real answer, then close. `shaped` is the mutated
    /// status and BITS headers as text, for the record.
    Mutated {
        bytes: Vec<u8>,
        shaped: Rendered,
        mutations: Vec<Mutation>,
    },
}

/// How the core's part of a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The packet was not applied (the plan said so).
    Skipped,
    /// The core answered.
    Answered(Ack),
    /// The request body ended early or stalled: there is nobody to answer.
    BodyFailed,
    /// A mid-body reset cut the body as planned.
    Cut,
}

/// Decides the wire answer. `total` is the fragment's file length, for lies that need it.
pub fn answer(action: &Action, applied: &Applied, total: Option<u64>, style: ErrorHeader) -> Wire {
    let ack = match applied {
        Applied::Answered(ack) => Some(ack),
        Applied::BodyFailed => return Wire::Close,
        Applied::Cut => return Wire::Reset,
        Applied::Skipped => None,
    };
    match (action, ack) {
        (Action::Instead(outcome), _) => carry(outcome, None, style),
        (Action::After(outcome), Some(ack)) => carry(outcome, Some(ack), style),
        (Action::ResetMidBody { .. }, Some(_)) => Wire::Reset,
        (
            Action::Mutate {
                seed,
                families,
                count,
                other,
            },
            Some(ack),
        ) => {
            let out = mutate(
                &ack.render(style),
                *seed,
                families,
                *count,
                &other.to_string(),
            );
            Wire::Mutated {
                bytes: out.bytes,
                shaped: out.shaped,
                mutations: out.mutations,
            }
        }
        (Action::Lie { lie: how, other }, Some(ack)) => {
            let mut rendered = ack.render(style);
            lie(&mut rendered, *how, total, *other);
            Wire::Send(rendered)
        }
        (_, Some(ack)) => Wire::Send(ack.render(style)),
        // Applied actions always reach the core; this is only reachable by a caller that
        // skipped it anyway, and the honest answer then is silence.
        (_, None) => Wire::Close,
    }
}

fn carry(outcome: &Outcome, ack: Option<&Ack>, style: ErrorHeader) -> Wire {
    match outcome {
        Outcome::Close => Wire::Close,
        Outcome::Reset => Wire::Reset,
        Outcome::Hang(d) => Wire::Hang(*d),
        Outcome::Respond(rendered) => Wire::Send(rendered.clone()),
        Outcome::Broken(broken, noise) => {
            let shaped = ack.cloned().unwrap_or_else(Ack::ok).render(style);
            Wire::Raw {
                bytes: broken_bytes(*broken, &shaped, *noise),
                shaped,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::rule::{Broken, Lie, SessionLoss};
    use crate::proto::SessionId;

    const STYLE: ErrorHeader = ErrorHeader::Code;

    fn fragment_ack(received: u64) -> Ack {
        Ack::ok()
            .for_session(&SessionId::from_bytes([7; 16]))
            .with_received(received)
    }

    #[test]
    fn an_applied_packet_without_a_fault_sends_its_ack() {
        let ack = fragment_ack(10);
        let wire = answer(&Action::Apply, &Applied::Answered(ack.clone()), None, STYLE);
        assert_eq!(wire, Wire::Send(ack.render(STYLE)));
    }

    #[test]
    fn a_lost_ack_replaces_the_answer_after_the_packet_was_applied() {
        let applied = Applied::Answered(fragment_ack(10));
        for (outcome, wire) in [
            (Outcome::Close, Wire::Close),
            (Outcome::Reset, Wire::Reset),
            (
                Outcome::Hang(Duration::from_secs(2)),
                Wire::Hang(Duration::from_secs(2)),
            ),
        ] {
            assert_eq!(answer(&Action::After(outcome), &applied, None, STYLE), wire);
        }
    }

    #[test]
    fn a_lost_request_answers_without_any_ack() {
        let status = Ack::status(503).render(STYLE);
        let wire = answer(
            &Action::Instead(Outcome::Respond(status.clone())),
            &Applied::Skipped,
            None,
            STYLE,
        );
        assert_eq!(wire, Wire::Send(status));
        let wire = answer(
            &Action::Instead(Outcome::Reset),
            &Applied::Skipped,
            None,
            STYLE,
        );
        assert_eq!(wire, Wire::Reset);
    }

    #[test]
    fn a_lie_rewrites_the_real_ack() {
        let action = Action::Lie {
            lie: Lie::Behind(3),
            other: SessionId::from_bytes([1; 16]),
        };
        let Wire::Send(rendered) = answer(
            &action,
            &Applied::Answered(fragment_ack(10)),
            Some(20),
            STYLE,
        ) else {
            panic!("a lie is sent");
        };
        assert_eq!(rendered.header("BITS-Received-Content-Range"), Some("7"));
        assert_eq!(rendered.status, 200);
    }

    #[test]
    fn a_broken_response_is_built_from_the_real_ack() {
        let ack = fragment_ack(10);
        let wire = answer(
            &Action::After(Outcome::Broken(Broken::WrongLength, 1)),
            &Applied::Answered(ack.clone()),
            None,
            STYLE,
        );
        let Wire::Raw { bytes, shaped } = wire else {
            panic!("broken bytes are raw");
        };
        assert_eq!(shaped, ack.render(STYLE));
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 64"), "{text}");
    }

    #[test]
    fn a_mid_body_reset_resets_whether_or_not_the_body_was_cut() {
        let action = Action::ResetMidBody {
            after: 5,
            keep: true,
        };
        let answered = Applied::Answered(fragment_ack(5));
        assert_eq!(answer(&action, &answered, None, STYLE), Wire::Reset);
        assert_eq!(answer(&action, &Applied::Cut, None, STYLE), Wire::Reset);
    }

    #[test]
    fn a_failed_body_closes_whatever_was_planned() {
        for action in [
            Action::Apply,
            Action::LoseSession(SessionLoss::All { keep_file: false }),
            Action::After(Outcome::Reset),
        ] {
            assert_eq!(
                answer(&action, &Applied::BodyFailed, None, STYLE),
                Wire::Close
            );
        }
    }

    #[test]
    fn losing_a_session_still_sends_the_ack() {
        let ack = fragment_ack(4);
        let action = Action::LoseSession(SessionLoss::This { keep_file: false });
        assert_eq!(
            answer(&action, &Applied::Answered(ack.clone()), None, STYLE),
            Wire::Send(ack.render(STYLE))
        );
    }
}
