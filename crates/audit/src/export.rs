//! Exporters: a record as an OCSF event or with ECS field names.
//!
//! Pure functions from a [`Record`] to a `serde_json::Value`, so a host can ship the log to
//! a SIEM in the schema it expects. Only event records export (`None` for checkpoint and
//! prune records). Fields mcpsec has and the schema lacks go under `unmapped` (OCSF) or
//! `mcpsec` (ECS).
//!
//! - OCSF 1.3: authentication and session kinds become class 3002 *Authentication*
//!   (category 3, Identity & Access Management); everything else class 6003 *API Activity*
//!   (category 6, Application Activity). Each export carries its class's required
//!   attributes whatever the event holds: 3002 always has `user` and `service` (the
//!   writing instance); 6003 always has `actor`, `api` and `src_endpoint`. Who is not
//!   known is said so (`user.type_id` 0, name `anonymous` or `unknown`), an API key is the
//!   user's `credential_uid`, a pseudonymised source is the endpoint's `uid`, and an
//!   unknown source is an endpoint named `unknown` (the tests check this against the
//!   schema's required-attribute lists, `tests/vectors/ocsf-1.3.0-required.json`).
//! - ECS 8: `@timestamp`, `event.*`, `user.id`, `organization.id`, `source.ip`,
//!   `http.request.id`, `service.node.name`.

use crate::record::{Entry, Record};
use mcpsec_core::{Actor, EventKind, Outcome, SecurityEvent, Severity};
use serde_json::{Map, Value, json};
use std::time::UNIX_EPOCH;

/// OCSF schema version the exporter follows.
pub const OCSF_VERSION: &str = "1.3.0";

/// The OCSF class a kind maps to: 3002 Authentication or 6003 API Activity.
pub fn ocsf_class(kind: EventKind) -> u32 {
    let name = kind.as_str();
    if name.starts_with("authn_") || name.starts_with("session_") {
        3002
    } else {
        6003
    }
}

fn ocsf_activity(kind: EventKind) -> (u32, &'static str) {
    use EventKind::*;
    if ocsf_class(kind) == 3002 {
        return match kind {
            AuthnLoginSuccess | AuthnLoginFail | AuthnLoginFailMax | AuthnLoginLock
            | AuthnMfaSuccess | AuthnMfaFail | AuthnMfaRecoveryUsed => (1, "Logon"),
            SessionExpired => (2, "Logoff"),
            AuthnTokenCreated | SessionCreated | SessionRenewed => (3, "Authentication Ticket"),
            _ => (99, "Other"),
        };
    }
    match kind {
        UserCreated => (1, "Create"),
        SensitiveRead => (2, "Read"),
        SensitiveUpdate
        | AuthzChange
        | PrivilegePermissionsChanged
        | McpConfigChanged
        | SysCryptoKeyRotated => (3, "Update"),
        SensitiveDelete | UserDeleted => (4, "Delete"),
        _ => (99, "Other"),
    }
}

fn severity_id(severity: Severity) -> (u32, &'static str) {
    match severity {
        Severity::Critical => (5, "Critical"),
        Severity::Warning => (3, "Medium"),
        _ => (1, "Informational"),
    }
}

