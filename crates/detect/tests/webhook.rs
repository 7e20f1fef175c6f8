//! The webhook alert sink against a one-shot local HTTP server.
#![cfg(feature = "webhook")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

use mcpsec_core::{SecretBytes, UserId};
use mcpsec_detect::{Alert, AlertSink, Rule, Subject, Tier, WebhookAlertSink};
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn serve_once(status: &'static str) -> (String, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request);
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if request.len() >= head_end + 4 + length {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        socket
            .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        String::from_utf8(request).unwrap()
    });
    (url, handle)
}

fn alert() -> Alert {
    Alert {
        rule: Rule::TokenReuse,
        tier: Tier::Critical,
        subject: Subject::Account(UserId::new("ada").unwrap()),
        time: UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        count: 1,
    }
}

#[tokio::test]
async fn posts_signed_json_and_reports_error_statuses() {
    let (url, server) = serve_once("204 No Content").await;
    let sink = WebhookAlertSink::new(&url, Duration::from_secs(5))
        .unwrap()
        .with_signing_key(&SecretBytes::random(32).unwrap())
        .unwrap();
    sink.send(&alert()).await.unwrap();
    let request = server.await.unwrap();
    assert!(request.starts_with("POST /alerts "));
    assert!(
        request
            .to_ascii_lowercase()
            .contains("x-mcpsec-signature: sha256=")
    );
    assert!(request.contains("\"rule\":\"token_reuse\""), "{request}");
    assert!(request.contains("\"tier\":\"critical\""));

    let (url, server) = serve_once("500 Internal Server Error").await;
    let sink = WebhookAlertSink::new(&url, Duration::from_secs(5)).unwrap();
    assert!(sink.send(&alert()).await.is_err());
    server.await.unwrap();
}

#[test]
fn plain_http_is_refused_except_to_loopback() {
    assert!(WebhookAlertSink::new("http://alerts.example/x", Duration::from_secs(1)).is_err());
    assert!(WebhookAlertSink::new("https://alerts.example/x", Duration::from_secs(1)).is_ok());
    assert!(WebhookAlertSink::new("http://[::1]:9/x", Duration::from_secs(1)).is_ok());
    let debug = format!(
        "{:?}",
        WebhookAlertSink::new("https://h.example/secret-token", Duration::from_secs(1)).unwrap()
    );
    assert!(!debug.contains("secret-token"));
}
