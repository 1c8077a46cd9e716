//! The protocol core: packets, ranges, Acks, errors, destinations and the session state
//! machine. Pure: no tokio, no hyper bodies, no clock, no RNG, no filesystem. Time and fresh
//! session ids come in as arguments, and a bad request is an Ack, never a panic.

pub mod ack;
pub mod destination;
pub mod error;
pub mod packet;
pub mod range;
pub mod session;
pub mod vdir;

pub use ack::{Ack, AckError, ErrorHeader, PROTOCOL_GUID, Rendered};
pub use destination::Destination;
pub use error::{BitsError, Context};
pub use packet::{Head, HeadBuf, Packet, PacketType, SessionId};
pub use range::ContentRange;
pub use session::{
    Change, Close, CloseOutcome, Env, Existing, Gone, Notified, Session, Step, Table, Write,
};
pub use vdir::{ContentLength, Farm, Overlap, Place, Vdir};
