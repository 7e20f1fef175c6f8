//! `SmtpEmailSender`: delivery to an in-process fake SMTP server (plaintext, the danger
//! mode, in this test only) with the code in the body and not the subject; configuration
//! checks; nothing secret in `Debug` or errors.
#![cfg(feature = "smtp")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use mcpsec_core::{Label, SecretString};
use mcpsec_mfa::{EmailAddress, EmailSender, EmailTemplate, SmtpConfig, SmtpEmailSender, SmtpTls};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the fake server saw in one session.
#[derive(Debug, Default)]
struct Session {
    commands: Vec<String>,
    data: String,
}

/// Accepts one connection and speaks just enough SMTP for lettre; `reject_rcpt` answers
/// RCPT TO with a permanent failure that echoes the address.
async fn fake_smtp(listener: TcpListener, reject_rcpt: bool) -> Session {
    let (stream, _) = listener.accept().await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut session = Session::default();
    write.write_all(b"220 fake ESMTP\r\n").await.unwrap();
    while let Some(line) = lines.next_line().await.unwrap() {
        let upper = line.to_ascii_uppercase();
        session.commands.push(line.clone());
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-fake\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("AUTH") {
            b"235 2.7.0 ok\r\n"
        } else if upper.starts_with("MAIL FROM") {
            b"250 ok\r\n"
        } else if upper.starts_with("RCPT TO") {
            if reject_rcpt {
                b"550 5.1.1 <ada@example.com> unknown, code 123456\r\n"
            } else {
                b"250 ok\r\n"
            }
        } else if upper == "DATA" {
            write.write_all(b"354 go ahead\r\n").await.unwrap();
            while let Some(data_line) = lines.next_line().await.unwrap() {
                if data_line == "." {
                    break;
                }
                session.data.push_str(&data_line);
                session.data.push('\n');
            }
            b"250 queued\r\n"
        } else if upper.starts_with("QUIT") {
            write.write_all(b"221 bye\r\n").await.unwrap();
            break;
        } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
            b"250 ok\r\n"
        } else {
            b"502 not implemented\r\n"
        };
        write.write_all(reply).await.unwrap();
    }
    session
}

fn config(port: u16) -> SmtpConfig {
    let mut config = SmtpConfig::new("127.0.0.1", EmailAddress::new("mfa@example.com").unwrap());
    config.port = port;
    config.tls = SmtpTls::DangerPlaintext;
    config.timeout = Duration::from_secs(10);
    config
}

#[tokio::test]
async fn delivers_the_code_in_the_body_not_the_subject() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(fake_smtp(listener, false));
    let mut config = config(port);
    config.credentials = Some(("mailer".to_owned(), SecretString::new("pw".to_owned())));
    config.helo_name = Some("app1.example.com".to_owned());
    config.template = EmailTemplate {
        subject: "Your {purpose} code".to_owned(),
        body: "Code: {code}\r\nPurpose: {purpose}".to_owned(),
    };
    let sender = SmtpEmailSender::new(config).unwrap();
    let to = EmailAddress::new("ada@example.com").unwrap();
    let code = SecretString::new("493817".to_owned());
    sender
        .send_code(&to, &Label::new("login").unwrap(), &code)
        .await
        .unwrap();
    drop(sender);
    let session = server.await.unwrap();
    assert_eq!(session.commands[0], "EHLO app1.example.com");
    assert!(session.commands.iter().any(|c| c.starts_with("AUTH")));
    assert!(
        session
            .commands
            .iter()
            .any(|c| c.contains("<mfa@example.com>"))
    );
    assert!(
        session
            .commands
            .iter()
            .any(|c| c.contains("<ada@example.com>"))
    );
    let (headers, body) = session.data.split_once("\n\n").expect("headers then body");
    let subject = headers
        .lines()
        .find(|l| l.starts_with("Subject:"))
        .expect("a subject");
    assert_eq!(subject, "Subject: Your login code");
    assert!(!headers.contains("493817"), "the code is not in any header");
    assert!(body.contains("Code: 493817"), "{body}");
    assert!(body.contains("Purpose: login"));
    assert!(headers.contains("Content-Type: text/plain"));
}

