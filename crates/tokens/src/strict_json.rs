//! JSON decoding that refuses duplicate member names at any depth.
//!
//! `{"sub":"alice","sub":"admin"}` means different things to different parsers (first
//! wins, last wins, error); RFC 7515 §5.2 lets a JWS implementation reject it, and we do,
//! so that no two components of a system can read two different subjects from one token.

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A JSON value decoded with duplicate members refused.
pub(crate) struct StrictValue(pub(crate) Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(StrictValue(Value::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if object.insert(key, value).is_some() {
                return Err(A::Error::custom("duplicate member"));
            }
        }
        Ok(StrictValue(Value::Object(object)))
    }
}

/// Decodes `bytes` as a JSON object, refusing duplicates. `Err(true)` means a duplicate
/// member, `Err(false)` any other failure.
pub(crate) fn object(bytes: &[u8]) -> Result<Map<String, Value>, bool> {
    match serde_json::from_slice::<StrictValue>(bytes) {
        Ok(StrictValue(Value::Object(map))) => Ok(map),
        Ok(_) => Err(false),
        Err(e) => Err(e.to_string().contains("duplicate member")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        assert_eq!(object(br#"{"a":1,"a":2}"#), Err(true));
        assert_eq!(object(br#"{"a":{"b":1,"b":1}}"#), Err(true));
        assert_eq!(object(br#"{"a":[{"b":1,"b":1}]}"#), Err(true));
        assert_eq!(object(br#"[1]"#), Err(false));
        assert_eq!(object(br#"{"a":1"#), Err(false));
        assert!(object(br#"{"a":1,"b":[1,"x",null,true,1.5]}"#).is_ok());
    }
}
