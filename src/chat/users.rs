//! Users: sign-in from token claims, settings, presence and heartbeats, and
//! realtime connections with their presence subscriptions.

use std::sync::{Arc, atomic::Ordering};

use ractor::ActorRef;

use super::{
    ChatCore, KNOWN_USERS_CAPACITY,
    dispatch::{Attempt, call},
};
pub use crate::actors::user::{
    EventId, Outbound, OutboundFrames, Outgoing, WeakOutbound, outbound_queue,
};
use crate::{
    actors::{
        supervisor::{UserSupervisorMsg, live_user},
        user::{Attached, UserMsg},
    },
    cluster::{
        limits::LimitKind,
        presence::{ConnectionId, MAX_SUBSCRIPTIONS, PresenceHub},
        slots::{Admission, Slot},
        tickets::TICKET_TTL,
    },
    domain::{
        ChatError, UserId,
        model::{Presence, PresenceStatus},
    },
    persistence::{
        conversations,
        users::{self, UserProfile, UserSettings},
    },
};

/// A realtime connection's registration with its user's actor. Dropping it
/// detaches the connection, drops its presence subscriptions and keeps the
/// `parley_connections_open` gauge right, however the connection ends.
pub struct Attachment {
    pub id: ConnectionId,
    /// The newest event of the user's stream when the connection attached
    /// (where a long-poll client resumes from if nothing arrives).
    pub head: EventId,
    actor: ActorRef<UserMsg>,
    presence: Arc<PresenceHub>,
    transport: &'static str,
    /// The connection's place under the cluster-wide cap (given back on drop).
    _slot: Option<Slot>,
}

/// What decides whether a user row needs writing again: a hash of the claims
/// (a collision would only skip refreshing a changed display name on this
/// node until it restarts or the cache is cleared).
fn claims_fingerprint(profile: &UserProfile) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (&profile.name, &profile.role, &profile.email).hash(&mut hasher);
    hasher.finish()
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let _ = self.actor.send_message(UserMsg::Detach(self.id));
        self.presence.unsubscribe(self.id);
        metrics::gauge!("parley_connections_open", "transport" => self.transport).decrement(1.0);
    }
}

impl ChatCore {
    /// Records the user a verified token describes: the row is upserted the
    /// first time this node sees these exact claims.
    pub async fn sign_in(&self, profile: &UserProfile) -> Result<(), ChatError> {
        let claims = claims_fingerprint(profile);
        if self
            .known_users
            .get(&profile.id)
            .is_some_and(|known| *known == claims)
        {
            return Ok(());
        }
        if self.user_upserts.submit(profile.clone()).await? {
            return Err(super::privacy::account_erased());
        }
        if self.known_users.len() >= KNOWN_USERS_CAPACITY {
            self.known_users.clear();
        }
        self.known_users.insert(profile.id.clone(), claims);
        Ok(())
    }

    /// Whether `user` may use the moderation tools (role `admin`).
    pub fn ensure_admin(&self, user: &UserProfile) -> Result<(), ChatError> {
        if user.role == "admin" {
            Ok(())
        } else {
            Err(ChatError::forbidden(
                "forbidden",
                "moderation is for admins only",
            ))
        }
    }

    /// The caller's settings.
    pub async fn settings(&self, caller: &UserId) -> Result<UserSettings, ChatError> {
        users::settings(&self.pool, caller).await
    }

    /// Changes the settings given (`None` leaves one as it is).
    pub async fn update_settings(
        &self,
        caller: &UserId,
        read_receipts: Option<bool>,
    ) -> Result<UserSettings, ChatError> {
        users::update_settings(&self.pool, caller, read_receipts).await
    }

    /// `user`'s presence as the caller may see it: the status of a contact
    /// (with a last-seen time for the caller's own only); anyone else —
    /// a stranger, someone behind a block either way, an unknown id — looks
    /// exactly like a contact who is offline, so presence tells nothing about
    /// who exists, who blocked whom, or whom the caller merely wrote to.
    pub async fn presence_of(&self, caller: &UserId, user: &str) -> Result<Presence, ChatError> {
        self.safety.check_limit(caller, LimitKind::Reads).await?;
        // A malformed id names nobody.
        let user = UserId::parse(user).map_err(|_| ChatError::NotFound { what: "user" })?;
        if &user == caller {
            return self.current_presence(&user).await;
        }
        let contact =
            !conversations::contacts_among(&self.pool, caller, std::slice::from_ref(&user))
                .await?
                .is_empty();
        if !contact {
            return Ok(Presence::hidden(&user));
        }
        Ok(self.current_presence(&user).await?.as_shared())
    }

    async fn current_presence(&self, user: &UserId) -> Result<Presence, ChatError> {
        let mut found = self.presence.get(std::slice::from_ref(user)).await;
        found
            .pop()
            .ok_or_else(|| ChatError::internal("presence lookup returned nothing"))
    }

    /// A presence heartbeat for `user`'s connections on this node (all of
    /// them when `connection` is `None`, as the REST fallback does), with the
    /// status the client reports (`online`, the default, or `away`).
    pub fn heartbeat(
        &self,
        user: &UserId,
        connection: Option<ConnectionId>,
        status: Option<&str>,
    ) -> Result<(), ChatError> {
        let away = PresenceStatus::heartbeat_is_away(status)?;
        if let Some(actor) = self.users.get(user) {
            let _ = actor.send_message(UserMsg::Heartbeat { connection, away });
        }
        Ok(())
    }