#[tokio::test]
async fn a_refusal_does_not_echo_the_server_reply() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(fake_smtp(listener, true));
    let sender = SmtpEmailSender::new(config(port)).unwrap();
    let to = EmailAddress::new("ada@example.com").unwrap();
    let code = SecretString::new("123456".to_owned());
    let err = sender
        .send_code(&to, &Label::new("login").unwrap(), &code)
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("123456") && !text.contains("ada@"), "{text}");
    assert!(text.contains("refused"), "{text}");
    drop(sender);
    server.abort();
}

#[test]
fn debug_shows_no_credentials() {
    let mut config = config(2525);
    config.credentials = Some((
        "mailer".to_owned(),
        SecretString::new("hunter2-password".to_owned()),
    ));
    assert!(!format!("{config:?}").contains("hunter2"));
    let sender = SmtpEmailSender::new(config).unwrap();
    let debug = format!("{sender:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("mailer"),
        "{debug}"
    );
    assert!(debug.contains("DangerPlaintext"));
}

#[test]
fn configuration_is_checked() {
    let ok = || config(587);
    let refused = |f: &dyn Fn(&mut SmtpConfig)| {
        let mut c = ok();
        f(&mut c);
        SmtpEmailSender::new(c).is_err()
    };
    assert!(SmtpEmailSender::new(ok()).is_ok());
    assert!(refused(&|c| c.host = String::new()));
    assert!(refused(&|c| c.host = "mail.example.com\r\nRCPT".to_owned()));
    assert!(refused(&|c| c.port = 0));
    assert!(refused(&|c| c.helo_name = Some("bad name".to_owned())));
    assert!(refused(&|c| c.timeout = Duration::ZERO));
    assert!(refused(&|c| c.template.subject = "code {code}".to_owned()));
    assert!(refused(&|c| c.template.subject = "two\r\nlines".to_owned()));
    assert!(refused(&|c| c.template.subject = String::new()));
    assert!(refused(&|c| c.template.body = "no placeholder".to_owned()));
    assert!(refused(&|c| c.template.body = "{code} {code}".to_owned()));
    assert!(refused(
        &|c| c.template.body = format!("{{code}}{}", "x".repeat(16 * 1024))
    ));
    assert!(refused(
        &|c| c.credentials = Some((String::new(), SecretString::new("p".into())))
    ));
    assert!(refused(
        &|c| c.credentials = Some(("u".into(), SecretString::new(String::new())))
    ));
}

#[test]
fn tls_modes_build_with_rustls() {
    for tls in [SmtpTls::Implicit, SmtpTls::StartTls] {
        let mut c = config(465);
        c.host = "smtp.example.com".to_owned();
        c.tls = tls;
        assert!(SmtpEmailSender::new(c).is_ok(), "{tls:?}");
    }
    let defaults = SmtpConfig::new("smtp.example.com", EmailAddress::new("a@b.c").unwrap());
    assert_eq!((defaults.tls, defaults.port), (SmtpTls::Implicit, 465));
}

#[tokio::test]
async fn starttls_fails_closed_when_the_server_does_not_offer_it() {
    // The fake server advertises AUTH but no STARTTLS: a downgrade by a network attacker
    // looks exactly like this.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(fake_smtp(listener, false));
    let mut config = config(port);
    config.tls = SmtpTls::StartTls;
    config.credentials = Some((
        "mailer".to_owned(),
        SecretString::new("hunter2-password".to_owned()),
    ));
    let sender = SmtpEmailSender::new(config).unwrap();
    let to = EmailAddress::new("ada@example.com").unwrap();
    let code = SecretString::new("493817".to_owned());
    let err = sender
        .send_code(&to, &Label::new("login").unwrap(), &code)
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("493817") && !text.contains("hunter2"),
        "{text}"
    );
    drop(sender);
    let session = server.await.unwrap();
    assert!(
        session
            .commands
            .first()
            .is_some_and(|c| c.starts_with("EHLO")),
        "{:?}",
        session.commands
    );
    for command in &session.commands {
        let upper = command.to_ascii_uppercase();
        assert!(
            !upper.starts_with("AUTH")
                && !upper.starts_with("MAIL FROM")
                && !upper.starts_with("RCPT")
                && upper != "DATA",
            "sent in plaintext: {command}"
        );
    }
    assert!(session.data.is_empty(), "no message crossed in plaintext");
}
