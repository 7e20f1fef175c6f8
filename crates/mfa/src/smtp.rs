//! An [`EmailSender`] over SMTP on lettre (feature `smtp`): implicit TLS or STARTTLS
//! (rustls on aws-lc-rs, the platform's certificate verifier), never plaintext unless the
//! host picks [`SmtpTls::DangerPlaintext`].
//!
//! The code goes in the body only, never the subject (subjects show in notifications and
//! mail logs). Errors are mapped to coarse [`StoreError`]s: an SMTP server's reply can
//! echo the recipient or the message, so it is never passed on.

use crate::{EmailAddress, EmailSender, Error, StoreError};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::{
    authentication::Credentials,
    client::{Tls, TlsParameters},
    extension::ClientId,
};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mcpsec_core::{Label, SecretString};
use std::time::Duration;
use zeroize::Zeroizing;

/// The placeholder replaced by the code, in the body only.
pub const CODE_PLACEHOLDER: &str = "{code}";
/// The placeholder replaced by the purpose (`login`, `change_email`), subject or body.
pub const PURPOSE_PLACEHOLDER: &str = "{purpose}";
/// Longest subject template.
const MAX_SUBJECT: usize = 200;
/// Longest body template.
const MAX_BODY: usize = 16 * 1024;

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SmtpTls {
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
    /// Plain connect, then `STARTTLS`, which must succeed (usually port 587).
    StartTls,
    /// No TLS at all: codes and credentials cross the network readable. Only for a relay
    /// on the same host or a test server; the name says what it is.
    DangerPlaintext,
}

/// Subject and body of the message. The body must hold [`CODE_PLACEHOLDER`] once; the
/// subject must not hold it. Both may hold [`PURPOSE_PLACEHOLDER`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailTemplate {
    /// One line, at most 200 bytes.
    pub subject: String,
    /// Plain text, at most 16 KiB.
    pub body: String,
}

impl Default for EmailTemplate {
    fn default() -> Self {
        Self {
            subject: "Your verification code".to_owned(),
            body: "Your {purpose} code is {code}\r\n\r\nIt expires in 10 minutes. If you did \
                   not ask for it, ignore this message."
                .to_owned(),
        }
    }
}

/// Everything [`SmtpEmailSender`] needs.
#[derive(Debug)]
pub struct SmtpConfig {
    /// The server's DNS name (also the name checked in its certificate).
    pub host: String,
    /// The port (465 for implicit TLS, 587 for STARTTLS).
    pub port: u16,
    /// Connection protection.
    pub tls: SmtpTls,
    /// User name and password for `AUTH`, if the server wants it.
    pub credentials: Option<(String, SecretString)>,
    /// The sender address.
    pub from: EmailAddress,
    /// What the message says.
    pub template: EmailTemplate,
    /// Connect and command timeout (default 30 s).
    pub timeout: Duration,
    /// The name sent in `EHLO` (default `localhost`; some relays want this host's name).
    pub helo_name: Option<String>,
}

impl SmtpConfig {
    /// A configuration for `host`, implicit TLS on port 465, the default template.
    pub fn new(host: &str, from: EmailAddress) -> Self {
        Self {
            host: host.to_owned(),
            port: 465,
            tls: SmtpTls::Implicit,
            credentials: None,
            from,
            template: EmailTemplate::default(),
            timeout: Duration::from_secs(30),
            helo_name: None,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let name_ok = |name: &str| {
            !name.is_empty()
                && name.len() <= 253
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
        };
        if !name_ok(&self.host)
            || self.port == 0
            || self.helo_name.as_deref().is_some_and(|n| !name_ok(n))
        {
            return Err(Error::Config("SMTP: a host name and a port"));
        }
        let subject = &self.template.subject;
        if subject.is_empty()
            || subject.len() > MAX_SUBJECT
            || subject.chars().any(char::is_control)
            || subject.contains(CODE_PLACEHOLDER)
        {
            return Err(Error::Config(
                "SMTP: the subject is one line of up to 200 bytes without the code",
            ));
        }
        let body = &self.template.body;
        if body.len() > MAX_BODY || body.matches(CODE_PLACEHOLDER).count() != 1 {
            return Err(Error::Config(
                "SMTP: the body holds {code} exactly once and is at most 16 KiB",
            ));
        }
        if self.timeout.is_zero() {
            return Err(Error::Config("SMTP: a positive timeout"));
        }
        if let Some((user, password)) = &self.credentials
            && (user.is_empty() || password.is_empty())
        {
            return Err(Error::Config(
                "SMTP: credentials need a user and a password",
            ));
        }
        Ok(())
    }
}

/// Sends email codes through an SMTP server. `Debug` shows the host, port and TLS mode,
/// never credentials.
#[derive(Clone)]
pub struct SmtpEmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    template: EmailTemplate,
    host: String,
    port: u16,
    tls: SmtpTls,
}