    /// Registers a realtime connection of `user` over `transport`; events for
    /// the user go into `outbound`, starting with those after `resume_after`
    /// when given. Refused (`too_many_connections`) over the per-user limit.
    pub async fn attach(
        &self,
        user: &UserId,
        outbound: Outbound,
        resume_after: Option<EventId>,
        transport: &'static str,
    ) -> Result<Attachment, ChatError> {
        let id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);
        let mut slot = match &self.cluster {
            Some(node) => match node
                .slots
                .take(
                    &node.link,
                    &node.alive_nodes(),
                    user,
                    id,
                    self.max_connections,
                )
                .await
            {
                Admission::Granted(slot) => Some(slot),
                Admission::Unchecked => None,
                Admission::Full => {
                    metrics::counter!("parley_ws_disconnects_total", "reason" => "too_many_connections").increment(1);
                    return Err(ChatError::too_many_connections(self.max_connections));
                }
            },
            None => None,
        };
        // A user actor retiring at this very moment drops the request: retry once.
        for _ in 0..2 {
            let outbound = outbound.clone();
            let attempt = match live_user(&self.users, user) {
                Some(actor) => {
                    call(&actor, self.call_timeout, |reply| UserMsg::Attach {
                        id,
                        outbound,
                        resume_after,
                        reply,
                    })
                    .await
                }
                None => {
                    call(&self.user_supervisor, self.call_timeout, |reply| {
                        UserSupervisorMsg::Attach {
                            user: user.clone(),
                            id,
                            outbound,
                            resume_after,
                            reply,
                        }
                    })
                    .await
                }
            };
            if let Attempt::Done(result) = attempt {
                let Attached { actor, head } = result?;
                // Events published for this user on any node reach this one
                // from now on: only then may the client (re)sync.
                self.bus.watch(user).await;
                metrics::gauge!("parley_connections_open", "transport" => transport).increment(1.0);
                metrics::counter!("parley_connects_total", "transport" => transport).increment(1);
                return Ok(Attachment {
                    id,
                    head,
                    actor,
                    presence: self.presence.clone(),
                    transport,
                    _slot: slot.take(),
                });
            }
        }
        Err(ChatError::unavailable("user actor kept retiring"))
    }

    /// Makes `connection` watch exactly the users in `ids` that are in
    /// contact with the caller and returns everyone's current presence: the
    /// others are answered as offline contacts (and never change), so a
    /// subscription tells no more than [`ChatCore::presence_of`]. Counted as
    /// a read (rate limit).
    pub async fn subscribe_presence(
        &self,
        connection: &Attachment,
        caller: &UserId,
        ids: &[String],
    ) -> Result<Vec<Presence>, ChatError> {
        if ids.len() > MAX_SUBSCRIPTIONS {
            return Err(ChatError::invalid(
                "too_many_subscriptions",
                format!("at most {MAX_SUBSCRIPTIONS} users per subscription"),
            ));
        }
        self.safety.check_limit(caller, LimitKind::Reads).await?;
        let mut candidates = ids
            .iter()
            .map(|id| UserId::parse(id))
            .collect::<Result<Vec<_>, _>>()?;
        candidates.sort();
        candidates.dedup();
        let allowed = conversations::contacts_among(&self.pool, caller, &candidates).await?;
        let mut current: Vec<Presence> = self
            .presence
            .get(&allowed)
            .await
            .into_iter()
            .map(Presence::as_shared)
            .collect();
        current.extend(
            candidates
                .iter()
                .filter(|c| !allowed.contains(c))
                .map(Presence::hidden),
        );
        self.presence.subscribe(connection.id, caller, allowed);
        Ok(current)
    }
}

/// Longest ticket accepted (ours are 43 characters).
const MAX_TICKET_CHARS: usize = 64;

impl ChatCore {
    /// A connect ticket for `profile` (whose token is good until
    /// `good_until`, which the connection inherits): random, single-use,
    /// valid [`TICKET_TTL`]; what browsers put in realtime URLs instead of a
    /// token.
    pub async fn issue_ticket(
        &self,
        profile: &UserProfile,
        good_until: u64,
    ) -> Result<(String, chrono::DateTime<chrono::Utc>), ChatError> {
        self.safety
            .check_limit(&profile.id, LimitKind::Reads)
            .await?;
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| ChatError::internal("no randomness for a connect ticket"))?;
        let ticket = <base64ct::Base64UrlUnpadded as base64ct::Encoding>::encode_string(&bytes);
        let holder = serde_json::json!({
            "id": profile.id, "name": profile.name, "role": profile.role, "email": profile.email,
            "goodUntil": good_until,
        });
        self.tickets
            .put(&ticket, holder.to_string(), TICKET_TTL)
            .await
            .map_err(ChatError::unavailable)?;
        let ttl = chrono::Duration::from_std(TICKET_TTL).unwrap_or_default();
        Ok((ticket, chrono::Utc::now() + ttl))
    }

    /// Who an unspent, unexpired ticket stands for, and until when their
    /// token is good, spending it.
    pub async fn redeem_ticket(&self, ticket: &str) -> Option<(UserProfile, u64)> {
        if ticket.is_empty() || ticket.len() > MAX_TICKET_CHARS {
            return None;
        }
        let holder: serde_json::Value =
            serde_json::from_str(&self.tickets.take(ticket).await?).ok()?;
        let profile = UserProfile::new(
            holder["id"].as_str()?,
            holder["name"].as_str()?,
            holder["role"].as_str()?.to_owned(),
            holder["email"].as_str().map(str::to_owned),
        )
        .ok()?;
        Some((profile, holder["goodUntil"].as_u64()?))
    }
}
