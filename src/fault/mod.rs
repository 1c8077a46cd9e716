//! The fault layer: profiles (what may go wrong), the seeded decision function that turns a
//! request into a [`plan::Plan`] (what will go wrong this time), and [`answer::answer`], which
//! turns a plan and the core's Ack into one [`answer::Wire`] value. Pure: the server executes
//! wire answers; nothing here sleeps, touches a socket or reads the clock.

pub mod answer;
pub mod lint;
pub mod mutate;
pub mod plan;
pub mod profile;
pub mod rule;
pub mod shipped;

pub use answer::{Applied, Wire};
pub use plan::{Action, ConnAuth, Effect, Facts, Faults, Firing, FiringKey, Lost, Outcome, Plan};
pub use profile::{Expect, Profile, ProfileError};
pub use rule::{BadCert, Down, Fault, NotifyFault, Rule, TlsFault, Trigger};
