//! The fault layer: profiles (what may go wrong) and the seeded decision function that turns
//! a request into a [`plan::Plan`] (what will go wrong this time). Pure: the server executes
//! plans; nothing here sleeps, touches a socket or reads the clock.

pub mod plan;
pub mod profile;
pub mod rule;
pub mod shipped;

pub use plan::{Action, ConnAuth, Facts, Faults, Firing, Outcome, Plan};
pub use profile::{Profile, ProfileError};
pub use rule::{Fault, Rule, Trigger};
