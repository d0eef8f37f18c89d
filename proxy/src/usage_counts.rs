//! The token counts of one `usage` object, read by serde straight from the
//! JSON text (or a `Value`) without building a tree: the known keys are
//! kept, everything else is skipped. Parsing the object into a `Value`
//! first was 8% of a small request's instructions.
//!
//! Each count is read as `Value::as_u64` reads it: a non-negative integer,
//! anything else (a string, a float, `null`, an object) counts as absent
//! instead of failing the whole object.

use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The counts a `usage` object may carry (OpenAI's and Anthropic's names).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// OpenAI `prompt_tokens` (cached ones included).
    pub prompt: Option<u64>,
    /// OpenAI `completion_tokens`.
    pub completion: Option<u64>,
    /// OpenAI `prompt_tokens_details.cached_tokens`.
    pub cached: Option<u64>,
    /// Anthropic `input_tokens`.
    pub input: Option<u64>,
    /// Anthropic `output_tokens`.
    pub output: Option<u64>,
    /// Anthropic `cache_creation_input_tokens`.
    pub cache_write: Option<u64>,
    /// Anthropic `cache_read_input_tokens`.
    pub cache_read: Option<u64>,
}

impl<'de> Deserialize<'de> for Counts {
    /// An object (anything else is an error: not a usage object).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(CountsVisitor)
    }
}

struct CountsVisitor;

impl<'de> Visitor<'de> for CountsVisitor {
    type Value = Counts;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a usage object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Counts, M::Error> {
        let mut c = Counts::default();
        while let Some(key) = map.next_key::<Field>()? {
            let slot = match key {
                Field::PromptTokens => &mut c.prompt,
                Field::CompletionTokens => &mut c.completion,
                Field::InputTokens => &mut c.input,
                Field::OutputTokens => &mut c.output,
                Field::CacheCreationInputTokens => &mut c.cache_write,
                Field::CacheReadInputTokens => &mut c.cache_read,
                Field::PromptTokensDetails => {
                    c.cached = map.next_value::<Details>()?.0;
                    continue;
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<Lenient>()?.0;
        }
        Ok(c)
    }
}

/// A usage object's key, matched where it lies in the input (a key read
/// as `Cow<str>` is always copied into a `String`: serde's `Cow` impl
/// deserialises the owned form).
#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    PromptTokens,
    CompletionTokens,
    InputTokens,
    OutputTokens,
    CacheCreationInputTokens,
    CacheReadInputTokens,
    PromptTokensDetails,
    #[serde(other)]
    Other,
}

/// A key of `prompt_tokens_details` (or of any object met as a count).
#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum DetailsField {
    CachedTokens,
    #[serde(other)]
    Other,
}

/// A count: a non-negative integer, anything else absent.
struct Lenient(Option<u64>);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyValue { details: false }).map(Lenient)
    }
}

/// `prompt_tokens_details`: its `cached_tokens` if it is an object.
struct Details(Option<u64>);

impl<'de> Deserialize<'de> for Details {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyValue { details: true }).map(Details)
    }
}

/// Accepts any JSON value. A count is a non-negative integer; with
/// `details`, the count is an object's `cached_tokens` instead. Anything
/// else is skipped and absent.
struct AnyValue {
    details: bool,
}

impl<'de> Visitor<'de> for AnyValue {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_u64<E>(self, v: u64) -> Result<Option<u64>, E> {
        Ok((!self.details).then_some(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Option<u64>, E> {
        Ok(u64::try_from(v).ok().filter(|_| !self.details))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<u64>, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Option<u64>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<u64>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<u64>, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<u64>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Option<u64>, M::Error> {
        let mut cached = None;
        while let Some(key) = map.next_key::<DetailsField>()? {
            if self.details && matches!(key, DetailsField::CachedTokens) {
                cached = map.next_value::<Lenient>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(cached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// From text and from a `Value`, the same counts, each read as
    /// `Value::as_u64` would read it.
    #[test]
    fn counts_are_read_like_as_u64() {
        let text = r#"{"prompt_tokens": 10, "completion_tokens": "5", "x": {"prompt_tokens": 99},
            "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": [1]},
            "input_tokens": -1, "output_tokens": 2.5, "cache_read_input_tokens": null,
            "cache_creation_input_tokens": {"cached_tokens": 7}}"#;
        let from_text: Counts = serde_json::from_str(text).unwrap();
        let value: Value = serde_json::from_str(text).unwrap();
        let from_value = Counts::deserialize(&value).unwrap();
        let expected = Counts {
            prompt: Some(10),
            cached: Some(4),
            ..Counts::default()
        };
        assert_eq!(from_text, expected);
        assert_eq!(from_value, expected);
        for not_details in [
            json!(3),
            json!(null),
            json!([{"cached_tokens": 1}]),
            json!("4"),
        ] {
            let c = Counts::deserialize(&json!({"prompt_tokens_details": not_details})).unwrap();
            assert_eq!(c.cached, None, "{not_details}");
        }
        // Keys are matched after unescaping, as a `String` would be.
        let escaped =
            r#"{"completion\u005ftokens": 3, "prompt_tokens_details": {"cached\u005ftokens": 2}}"#;
        let c: Counts = serde_json::from_str(escaped).unwrap();
        assert_eq!((c.completion, c.cached), (Some(3), Some(2)));
        assert!(serde_json::from_str::<Counts>("[1]").is_err());
        assert!(serde_json::from_str::<Counts>("null").is_err());
    }
}