impl std::fmt::Debug for SmtpEmailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpEmailSender")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl SmtpEmailSender {
    /// Checks `config` and builds the transport (no connection is made until a send).
    pub fn new(config: SmtpConfig) -> Result<Self, Error> {
        config.validate()?;
        let tls = match config.tls {
            SmtpTls::DangerPlaintext => Tls::None,
            mode => {
                let parameters = TlsParameters::new(config.host.clone())
                    .map_err(|_| Error::Config("SMTP: TLS parameters refused"))?;
                if mode == SmtpTls::Implicit {
                    Tls::Wrapper(parameters)
                } else {
                    Tls::Required(parameters)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .tls(tls)
            .timeout(Some(config.timeout));
        if let Some(name) = &config.helo_name {
            builder = builder.hello_name(ClientId::Domain(name.clone()));
        }
        if let Some((user, password)) = &config.credentials {
            // lettre keeps the password as a plain String inside the transport: it lives
            // as long as the sender (a process-lifetime secret, like a database password).
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        let from = config
            .from
            .as_str()
            .parse::<Mailbox>()
            .map_err(|_| Error::Config("SMTP: the from address is not a mailbox"))?;
        Ok(Self {
            transport: builder.build(),
            from,
            template: config.template,
            host: config.host,
            port: config.port,
            tls: config.tls,
        })
    }

    /// The message for `code`: the subject with the purpose filled in, the body with the
    /// purpose and the code.
    fn message(
        &self,
        to: &EmailAddress,
        purpose: &Label,
        code: &SecretString,
    ) -> Result<Message, StoreError> {
        let to = to
            .as_str()
            .parse::<Mailbox>()
            .map_err(|_| StoreError::rejected("smtp: recipient is not a mailbox"))?;
        let subject = self
            .template
            .subject
            .replace(PURPOSE_PLACEHOLDER, purpose.as_str());
        // Zeroizes this copy of the body only: lettre's `Message` takes its own `String`,
        // which is not zeroized (see SECURITY.md, "Not guaranteed").
        let body = Zeroizing::new(
            self.template
                .body
                .replace(PURPOSE_PLACEHOLDER, purpose.as_str())
                .replace(CODE_PLACEHOLDER, code.expose_secret()),
        );
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.as_str().to_owned())
            .map_err(|_| StoreError::rejected("smtp: message could not be built"))
    }
}

/// A coarse reason for an SMTP failure; the server's text is dropped.
fn store_error(error: &lettre::transport::smtp::Error) -> StoreError {
    if error.is_timeout() {
        StoreError::timeout("smtp: timed out")
    } else if error.is_tls() {
        StoreError::unavailable("smtp: TLS failed")
    } else if error.is_permanent() {
        StoreError::rejected("smtp: server refused the message")
    } else if error.is_transient() {
        StoreError::unavailable("smtp: server busy; retry later")
    } else {
        StoreError::unavailable("smtp: delivery failed")
    }
}

#[async_trait::async_trait]
impl EmailSender for SmtpEmailSender {
    async fn send_code(
        &self,
        to: &EmailAddress,
        purpose: &Label,
        code: &SecretString,
    ) -> Result<(), StoreError> {
        let message = self.message(to, purpose, code)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| store_error(&e))
    }
}
