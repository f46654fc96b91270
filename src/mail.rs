//! Sending email: over SMTP when `PARLEY_SMTP_URL` is set, else as `.eml`
//! files in `PARLEY_MAIL_DIR` (a developer sees every email without a mail
//! server). What the emails say is the application layer's business
//! (`chat::email`).

use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::{config::MailSettings, domain::ChatError};

/// Where emails go.
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>),
}

impl Mailer {
    pub fn from_settings(settings: &MailSettings) -> anyhow::Result<Self> {
        match &settings.smtp_url {
            Some(url) => Ok(Self::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())?.build(),
            )),
            None => {
                std::fs::create_dir_all(&settings.dir)?;
                Ok(Self::Files(AsyncFileTransport::new(&settings.dir)))
            }
        }
    }

    pub async fn send(&self, email: Message) -> Result<(), ChatError> {
        let sent = match self {
            Self::Smtp(smtp) => smtp
                .send(email)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Self::Files(files) => files
                .send(email)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        sent.map_err(|e| ChatError::unavailable(format!("sending an email: {e}")))
    }
}
