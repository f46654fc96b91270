//! Connect tickets: what a browser puts in a realtime URL instead of its
//! bearer token (`EventSource` cannot send headers, and browsers set none on
//! a WebSocket upgrade). A ticket is random, names one signed-in user, is
//! valid for [`TICKET_TTL`] and is spent by its first use. [`LocalTickets`]
//! keeps them in this process (one node); [`RedisTickets`] in Redis, so the
//! node that redeems a ticket need not be the one that issued it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dashmap::DashMap;
use futures_util::future::BoxFuture;

use super::link::RedisLink;

/// How long a ticket may wait for its connection.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Most unspent tickets one node keeps (expired ones are dropped first).
const LOCAL_CAPACITY: usize = 100_000;

/// Where tickets wait for their connection.
pub trait TicketStore: Send + Sync + 'static {
    /// Keeps `holder` (who the ticket stands for) under `ticket` for `ttl`;
    /// `Err` when it could not be kept.
    fn put<'a>(
        &'a self,
        ticket: &'a str,
        holder: String,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// The holder of an unexpired ticket, spending it (a second take finds
    /// nothing).
    fn take<'a>(&'a self, ticket: &'a str) -> BoxFuture<'a, Option<String>>;
}

/// Tickets in this process.
#[derive(Default)]
pub struct LocalTickets {
    tickets: DashMap<String, (String, Instant)>,
}

impl TicketStore for LocalTickets {
    fn put<'a>(
        &'a self,
        ticket: &'a str,
        holder: String,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if self.tickets.len() >= LOCAL_CAPACITY {
                let now = Instant::now();
                self.tickets.retain(|_, (_, until)| *until > now);
                if self.tickets.len() >= LOCAL_CAPACITY {
                    return Err("too many unspent connect tickets".into());
                }
            }
            self.tickets
                .insert(ticket.to_owned(), (holder, Instant::now() + ttl));
            Ok(())
        })
    }

    fn take<'a>(&'a self, ticket: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let (_, (holder, until)) = self.tickets.remove(ticket)?;
            (until > Instant::now()).then_some(holder)
        })
    }
}

/// Tickets in Redis (`SET … PX` and `GETDEL`: spent atomically, once,
/// whichever node redeems it).
pub struct RedisTickets {
    link: Arc<RedisLink>,
}

impl RedisTickets {
    pub fn new(link: Arc<RedisLink>) -> Self {
        Self { link }
    }

    fn key(&self, ticket: &str) -> String {
        self.link.key(format_args!("ticket:{ticket}"))
    }
}

impl TicketStore for RedisTickets {
    fn put<'a>(
        &'a self,
        ticket: &'a str,
        holder: String,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            redis::cmd("SET")
                .arg(self.key(ticket))
                .arg(holder)
                .arg("PX")
                .arg(millis)
                .query_async::<()>(&mut self.link.commands())
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn take<'a>(&'a self, ticket: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            redis::cmd("GETDEL")
                .arg(self.key(ticket))
                .query_async::<Option<String>>(&mut self.link.commands())
                .await
                .inspect_err(|e| tracing::warn!(error = %e, "could not redeem a connect ticket"))
                .ok()
                .flatten()
        })
    }
}

/// The store for this node: Redis in a cluster, else this process.
pub fn store(link: Option<Arc<RedisLink>>) -> Arc<dyn TicketStore> {
    match link {
        Some(link) => Arc::new(RedisTickets::new(link)),
        None => Arc::new(LocalTickets::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ticket_is_spent_by_its_first_use_and_worthless_once_expired() {
        let store = LocalTickets::default();
        store.put("t1", "alice".into(), TICKET_TTL).await.unwrap();
        assert_eq!(store.take("t1").await.as_deref(), Some("alice"));
        assert_eq!(store.take("t1").await, None);
        store.put("t2", "bob".into(), Duration::ZERO).await.unwrap();
        assert_eq!(store.take("t2").await, None);
        assert_eq!(store.take("never").await, None);
    }
}
