//! The load scenarios, one module each.

pub mod chat;
pub mod connections;
pub mod footprint;
pub mod history;
pub mod push;
pub mod search;
pub mod thread;
pub mod typing;
pub mod uploads;
