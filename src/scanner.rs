//! The virus scanner: clamd, over TCP (`host:port`) or a Unix socket (a
//! path), fed with INSTREAM by `clamav-client`. A file is clean only when
//! clamd says so; anything else — unreachable, an error, no answer in time —
//! is "try again later", never a pass.

use std::time::Duration;

use clamav_client::tokio::{Socket, Tcp};

use crate::domain::ChatError;

/// How long one scan may take.
const SCAN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a ping may take (`/readyz`).
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What clamd found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// The signature's name.
    Infected(String),
}

/// Where clamd listens.
#[derive(Clone, Debug)]
pub struct Scanner {
    address: String,
}

impl Scanner {
    pub fn new(address: &str) -> Self {
        Self {
            address: address.to_owned(),
        }
    }

    fn is_socket(&self) -> bool {
        self.address.starts_with('/')
    }

    /// Scans `bytes`; an error when clamd cannot say.
    pub async fn scan(&self, bytes: &[u8]) -> Result<Verdict, ChatError> {
        let answer = if self.is_socket() {
            let socket = Socket {
                socket_path: self.address.as_str(),
            };
            tokio::time::timeout(
                SCAN_TIMEOUT,
                clamav_client::tokio::scan_buffer(bytes, socket, None),
            )
            .await
        } else {
            let tcp = Tcp {
                host_address: self.address.as_str(),
            };
            tokio::time::timeout(
                SCAN_TIMEOUT,
                clamav_client::tokio::scan_buffer(bytes, tcp, None),
            )
            .await
        };
        let answer = answer
            .map_err(|_| ChatError::unavailable("clamd did not answer in time"))?
            .map_err(|e| ChatError::Unavailable {
                detail: "clamd is unreachable".into(),
                cause: Some(Box::new(e)),
            })?;
        verdict(&String::from_utf8_lossy(&answer))
    }

    /// Whether clamd answers a ping.
    pub async fn reachable(&self) -> bool {
        let pong = if self.is_socket() {
            let socket = Socket {
                socket_path: self.address.as_str(),
            };
            tokio::time::timeout(PING_TIMEOUT, clamav_client::tokio::ping(socket)).await
        } else {
            let tcp = Tcp {
                host_address: self.address.as_str(),
            };
            tokio::time::timeout(PING_TIMEOUT, clamav_client::tokio::ping(tcp)).await
        };
        matches!(pong, Ok(Ok(answer)) if answer == clamav_client::PONG)
    }
}

/// Reads clamd's answer to INSTREAM: `stream: OK`, `stream: <name> FOUND`,
/// or an error (`… ERROR`), each ending in NUL.
fn verdict(answer: &str) -> Result<Verdict, ChatError> {
    let answer = answer.trim_end_matches(['\0', '\n']).trim();
    let result = answer.strip_prefix("stream:").unwrap_or(answer).trim();
    if result == "OK" {
        Ok(Verdict::Clean)
    } else if let Some(name) = result.strip_suffix("FOUND") {
        Ok(Verdict::Infected(name.trim().to_owned()))
    } else {
        Err(ChatError::unavailable(format!("clamd answered {answer:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamd_answers_are_read_strictly() {
        assert_eq!(verdict("stream: OK\0").unwrap(), Verdict::Clean);
        assert_eq!(
            verdict("stream: Eicar-Test-Signature FOUND\0").unwrap(),
            Verdict::Infected("Eicar-Test-Signature".into())
        );
        for unsure in [
            "INSTREAM size limit exceeded. ERROR\0",
            "",
            "stream: OK-ish",
            "COMMAND READ TIMED OUT\0",
        ] {
            assert!(verdict(unsure).is_err(), "{unsure:?}");
        }
    }
}
