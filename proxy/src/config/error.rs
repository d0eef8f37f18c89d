//! Why a config was refused, said in the operator's terms: the file, the
//! field path (`models[2].upstream`), the model or endpoint it belongs to,
//! the value, and what to do. Never a Rust type name.

use serde_json::Value;

/// Why a config file was refused. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read, or is not a file a config can be.
    #[error("{path}: cannot read config file: {reason}")]
    Read {
        /// The path as given.
        path: String,
        /// Why, in plain words (no OS error numbers).
        reason: String,
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
    // A whole number written as a fraction (`1048576.0`, `1e3`) shows as
    // one, so "must be a whole number" does not contradict it.
    if let Some(f) = whole_as_fraction(v) {
        return format!("{f:.1}");
    }
    if let Some(f) = v.as_f64().filter(|_| v.is_f64()) {
        return shown_number(f);
    }
    // JSON escapes C0 controls but not DEL or C1: written as escapes too,
    // so a config value cannot put terminal escapes on the operator's screen.
    let s: String = v
        .to_string()
        .chars()
        .flat_map(|c| {
            let escaped = c.is_control().then(|| format!("\\u{:04x}", c as u32));
            escaped.map_or_else(|| vec![c], |e| e.chars().collect())
        })
        .collect();
    match s.char_indices().nth(SHOWN_CHARS) {
        // A string cut short still ends in its quote: `"xxx..."`, not an
        // open quote running into the text after it.
        Some((i, _)) if v.is_string() => format!("{}...\"", &s[..i]),
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

/// A whole number written as a fraction or with an exponent (`1048576.0`,
/// `1e3`; JSON keeps no trace of which), small enough to show in full.
pub(crate) fn whole_as_fraction(v: &Value) -> Option<f64> {
    v.as_f64()
        .filter(|f| v.is_f64() && f.fract() == 0.0 && f.abs() < 1e15)
}

/// A number as the operator wrote it in JSON (`1e308`, not 309 digits).
pub(crate) fn shown_number(n: f64) -> String {
    let a = n.abs();
    if a >= 1e15 || (a < 1e-4 && a != 0.0) {
        format!("{n:e}")
    } else {
        n.to_string()
    }
}

/// The JSON type of a value in plain words.
/// [`shown`], unless a string anywhere in `v` looks like a key (someone
/// pasted a key where a name belongs): then only what kind of value it is.
pub(crate) fn shown_unless_key(v: &Value) -> String {
    fn leaks(v: &Value) -> bool {
        match v {
            Value::String(s) => super::endpoints::looks_like_key(s),
            Value::Array(items) => items.iter().any(leaks),
            Value::Object(m) => m
                .iter()
                .any(|(k, v)| leaks(&Value::String(k.clone())) || leaks(v)),
            _ => false,
        }
    }
    if leaks(v) {
        format!("({} hidden: it holds what looks like a key)", kind_of(v))
    } else {
        shown(v)
    }
}

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

/// A syntax error from serde_json in `text`, with its position, and what
/// to do where serde_json's words do not say it (a comment, a lone
/// surrogate).
pub(crate) fn syntax(source: &str, text: &str, e: &serde_json::Error) -> ConfigError {
    // serde_json says e.g. "expected `,` or `}` at line 3 column 5"; the
    // position is already in front, so keep only the words.
    let full = e.to_string();
    let mut message = match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    };
    if message == "recursion limit exceeded" {
        message = "nested more than 128 levels deep".into();
    }
    // Column 0 is serde_json's "before the first character" (after a
    // raw line break in a string): every other position is 1-based.
    let column = e.column().max(1);
    let at = text
        .lines()
        .nth(e.line().saturating_sub(1))
        .and_then(|l| l.get(column - 1..))
        .unwrap_or("")
        .trim_start();
    if at.starts_with("//") || at.starts_with("/*") || at.starts_with('#') {
        message.push_str(
            " (a comment: JSON has none; remove it, or write it as a \"_comment\": \"...\" member)",
        );
    } else if message.contains("hex escape") || message.contains("surrogate") {
        message.push_str(
            " (a \\u escape is 4 hex digits, and one of \\ud800-\\udfff must be one of a pair: \
             write the character itself)",
        );
    }
    ConfigError::Json {
        source_name: source.to_string(),
        line: e.line(),
        column,
        message: format!("invalid JSON: {message}"),
    }
}

/// An I/O error reading a config file, in plain words: what is wrong and
/// what to do, without the OS's error number.
pub(crate) fn read_failure(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => "no such file (check the path, or --config / CONFIG_PATH)".into(),
        ErrorKind::PermissionDenied => {
            "permission denied (goproxy's user must be able to read it)".into()
        }
        ErrorKind::IsADirectory => "it is a directory: give the path of the JSON file in it".into(),
        _ => io_words(e),
    }
}

/// An I/O error's own words, without the OS's error number: `address
/// already in use`, not `Address already in use (os error 98)`.
pub(crate) fn io_words(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_lowercase(),
        None => text,
    }
}
