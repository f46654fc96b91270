//! The actor layer: conversation actors serialise each conversation's writes,
//! user actors own each user's sockets, supervisors spawn and retire both.
//! Nothing here decides policy beyond what a conversation's own state says
//! (who takes part, requests, blocks between its participants); the
//! application layer (`crate::chat`) decides the rest and reaches the
//! conversation actors through its one dispatch.

pub mod conversation;
pub mod supervisor;
pub mod user;