fn millis(record_time: std::time::SystemTime) -> u64 {
    record_time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The OCSF `user` object for whoever acted; never empty (the schema requires one of
/// `account`, `name`, `uid`).
fn ocsf_user(actor: &Actor) -> Value {
    match actor {
        Actor::User { user } => json!({"uid": user.as_str()}),
        Actor::ApiKey {
            key,
            owner: Some(owner),
        } => json!({"uid": owner.as_str(), "credential_uid": key.as_str()}),
        Actor::ApiKey { key, owner: None } => json!({
            "name": "unknown",
            "type_id": 0,
            "type": "Unknown",
            "credential_uid": key.as_str(),
        }),
        Actor::Service { service } => {
            json!({"name": service.as_str(), "type_id": 3, "type": "System"})
        }
        _ => json!({"name": "anonymous", "type_id": 0, "type": "Unknown"}),
    }
}

/// The OCSF source endpoint: the address, else its pseudonym, else `None`.
fn ocsf_source(event: &SecurityEvent, pseudonym: Option<&str>) -> Option<Value> {
    match (event.source, pseudonym) {
        (Some(ip), _) => Some(json!({"ip": ip.to_string()})),
        (None, Some(p)) => Some(json!({"uid": p})),
        (None, None) => None,
    }
}

fn user_of(event: &SecurityEvent) -> Option<&str> {
    match &event.actor {
        Actor::User { user } => Some(user.as_str()),
        Actor::ApiKey { owner, .. } => owner.as_ref().map(|u| u.as_str()),
        _ => None,
    }
}

fn parts(record: &Record) -> Option<(&SecurityEvent, Option<&str>)> {
    match &record.entry {
        Entry::Event {
            event,
            source_pseudonym,
        } => Some((event, source_pseudonym.as_ref().map(|p| p.as_str()))),
        _ => None,
    }
}

/// The record as an OCSF event (class 3002 or 6003); `None` for non-event records.
pub fn to_ocsf(record: &Record) -> Option<Value> {
    let (event, pseudonym) = parts(record)?;
    let class_uid = ocsf_class(event.kind);
    let (class_name, category_uid, category_name) = if class_uid == 3002 {
        ("Authentication", 3, "Identity & Access Management")
    } else {
        ("API Activity", 6, "Application Activity")
    };
    let (activity_id, activity_name) = ocsf_activity(event.kind);
    let (sev_id, sev_name) = severity_id(event.severity);
    let (status_id, status) = match event.outcome {
        Outcome::Success => (1, "Success"),
        _ => (2, "Failure"),
    };
    let mut out = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": u64::from(class_uid) * 100 + u64::from(activity_id),
        "time": millis(event.time),
        "severity_id": sev_id,
        "severity": sev_name,
        "status_id": status_id,
        "status": status,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "mcpsec", "vendor_name": "mcpsec"},
            "uid": record.hash.to_string(),
            "sequence": record.seq,
            "log_name": record.instance.as_str(),
            "event_code": event.kind.as_str(),
            "logged_time": millis(record.time),
        },
    });
    let Value::Object(obj) = &mut out else {
        return None;
    };
    let user = ocsf_user(&event.actor);
    if class_uid == 3002 {
        obj.insert("user".into(), user);
        // The service the user authenticates to: this log's writing instance.
        obj.insert("service".into(), json!({"name": record.instance.as_str()}));
    } else {
        obj.insert("actor".into(), json!({"user": user}));
    }
    if let Some(reason) = event.reason {
        obj.insert("status_code".into(), reason.as_str().into());
    }
    match ocsf_source(event, pseudonym) {
        Some(endpoint) => {
            obj.insert("src_endpoint".into(), endpoint);
        }
        // Required in API Activity: an endpoint that says it is unknown.
        None if class_uid == 6003 => {
            obj.insert("src_endpoint".into(), json!({"name": "unknown"}));
        }
        None => {}
    }
    if let Some(r) = &event.resource {
        let mut res = Map::new();
        res.insert("type".into(), r.kind.as_str().into());
        if let Some(id) = &r.id {
            res.insert("uid".into(), id.as_str().into());
        }
        obj.insert("resources".into(), Value::Array(vec![Value::Object(res)]));
    }
    if class_uid == 6003 {
        let operation = event
            .action
            .as_ref()
            .map_or(event.kind.as_str(), |a| a.as_str());
        let mut api = json!({"operation": operation});
        if let (Some(id), Value::Object(api)) = (&event.request_id, &mut api) {
            api.insert("request".into(), json!({"uid": id.as_str()}));
        }
        obj.insert("api".into(), api);
    }
    let mut unmapped = Map::new();
    if let Some(org) = &event.org {
        unmapped.insert("org".into(), org.as_str().into());
    }
    if let Some(p) = pseudonym {
        unmapped.insert("source_pseudonym".into(), p.into());
    }
    if let Actor::ApiKey { key, .. } = &event.actor {
        unmapped.insert("api_key_id".into(), key.as_str().into());
    }
    if class_uid == 3002
        && let Some(id) = &event.request_id
    {
        unmapped.insert("request_id".into(), id.as_str().into());
    }
    if !unmapped.is_empty() {
        obj.insert("unmapped".into(), Value::Object(unmapped));
    }
    Some(out)
}

