//! The config file as written: each known key read from the JSON object
//! with its expected shape, so a wrong type is reported as
//! `models[1].upstream_model_id = 5: expected a string or a list of strings`
//! rather than in serde's internal terms. `_comment*` keys are ignored;
//! other unknown keys become warnings (an operator's extra fields load).
//!
//! A JSON `null` counts as absent, as in the Go original.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::{kind_of, shown, shown_unless_key, At, ConfigError};

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
            // `what` is the entry's whole path (`models[1]`), not a field
            // under it.
            other => Err(At {
                path: String::new(),
                ..at
            }
            .invalid(
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

    /// A whole number in `range` (`what` it counts: "tokens"), with
    /// the range in the error for a fraction, a negative or a huge number.
    pub fn whole(
        &self,
        key: &str,
        what: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ConfigError> {
        let allowed = format!(" from {} to {}", range.start(), range.end());
        self.whole_allowed(key, what, &allowed, range)
    }

    /// [`Self::whole`] where the error says which values are allowed in
    /// words of the caller's (`allowed` follows `what`: `": 0 (off), or
    /// from 1024 to 124000"`), for a field refusing part of `range` itself.
    pub fn whole_allowed(
        &self,
        key: &str,
        what: &str,
        allowed: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ConfigError> {
        let Some(v) = self.value(key) else {
            return Ok(None);
        };
        match v.as_u64() {
            Some(n) if range.contains(&n) => Ok(Some(n)),
            _ => {
                let mut why = format!("must be a whole number of {what}{allowed}");
                // Advice only when the plain form would be accepted: -0.0
                // was told to be written -0, refused too.
                let fits = v
                    .as_f64()
                    .is_some_and(|f| f >= *range.start() as f64 && f <= *range.end() as f64);
                if fits {
                    why.push_str(&written_plainly(v));
                }
                if let Some(n) = v.as_str().and_then(|t| quoted_whole(t, what)) {
                    if range.contains(&n) {
                        why.push_str(&format!(" (write it as a number, without quotes: {n})"));
                    }
                }
                Err(self.at.invalid(key, shown(v), why))
            }
        }
    }

    /// A list of strings, each element checked on its own, so an error
    /// names the element (`id_aliases[2]`) and what it is.
    pub fn list_of_strings(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        self.list_of(key, "string", |v| v.as_str().map(str::to_string))
    }

    /// A list of numbers, each element checked on its own.
    pub fn list_of_numbers(&self, key: &str) -> Result<Option<Vec<f64>>, ConfigError> {
        self.list_of(key, "number", Value::as_f64)
    }

    fn list_of<T>(
        &self,
        key: &str,
        expected: &str,
        item: impl Fn(&Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>, ConfigError> {
        let Some(v) = self.value(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(self.at.invalid(
                key,
                shown(v),
                format!("expected a list of {expected}s [...], found {}", kind_of(v)),
            ));
        };
        let mut out = Vec::with_capacity(items.len());
        for (j, v) in items.iter().enumerate() {
            match item(v) {
                Some(t) => out.push(t),
                None => {
                    return Err(self.at.invalid(
                        &format!("{key}[{j}]"),
                        shown(v),
                        format!("expected a {expected}, found {}", kind_of(v)),
                    ))
                }
            }
        }
        Ok(Some(out))
    }

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

    /// Keys not in `known`: a near miss of a known key (`api_key_envv`,
    /// `Port`, `upstream_model` for `upstream_model_id`) is refused, since
    /// goproxy would silently run without the field the operator meant to
    /// set, and so is any unknown key holding what looks like a key (a
    /// secret pasted into the file as `api_key` or `token`: goproxy would
    /// send none); anything else is a warning (`_comment...` keys are
    /// silent).
    pub fn unknown_keys(
        &self,
        known: &[&str],
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        for key in self.obj.keys() {
            if key.starts_with("_comment") || known.contains(&key.as_str()) {
                continue;
            }
            let shown_key = shown_field(key);
            let value = &self.obj[key];
            if let Some(meant) = near_miss(key, known) {
                return Err(self.at.invalid(
                    &shown_key,
                    shown_unless_key(value),
                    format!("unknown key; did you mean {meant}? (as written it is ignored)"),
                ));
            }
            if names_a_secret(key) && value.as_str().is_some_and(super::endpoints::looks_like_key) {
                return Err(self.at.invalid(
                    &shown_key,
                    shown_unless_key(value),
                    "unknown key holding what looks like a key: goproxy reads keys only from \
                     environment variables (as written, none is sent); put the key in one and \
                     name that variable in api_key_env (or client_api_keys_env), then remove \
                     this line",
                ));
            }
            // With the model or endpoint it is in: an index alone is
            // hard to find among many.
            warnings.push(format!(
                "unknown key {} ignored{}",
                self.at.path_of(&shown_key),
                self.at.context
            ));
        }
        Ok(())
    }
}

/// Whether a field's name says it holds a secret (`api_key`, `token`,
/// `Authorization`, `password`).
fn names_a_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "passw",
        "auth",
        "bearer",
        "credential",
    ]
    .iter()
    .any(|w| key.contains(w))
}

/// The known key `key` is a misspelling of: the same but for case and
/// `-`/`_`, within two edits (one for keys under 6 characters: `hots`,
/// `prot`, `nmae`; a swap of neighbours is one edit), or the same words
/// but for some left off or added at the end, two or more in common
/// (`upstream_model` for `upstream_model_id`, `api_key` for
/// `api_key_env`, `input_price_per_mtok_usd`).
fn near_miss<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let folded = key.to_ascii_lowercase().replace('-', "_");
    let words: Vec<&str> = folded.split('_').filter(|w| !w.is_empty()).collect();
    known.iter().copied().find(|k| {
        let allowed = if k.len() >= 6 { 2 } else { 1 };
        let known_words: Vec<&str> = k.split('_').collect();
        let common = words
            .iter()
            .zip(&known_words)
            .take_while(|(a, b)| a == b)
            .count();
        let cut_short = common >= 2 && common == words.len().min(known_words.len());
        folded == *k
            || (k.len() >= 3 && strsim::damerau_levenshtein(&folded, k) <= allowed)
            || cut_short
    })
}

/// A key as an error or warning shows it: as it is when plain, else
/// quoted and escaped, and hidden when it looks like a pasted secret.
fn shown_field(key: &str) -> String {
    if super::endpoints::looks_like_key(key) {
        return "(a key that looks like a secret)".into();
    }
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        shown(&Value::String(key.into()))
    }
}

/// For a whole number written as a fraction or with an exponent
/// (`1048576.0`, `1e3`), what to write instead; empty otherwise.
pub(crate) fn written_plainly(v: &Value) -> String {
    super::error::whole_as_fraction(v).map_or_else(String::new, |f| {
        format!(" (write it without a decimal point or exponent: {f})")
    })
}

/// The whole number a quoted value means: `"4096"`, or for bytes a size
/// with a unit as operators write them elsewhere (`"256MiB"`, `"10 MB"`,
/// `"1g"`: nginx reads `k`/`m`/`g` as powers of 1024, and so does this).
fn quoted_whole(text: &str, what: &str) -> Option<u64> {
    let t = text.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Some(n);
    }
    if what != "bytes" {
        return None;
    }
    let digits = t.find(|c: char| !c.is_ascii_digit()).filter(|&i| i > 0)?;
    let n: u64 = t[..digits].parse().ok()?;
    let unit = t[digits..].trim().to_ascii_lowercase();
    let shift = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}
