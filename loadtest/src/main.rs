//! Open-loop load generator for Parley.
//!
//! Placeholder member of the workspace: the scenarios (`connections`, `chat`,
//! `history`, `reconnect`) arrive with the load-test issue.

fn main() {
    eprintln!("loadtest: no scenarios yet; see the load-test issue");
    std::process::exit(2);
}
