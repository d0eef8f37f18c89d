//! Compose's variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`
//! (unset or empty), `${VAR-default}` (unset), `${VAR:?err}` / `${VAR?err}`
//! (the variable or nothing), `$$` for a literal `$`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_norway::Value;

/// `KEY=VALUE` lines of an `.env` file (missing file: nothing).
pub fn read_dotenv(path: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// Interpolates every string in the document (keys are left alone).
pub fn interpolate(v: &mut Value, env: &dyn Fn(&str) -> Option<String>) {
    match v {
        Value::String(s) => *s = substitute(s, env),
        Value::Sequence(items) => items.iter_mut().for_each(|x| interpolate(x, env)),
        Value::Mapping(m) => m.iter_mut().for_each(|(_, x)| interpolate(x, env)),
        Value::Tagged(t) => interpolate(&mut t.value, env),
        _ => {}
    }
}

/// One string, interpolated.
pub fn substitute(s: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let Some(close) = matching_brace(r) else {
                out.push_str(&rest[pos..]);
                return out;
            };
            out.push_str(&braced(&r[..close], env));
            rest = &r[close + 1..];
        } else {
            let n = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if n == 0 {
                out.push('$');
            } else {
                out.push_str(&env(&after[..n]).unwrap_or_default());
            }
            rest = &after[n..];
        }
    }
    out.push_str(rest);
    out
}

/// The `}` closing a `${` whose body starts `r`, nested `${...}` skipped.
fn matching_brace(r: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in r.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn braced(expr: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let name_end = expr
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(expr.len());
    let (name, op) = expr.split_at(name_end);
    let val = env(name);
    let nested = |d: &str| substitute(d, env);
    if let Some(d) = op.strip_prefix(":-") {
        val.filter(|v| !v.is_empty()).unwrap_or_else(|| nested(d))
    } else if let Some(d) = op.strip_prefix('-') {
        val.unwrap_or_else(|| nested(d))
    } else if let Some(d) = op.strip_prefix(":+") {
        val.filter(|v| !v.is_empty())
            .map(|_| nested(d))
            .unwrap_or_default()
    } else if let Some(d) = op.strip_prefix('+') {
        val.map(|_| nested(d)).unwrap_or_default()
    } else {
        val.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compose's defaults: `:-` for unset or empty, `-` for unset only.
    #[test]
    fn defaults_as_compose_applies_them() {
        let env = |k: &str| match k {
            "SET" => Some("1".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(substitute("${UNSET:-8004}", &env), "8004");
        assert_eq!(substitute("${EMPTY:-8004}", &env), "8004");
        assert_eq!(substitute("${EMPTY-8004}", &env), "");
        assert_eq!(substitute("a${SET}b$SET/$$x", &env), "a1b1/$x");
        assert_eq!(substitute("${UNSET:-${SET}}", &env), "1");
    }
}
