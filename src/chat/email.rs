//! Notification emails, for people who are away.
//!
//! A message that notifies someone also queues an email about its
//! conversation (`persistence::email`): due `PARLEY_EMAIL_DELAY_SECS` later,
//! and not before `PARLEY_EMAIL_BATCH_SECS` after the last email about the
//! same conversation; a message request queues one of its own. When it is
//! due ([`ChatCore::send_due_emails`], every second on some node), it goes
//! out only if the user has had no connection anywhere for the delay, and
//! lists the messages still unread then — none left (read meanwhile, muted,
//! archived, blocked): nothing is sent. At most `PARLEY_EMAILS_PER_HOUR`
//! emails per user per hour; the rest wait. The user's preferences decide
//! whether they want these emails at all, and during their quiet hours
//! nothing goes out: what falls due waits for their end. What falls due for
//! one person at once goes out as one email (a digest of each conversation's
//! unread messages, e.g. at the end of quiet hours); a message request always
//! has an email of its own.

use chrono::Utc;
use lettre::{
    Message,
    message::{
        Mailbox, MultiPart,
        header::{HeaderName, HeaderValue},
    },
};

use super::ChatCore;
use crate::{
    domain::{ChatError, model::PresenceStatus},
    persistence::{
        client,
        email::{self, Digest, Pending},
    },
};

/// The email a notification of `kind` queues: a message request has one of
/// its own (`request`); every other message joins its conversation's
/// (`messages`).
pub(super) fn email_kind(kind: &str) -> &'static str {
    if kind == "message_request" {
        "request"
    } else {
        "messages"
    }
}

/// The notification kind whose email preference an email of `email_kind`
/// follows (the other way round from [`email_kind`]).
fn notification_kind(email_kind: &str) -> &'static str {
    if email_kind == "request" {
        "message_request"
    } else {
        "new_message"
    }
}

/// Most due emails handled in one pass.
const PASS: i64 = 20;
/// How long a failed send waits before it is tried again.
const RETRY_AFTER: chrono::Duration = chrono::Duration::seconds(60);

/// Most conversations one email lists (the others are counted at its end).
const CONVERSATIONS_PER_EMAIL: usize = 10;

/// One conversation of an email: what is queued, and what it would say now.
struct Section<'a> {
    pending: &'a Pending,
    digest: Digest,
}

impl ChatCore {
    /// Sends the emails that are due; returns how many it looked at.
    pub async fn send_due_emails(&self) -> Result<usize, ChatError> {
        let mut db = client(&self.pool).await?;
        let tx = db.transaction().await?;
        let due = email::take_due(&tx, self.safety.clock().now(), PASS).await?;
        for of_user in due.chunk_by(|a, b| a.user == b.user) {
            // A message request is an email of its own; news in the user's
            // conversations makes one email together.
            let (requests, conversations): (Vec<&Pending>, Vec<&Pending>) =
                of_user.iter().partition(|p| p.kind == "request");
            for request in requests {
                self.send_due_email(&tx, &[request]).await?;
            }
            self.send_due_email(&tx, &conversations).await?;
        }
        tx.commit().await?;
        Ok(due.len())
    }

    /// Sends one person one email about what of `due` (all of it for them)
    /// still has something to say, whatever the number of conversations —
    /// e.g. a digest when their quiet hours end.
    async fn send_due_email(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        due: &[&Pending],
    ) -> Result<(), ChatError> {
        let Some(first) = due.first() else {
            return Ok(());
        };
        let mail = &self.mail_settings;
        let delay = chrono::Duration::from_std(mail.delay).unwrap_or(chrono::Duration::MAX);
        let presence = self
            .presence
            .get(std::slice::from_ref(&first.user))
            .await
            .pop();
        if let Some(presence) = presence {
            if presence.status != PresenceStatus::Offline {
                // Connected somewhere: they see it in the app.
                return email::discard_all(tx, due).await;
            }
            if let Some(seen) = presence.last_seen_at
                && seen + delay > Utc::now()
            {
                return email::postpone_all(tx, due, seen + delay).await;
            }
        }
        let mut sections = Vec::new();
        let mut address = None;
        for &pending in due {
            let digest = email::digest(tx, pending).await?;
            let wanted = digest
                .preferences
                .channels(notification_kind(&pending.kind))
                .email;
            let Some(to) = digest.email.clone().filter(|_| !digest.silenced && wanted) else {
                email::discard(tx, pending).await?;
                continue;
            };
            if let Some(until) = digest.preferences.quiet_until(self.safety.clock().now()) {
                // Quiet hours: it goes out when they end, with whatever is unread then.
                email::postpone(tx, pending, until).await?;
                continue;
            }
            if digest.messages.is_empty() {
                // Read (or gone) before the email went out.
                email::discard(tx, pending).await?;
                continue;
            }
            address = Some(to);
            sections.push(Section { pending, digest });
        }
        let Some(address) = address else {
            return Ok(());
        };
        let sending: Vec<&Pending> = sections.iter().map(|s| s.pending).collect();
        let (sent, oldest) = email::sent_last_hour(tx, &first.user).await?;
        if sent >= i64::from(mail.per_hour) {
            let until = oldest.unwrap_or_else(Utc::now) + chrono::Duration::hours(1);
            return email::postpone_all(tx, &sending, until).await;
        }
        let message = self.compose(&sections, &address)?;
        match self.mailer.send(message).await {
            Ok(()) => {
                for section in &sections {
                    metrics::counter!("parley_emails_sent_total", "kind" => section.pending.kind.clone())
                        .increment(1);
                    email::sent(tx, section.pending).await?;
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e.chain(), "an email could not be sent; retrying later");
                metrics::counter!("parley_email_failures_total").increment(1);
                email::postpone_all(tx, &sending, Utc::now() + RETRY_AFTER).await
            }
        }
    }

