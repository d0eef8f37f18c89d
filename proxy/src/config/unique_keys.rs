//! Duplicate keys in one JSON object, refused: JSON parsers (serde_json,
//! Go's encoding/json) silently keep the last, so a config with `"port"`
//! twice runs on a port the operator may not have meant. Checked by a
//! walk over the text that builds nothing, so the error carries the
//! duplicate's line and column.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Parses any JSON value, failing on the first object with a key twice.
pub(crate) struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Walk {
            path: "",
            keep: false,
        }
        .deserialize(d)?;
        Ok(UniqueKeys)
    }
}

/// One value at `path` (`models[2].upstream_model_id`; empty at the top);
/// its text is kept when `keep` (an object's `id` or `name`, to name the
/// object in the error).
struct Walk<'p> {
    path: &'p str,
    keep: bool,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, s: &str) -> Result<Option<String>, E> {
        Ok(self.keep.then(|| s.to_string()))
    }
    fn visit_unit<E>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<String>, A::Error> {
        for i in 0.. {
            let path = format!("{}[{i}]", self.path);
            let item = Walk {
                path: &path,
                keep: false,
            };
            if seq.next_element_seed(item)?.is_none() {
                break;
            }
        }
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let mut seen = HashSet::new();
        let mut id: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(duplicate(self.path, &key, id.as_deref())));
            }
            let path = member_path(self.path, &key);
            let naming = key == "id" || (key == "name" && id.is_none());
            let value = map.next_value_seed(Walk {
                path: &path,
                keep: naming,
            })?;
            if naming && value.is_some() {
                id = value;
            }
        }
        Ok(None)
    }
}

/// The error for `key` twice in the object at `path`, named by its `id`
/// (or `name`) when that came before the duplicate.
fn duplicate(path: &str, key: &str, id: Option<&str>) -> String {
    use super::error::{shown, shown_unless_key};
    use serde_json::Value;
    let key = shown_unless_key(&Value::String(key.into()));
    let place = if path.is_empty() {
        "the top-level object".to_string()
    } else {
        path.to_string()
    };
    // An entry of the top-level lists (`models[1]`), named as the other
    // config errors name it.
    let kind = match path.split_once('[') {
        Some(("models", i)) if !i.contains('.') => Some("model"),
        Some(("endpoints", i)) if !i.contains('.') => Some("endpoint"),
        _ => None,
    };
    let named = match (kind, id) {
        (Some(kind), Some(id)) => format!(" ({kind} {})", shown(&Value::String(id.into()))),
        _ => String::new(),
    };
    format!("duplicate key {key} in {place}{named} (JSON keeps only the last; remove one)")
}

/// `path.key`, or `path["odd key"]` for a key that is not a plain word.
fn member_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (plain, path.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{path}.{key}"),
        (false, _) => format!("{path}[{}]", serde_json::Value::String(key.into())),
    }
}
