//! OCSF and ECS exports, checked field by field.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

use mcpsec_audit::{
    ChainConfig, ChainSink, CheckpointKey, CheckpointPolicy, FileSinkConfig, MemoryChainStorage,
    to_ecs, to_ocsf,
};
use mcpsec_core::{
    Actor, EventKind, KeyId, Label, ManualClock, OrgId, Outcome, ReasonCode, RequestId, ResourceId,
    SecurityEvent, ServiceId, UserId,
};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

async fn records(events: Vec<SecurityEvent>) -> Vec<mcpsec_audit::Record> {
    let clock = ManualClock::at_unix(1_767_225_600);
    let key = Arc::new(CheckpointKey::generate().unwrap());
    let chain = ChainConfig::new(ServiceId::new("api-1").unwrap()).with_checkpoints(
        key,
        CheckpointPolicy {
            every_records: 100,
            every: Duration::from_secs(3600),
        },
    );
    let storage = MemoryChainStorage::new();
    let sink = ChainSink::with_storage(
        Box::new(storage.clone()),
        FileSinkConfig::new(chain, Arc::new(clock)),
    )
    .unwrap();
    for e in events {
        sink.append(e).await.unwrap();
    }
    // Closing writes the final checkpoint.
    sink.close().unwrap();
    storage.records()
}

fn at() -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_767_225_600_250)
}

#[tokio::test]
async fn login_failure_is_ocsf_authentication_and_ecs_authentication() {
    let login = SecurityEvent::new(EventKind::AuthnLoginFail, Outcome::Failure, at())
        .with_actor(Actor::ApiKey {
            key: KeyId::new("k1").unwrap(),
            owner: Some(UserId::new("ada").unwrap()),
        })
        .with_org(OrgId::new("acme").unwrap())
        .with_source("192.0.2.7".parse().unwrap())
        .with_reason(ReasonCode::SecretMismatch)
        .with_request_id(RequestId::new("req-1").unwrap());
    let all = records(vec![login]).await;
    let ocsf = to_ocsf(&all[0]).unwrap();
    assert_eq!(ocsf["class_uid"], 3002);
    assert_eq!(ocsf["category_uid"], 3);
    assert_eq!(ocsf["activity_id"], 1);
    assert_eq!(ocsf["type_uid"], 300_201);
    assert_eq!(ocsf["time"], 1_767_225_600_250u64);
    assert_eq!(ocsf["status_id"], 2);
    assert_eq!(ocsf["severity_id"], 3);
    assert_eq!(ocsf["status_code"], "secret_mismatch");
    assert_eq!(ocsf["user"], json!({"uid": "ada", "credential_uid": "k1"}));
    assert_eq!(ocsf["service"], json!({"name": "api-1"}));
    assert_eq!(ocsf["src_endpoint"], json!({"ip": "192.0.2.7"}));
    assert_eq!(ocsf["metadata"]["sequence"], 1);
    assert_eq!(ocsf["metadata"]["uid"], all[0].hash.to_string());
    assert_eq!(ocsf["metadata"]["event_code"], "authn_login_fail");
    assert_eq!(ocsf["unmapped"]["api_key_id"], "k1");
    assert_eq!(ocsf["unmapped"]["org"], "acme");

    let ecs = to_ecs(&all[0]).unwrap();
    assert_eq!(ecs["@timestamp"], "2026-01-01T00:00:00.250Z");
    assert_eq!(ecs["event"]["category"], json!(["authentication"]));
    assert_eq!(ecs["event"]["action"], "authn_login_fail");
    assert_eq!(ecs["event"]["outcome"], "failure");
    assert_eq!(ecs["event"]["reason"], "secret_mismatch");
    assert_eq!(ecs["event"]["sequence"], 1);
    assert_eq!(ecs["user"]["id"], "ada");
    assert_eq!(ecs["organization"]["id"], "acme");
    assert_eq!(ecs["source"]["ip"], "192.0.2.7");
    assert_eq!(ecs["http"]["request"]["id"], "req-1");
    assert_eq!(ecs["service"]["node"]["name"], "api-1");
    assert_eq!(ecs["mcpsec"]["api_key_id"], "k1");
    // Checkpoints do not export.
    assert!(to_ocsf(&all[1]).is_none() && to_ecs(&all[1]).is_none());
}

