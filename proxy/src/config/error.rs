//! Why a config was refused, said in the operator's terms: the file, the
//! field path (`models[2].upstream`), the model or endpoint it belongs to,
//! the value, and what to do. Never a Rust type name.

use serde_json::Value;

/// Why a config file was refused. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config file: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not UTF-8, starts with a byte-order mark, is not valid
    /// JSON, or is not a JSON object.
    #[error("{source_name}:{line}:{column}: {message}")]
    Json {
        /// File name (or other label) of the text.
        source_name: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong, in plain words.
        message: String,
    },
    /// The JSON parsed but a value is not acceptable.
    #[error("{source_name}: {field} = {value}: {reason}{context}")]
    Invalid {
        /// File name (or other label) of the text.
        source_name: String,
        /// Path of the offending field, e.g. `models[2].upstream`.
        field: String,
        /// The offending value, as JSON (or a note when it is hidden).
        value: String,
        /// What is wrong with it.
        reason: String,
        /// The model or endpoint the field belongs to, e.g. ` (model "gpt-4o")`.
        context: String,
    },
}

/// Where a field sits: its path prefix and the entry it belongs to.
#[derive(Debug, Clone, Default)]
pub(crate) struct At {
    /// File name or label.
    pub source: String,
    /// Path prefix, e.g. `models[2].` (empty at top level).
    pub path: String,
    /// ` (model "x")` or empty.
    pub context: String,
}

impl At {
    /// The top level of `source`.
    pub fn top(source: &str) -> At {
        At {
            source: source.to_string(),
            ..At::default()
        }
    }

    /// Entry `i` of list `list`, named `kind "id"` when the id is known.
    pub fn entry(&self, list: &str, i: usize, kind: &str, id: Option<&str>) -> At {
        At {
            source: self.source.clone(),
            path: format!("{list}[{i}]."),
            context: id
                .filter(|s| !s.is_empty())
                .map(|id| format!(" ({kind} {})", shown(&Value::String(id.into()))))
                .unwrap_or_default(),
        }
    }

    /// `field` is wrong: its value `value` (already shown) and why.
    pub fn invalid(
        &self,
        field: &str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            source_name: self.source.clone(),
            field: format!("{}{field}", self.path),
            value: value.into(),
            reason: reason.into(),
            context: self.context.clone(),
        }
    }

    /// Full path of `field` for warnings.
    pub fn path_of(&self, field: &str) -> String {
        format!("{}{field}", self.path)
    }
}

/// Most characters of a value quoted in an error.
const SHOWN_CHARS: usize = 80;

/// A JSON value as shown in an error: compact, cut after 80 characters.
pub(crate) fn shown(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(SHOWN_CHARS) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

/// The JSON type of a value in plain words.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A syntax error from serde_json, with its position.
pub(crate) fn syntax(source: &str, e: &serde_json::Error) -> ConfigError {
    // serde_json says e.g. "expected `,` or `}` at line 3 column 5"; the
    // position is already in front, so keep only the words.
    let full = e.to_string();
    let message = match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    };
    ConfigError::Json {
        source_name: source.to_string(),
        line: e.line(),
        column: e.column(),
        message: format!("invalid JSON: {message}"),
    }
}
