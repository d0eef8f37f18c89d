//! The config file as written: each known key read from the JSON object
//! with its expected shape, so a wrong type is reported as
//! `models[1].upstream_model_id = 5: expected a string or a list of strings`
//! rather than in serde's internal terms. `_comment*` keys are ignored;
//! other unknown keys become warnings (an operator's extra fields load).
//!
//! A JSON `null` counts as absent, as in the Go original.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::{kind_of, shown, At, ConfigError};

/// One JSON object being read, with where it sits for error messages.
pub(crate) struct Reader<'a> {
    obj: &'a Map<String, Value>,
    /// Where this object sits (path prefix and entry name).
    pub at: At,
}

impl<'a> Reader<'a> {
    /// Read `v` as an object; `what` names it when it is not one.
    pub fn new(v: &'a Value, at: At, what: &str) -> Result<Self, ConfigError> {
        match v {
            Value::Object(obj) => Ok(Reader { obj, at }),
            other => Err(at.invalid(
                what,
                shown(other),
                format!("expected an object {{...}}, found {}", kind_of(other)),
            )),
        }
    }

    /// The raw value of `key`, `None` when absent or null.
    pub fn value(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    /// `key` as a `T`; `expected` describes `T` to the operator
    /// ("a number of seconds").
    pub fn get<T: DeserializeOwned>(
        &self,
        key: &str,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        let Some(v) = self.value(key) else {
            return Ok(None);
        };
        T::deserialize(v).map(Some).map_err(|_| {
            self.at.invalid(
                key,
                shown(v),
                format!("expected {expected}, found {}", kind_of(v)),
            )
        })
    }

    /// A string field.
    pub fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        self.get(key, "a string")
    }

    /// A number field (any JSON number).
    pub fn number(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        self.get(key, "a number")
    }

    /// A field that is one string or a list of strings.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.value(key) {
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(_) => self.get(key, "a string or a list of strings"),
            None => Ok(None),
        }
    }

    /// A list field whose entries are objects, each read by the caller.
    pub fn list(&self, key: &str) -> Result<&'a [Value], ConfigError> {
        match self.value(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(self.at.invalid(
                key,
                shown(other),
                format!("expected a list [...], found {}", kind_of(other)),
            )),
        }
    }

    /// Warn about keys not in `known` (and not `_comment*`).
    pub fn unknown_keys(&self, known: &[&str], warnings: &mut Vec<String>) {
        for key in self.obj.keys() {
            if !key.starts_with("_comment") && !known.contains(&key.as_str()) {
                warnings.push(format!("unknown key {} ignored", self.at.path_of(key)));
            }
        }
    }
}