#[tokio::test]
async fn config_change_is_ocsf_api_activity_update() {
    let change = SecurityEvent::new(EventKind::McpConfigChanged, Outcome::Success, at())
        .with_user(UserId::new("ada").unwrap())
        .with_resource(
            Label::new("mcp_config").unwrap(),
            Some(ResourceId::new("cfg-1").unwrap()),
        )
        .with_action(Label::new("mcp.configure").unwrap())
        .with_request_id(RequestId::new("req-2").unwrap());
    let all = records(vec![change]).await;
    let ocsf = to_ocsf(&all[0]).unwrap();
    assert_eq!(ocsf["class_uid"], 6003);
    assert_eq!(ocsf["category_uid"], 6);
    assert_eq!(ocsf["activity_id"], 3);
    assert_eq!(ocsf["type_uid"], 600_303);
    assert_eq!(ocsf["status_id"], 1);
    assert_eq!(ocsf["actor"]["user"]["uid"], "ada");
    assert_eq!(ocsf["api"]["operation"], "mcp.configure");
    assert_eq!(ocsf["api"]["request"]["uid"], "req-2");
    assert_eq!(
        ocsf["resources"],
        json!([{"type": "mcp_config", "uid": "cfg-1"}])
    );
    let ecs = to_ecs(&all[0]).unwrap();
    assert_eq!(ecs["event"]["category"], json!(["configuration"]));
    assert_eq!(ecs["event"]["type"], json!(["change"]));
    assert_eq!(ecs["mcpsec"]["resource_id"], "cfg-1");
}

/// The required-attribute lists of OCSF 1.3.0 for the two classes the exporter emits
/// (tests/vectors/ocsf-1.3.0-required.json says where they come from).
fn ocsf_rules() -> serde_json::Value {
    serde_json::from_str(include_str!("vectors/ocsf-1.3.0-required.json")).unwrap()
}

fn present(object: &serde_json::Value, attribute: &str) -> bool {
    !object.get(attribute).is_none_or(serde_json::Value::is_null)
}

/// Checks `value` (of OCSF type `kind`, or event class `kind`) against `rules`: every
/// required attribute present, every at_least_one group satisfied, and the same for each
/// object-typed attribute present. Returns what is missing.
fn ocsf_violations(
    rules: &serde_json::Value,
    spec: &serde_json::Value,
    value: &serde_json::Value,
    path: &str,
    out: &mut Vec<String>,
) {
    for attribute in spec["required"].as_array().unwrap() {
        let attribute = attribute.as_str().unwrap();
        if !present(value, attribute) {
            out.push(format!("{path}.{attribute} is required"));
        }
    }
    for group in spec["at_least_one"].as_array().unwrap() {
        let group: Vec<&str> = group
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        if !group.iter().any(|a| present(value, a)) {
            out.push(format!("{path}: at least one of {group:?}"));
        }
    }
    let Some(fields) = value.as_object() else {
        return;
    };
    for (attribute, inner) in fields {
        if let Some(kind) = rules["attribute_types"][attribute].as_str() {
            let spec = &rules["objects"][kind];
            ocsf_violations(rules, spec, inner, &format!("{path}.{attribute}"), out);
        }
    }
}

/// Item 28: every event kind, with every kind of actor, with and without a source
/// address, exports with the required attributes of its OCSF class (3002: `user`, and
/// `service` or `dst_endpoint`; 6003: `actor`, `api`, `src_endpoint`).
#[tokio::test]
async fn ocsf_export_carries_each_class_required_fields() {
    let rules = ocsf_rules();
    assert_eq!(rules["ocsf_version"], mcpsec_audit::export::OCSF_VERSION);
    let actors = [
        Actor::User {
            user: UserId::new("ada").unwrap(),
        },
        Actor::ApiKey {
            key: KeyId::new("k1").unwrap(),
            owner: Some(UserId::new("ada").unwrap()),
        },
        Actor::ApiKey {
            key: KeyId::new("k2").unwrap(),
            owner: None,
        },
        Actor::Service {
            service: ServiceId::new("cron").unwrap(),
        },
        Actor::Anonymous,
    ];
    let mut events = Vec::new();
    for kind in EventKind::ALL {
        for actor in &actors {
            for source in [None, Some("192.0.2.7".parse().unwrap())] {
                let mut e =
                    SecurityEvent::new(*kind, Outcome::Failure, at()).with_actor(actor.clone());
                if let Some(ip) = source {
                    e = e.with_source(ip);
                }
                events.push(e);
            }
        }
    }
    let mut violations = Vec::new();
    for record in records(events).await.iter().filter(|r| r.event().is_some()) {
        let ocsf = to_ocsf(record).unwrap();
        let class = ocsf["class_uid"].to_string();
        let spec = &rules["classes"][&class];
        assert!(spec.is_object(), "class {class} has no rules");
        let mut found = Vec::new();
        ocsf_violations(&rules, spec, &ocsf, &class, &mut found);
        if !found.is_empty() {
            violations.push(format!(
                "{} by {:?}: {}",
                record.event().unwrap().kind,
                record.event().unwrap().actor,
                found.join("; ")
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "{} exports miss required OCSF fields, e.g.:\n{}",
        violations.len(),
        violations
            .iter()
            .take(6)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