    /// The email about `sections` (at least one; all for one person): plain
    /// text and HTML (escaped), for each conversation its messages and a
    /// link to it, and a link to the notification settings, which
    /// `List-Unsubscribe` names too.
    fn compose(&self, sections: &[Section<'_>], address: &str) -> Result<Message, ChatError> {
        let mail = &self.mail_settings;
        let settings_link = format!("{}/settings/notifications", mail.public_url);
        let recipient_name = sections
            .first()
            .map_or("", |s| s.digest.recipient_name.as_str());
        let subject = match sections {
            [one] => one.subject(),
            many => format!(
                "{} new messages in {} conversations",
                many.iter().map(|s| s.digest.unread).sum::<i64>(),
                many.len()
            ),
        };
        let mut text = format!("Hello {recipient_name},\n");
        let mut html = format!(
            "<p>Hello {},</p>\n",
            html_escape::encode_text(recipient_name)
        );
        for section in sections.iter().take(CONVERSATIONS_PER_EMAIL) {
            let link = format!(
                "{}/conversations/{}",
                mail.public_url, section.pending.conversation
            );
            if sections.len() > 1 {
                let heading = section.subject();
                text.push_str(&format!("\n{heading}\n"));
                html.push_str(&format!(
                    "<h3>{}</h3>\n",
                    html_escape::encode_text(&heading)
                ));
            }
            text.push('\n');
            html.push_str("<ul>\n");
            let digest = &section.digest;
            for (sender, body) in &digest.messages {
                text.push_str(&format!("{sender}: {body}\n"));
                html.push_str(&format!(
                    "<li><strong>{}</strong>: {}</li>\n",
                    html_escape::encode_text(sender),
                    html_escape::encode_text(body)
                ));
            }
            let more = digest.unread - digest.messages.len() as i64;
            if more > 0 {
                text.push_str(&format!("…and {more} more.\n"));
                html.push_str(&format!("<li>…and {more} more.</li>\n"));
            }
            text.push_str(&format!("\nReply: {link}\n"));
            html.push_str(&format!(
                "</ul>\n<p><a href=\"{}\">Reply</a></p>\n",
                html_escape::encode_double_quoted_attribute(&link)
            ));
        }
        if let Some(others) = sections.len().checked_sub(CONVERSATIONS_PER_EMAIL)
            && others > 0
        {
            text.push_str(&format!(
                "\n…and new messages in {others} more conversations.\n"
            ));
            html.push_str(&format!(
                "<p>…and new messages in {others} more conversations.</p>\n"
            ));
        }
        text.push_str(&format!(
            "\nYou get this email because you were away. \
             Choose which emails you get: {settings_link}\n"
        ));
        html.push_str(&format!(
            "<p style=\"color:#666\">You get this email because \
             you were away. <a href=\"{}\">Choose which emails you get</a>.</p>\n",
            html_escape::encode_double_quoted_attribute(&settings_link)
        ));
        let invalid = |e: String| ChatError::internal(format!("composing an email: {e}"));
        let to: Mailbox = address
            .parse()
            .map_err(|e: lettre::address::AddressError| invalid(e.to_string()))?;
        let from: Mailbox = mail
            .from
            .parse()
            .map_err(|e: lettre::address::AddressError| invalid(e.to_string()))?;
        Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{settings_link}>"),
            ))
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| invalid(e.to_string()))
    }
}

impl Section<'_> {
    /// What this conversation's news is, in a line: the subject of an email
    /// about it alone, the heading of its part in a digest.
    fn subject(&self) -> String {
        let digest = &self.digest;
        let first_sender = digest
            .messages
            .first()
            .map_or("Someone", |(sender, _)| sender.as_str());
        let about = digest
            .context_title
            .as_deref()
            .map(|title| format!(" about {title}"))
            .unwrap_or_default();
        if self.pending.kind == "request" {
            format!("{first_sender} sent you a message request{about}")
        } else if digest.unread == 1 {
            format!("New message from {first_sender}{about}")
        } else {
            format!("{} new messages from {first_sender}{about}", digest.unread)
        }
    }
}