fn ecs_category(kind: EventKind) -> (&'static str, &'static str) {
    use EventKind::*;
    match kind {
        AuthnLoginSuccess | AuthnMfaSuccess => ("authentication", "start"),
        SessionCreated | SessionRenewed => ("session", "start"),
        SessionExpired => ("session", "end"),
        AuthzFail | McpToolDenied => ("iam", "denied"),
        AuthzChange | PrivilegePermissionsChanged | AuthnMfaChanged => ("iam", "change"),
        AuthzAdmin => ("iam", "admin"),
        UserCreated => ("iam", "creation"),
        UserDeleted => ("iam", "deletion"),
        McpConfigChanged | SysCryptoKeyRotated => ("configuration", "change"),
        MaliciousDirectReference | InputValidationFail | ExcessRateLimitExceeded => {
            ("intrusion_detection", "info")
        }
        _ if kind.as_str().starts_with("authn_") => ("authentication", "info"),
        _ => ("api", "info"),
    }
}

/// The record with ECS field names; `None` for non-event records.
pub fn to_ecs(record: &Record) -> Option<Value> {
    let (event, pseudonym) = parts(record)?;
    let (category, kind_type) = ecs_category(event.kind);
    let severity = match event.severity {
        Severity::Critical => 99,
        Severity::Warning => 47,
        _ => 21,
    };
    let time = humantime::format_rfc3339_millis(event.time).to_string();
    let mut ev = json!({
        "kind": "event",
        "category": [category],
        "type": [kind_type],
        "action": event.kind.as_str(),
        "outcome": event.outcome.as_str(),
        "severity": severity,
        "sequence": record.seq,
        "id": record.hash.to_string(),
        "created": humantime::format_rfc3339_millis(record.time).to_string(),
    });
    if let (Some(reason), Value::Object(ev)) = (event.reason, &mut ev) {
        ev.insert("reason".into(), reason.as_str().into());
    }
    let mut out = json!({
        "@timestamp": time,
        "ecs": {"version": "8.11.0"},
        "event": ev,
        "service": {"name": "mcpsec", "node": {"name": record.instance.as_str()}},
        "log": {"level": event.severity.as_str()},
    });
    let Value::Object(obj) = &mut out else {
        return None;
    };
    if let Some(user) = user_of(event) {
        obj.insert("user".into(), json!({"id": user}));
    }
    if let Some(org) = &event.org {
        obj.insert("organization".into(), json!({"id": org.as_str()}));
    }
    if let Some(ip) = event.source {
        obj.insert("source".into(), json!({"ip": ip.to_string()}));
    }
    if let Some(id) = &event.request_id {
        obj.insert("http".into(), json!({"request": {"id": id.as_str()}}));
    }
    let mut ours = Map::new();
    if let Some(p) = pseudonym {
        ours.insert("source_pseudonym".into(), p.into());
    }
    if let Actor::ApiKey { key, .. } = &event.actor {
        ours.insert("api_key_id".into(), key.as_str().into());
    }
    if let Actor::Service { service } = &event.actor {
        ours.insert("service_id".into(), service.as_str().into());
    }
    if let Some(r) = &event.resource {
        ours.insert("resource_kind".into(), r.kind.as_str().into());
        if let Some(id) = &r.id {
            ours.insert("resource_id".into(), id.as_str().into());
        }
    }
    if let Some(action) = &event.action {
        ours.insert("action".into(), action.as_str().into());
    }
    if !ours.is_empty() {
        obj.insert("mcpsec".into(), Value::Object(ours));
    }
    Some(out)
}
