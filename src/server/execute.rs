//! The single executor of wire answers: the only place that waits for a fault, throttles,
//! resets, hangs or sends raw bytes. It also closes the request's record with what was really
//! put on the wire.

use super::Server;
use super::accept::Conn;
use super::reply_http::to_response;
use crate::fault::{Effect, Plan, Wire};
use crate::journal::{AckSeen, Request, Sent, What};
use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use std::time::Duration;

/// A request that ends without an answer: hyper closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum Dropped {
    #[error("closed without an answer")]
    Closed,
    #[error("reset")]
    Reset,
    #[error("hung, then closed")]
    Hung,
}

pub(super) type Answer = Result<Response<Full<Bytes>>, Dropped>;

impl Server {
    /// Puts a wire answer on the wire (after the plan's delay) and records the request.
    pub(super) async fn execute(
        &self,
        wire: Wire,
        plan: &Plan,
        mut record: Request,
        conn: &Conn,
        arrived: tokio::time::Instant,
    ) -> Answer {
        let (answer, sent) = match wire {
            Wire::Send(rendered) => {
                let sent = Sent::Status {
                    status: rendered.status,
                };
                record.ack = Some(AckSeen::of(&rendered));
                let mut response = to_response(&rendered);
                if self.config.mark_faults
                    && let Some(mark) = mark(&record)
                {
                    response.headers_mut().insert(MARK_HEADER, mark);
                }
                (Ok(response), sent)
            }
            Wire::Raw { bytes, shaped } => {
                conn.control.replace_response(bytes);
                (Ok(to_response(&shaped)), Sent::Broken)
            }
            Wire::Mutated {
                bytes,
                shaped,
                mutations,
            } => {
                conn.control.replace_response(bytes);
                record.ack = Some(AckSeen::of(&shaped));
                if let Some(firing) = record
                    .faults
                    .iter_mut()
                    .find(|f| matches!(f.effect, Effect::Mutated { .. }))
                {
                    firing.effect = Effect::Mutated { mutations };
                }
                let sent = Sent::Mutated {
                    status: shaped.status,
                };
                (Ok(to_response(&shaped)), sent)
            }
            Wire::Close => (Err(Dropped::Closed), Sent::Closed),
            Wire::Reset => {
                conn.control.reset();
                (Err(Dropped::Reset), Sent::Reset)
            }
            Wire::Hang(d) => {
                tokio::time::sleep(d).await;
                (Err(Dropped::Hung), Sent::Hung)
            }
        };
        if !plan.delay.is_zero() {
            tokio::time::sleep(plan.delay).await;
        }
        record.sent = sent;
        record.latency_ms = arrived.elapsed().as_secs_f64() * 1000.0;
        self.emit(What::Request(Box::new(record)));
        answer
    }
}

/// Names the rules that shaped an answer (`--mark-faults`).
pub const MARK_HEADER: &str = "x-bitsmock-fault";

/// `rule 2 (lost ack); rule 5 (slow)`: the rules that fired for this request, if any.
fn mark(record: &Request) -> Option<http::HeaderValue> {
    if record.faults.is_empty() {
        return None;
    }
    let text = record
        .faults
        .iter()
        .map(|f| format!("rule {} ({})", f.rule + 1, f.name))
        .collect::<Vec<_>>()
        .join("; ");
    // Rule names come from profiles; anything a header cannot carry is left out.
    let text: String = text.chars().filter(|c| (' '..='~').contains(c)).collect();
    http::HeaderValue::from_str(&text).ok()
}

/// Waits out a planned stall before the body is read.
pub(super) async fn stall(plan: &Plan, conn: &Conn) {
    conn.control.throttle_writes(plan.write_rate);
    if !plan.stall.is_zero() {
        tokio::time::sleep(plan.stall).await;
    }
}

/// Holds the next body read back until `consumed` bytes were due at `rate` bytes/s.
pub(super) async fn pace_read(started: tokio::time::Instant, consumed: u64, rate: Option<u64>) {
    if let Some(rate) = rate {
        let due = started + Duration::from_secs_f64(consumed as f64 / rate.max(1) as f64);
        tokio::time::sleep_until(due).await;
    }
}
