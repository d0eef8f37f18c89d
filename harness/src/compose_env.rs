//! Compose's variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`
//! (unset or empty), `${VAR-default}` (unset), `${VAR:?err}` / `${VAR?err}`
//! (the variable or nothing), `$$` for a literal `$`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_norway::Value;

/// `KEY=VALUE` (or `KEY: VALUE`) lines of an `.env` file as compose reads
/// them (missing file: nothing): a value not in single quotes may name
/// variables (`${G2}`, `${G:-6m}`), looked up among the lines above it,
/// then the process environment.
pub fn read_dotenv(path: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    let mut env = BTreeMap::new();
    let lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.strip_prefix("export ").map_or(l, str::trim_start));
    for line in lines {
        let Some(sep) = line.find(['=', ':']) else {
            continue;
        };
        let (key, raw) = (line[..sep].trim(), line[sep + 1..].trim());
        let value = dotenv_value(raw);
        let value = if raw.starts_with('\'') {
            value.to_string()
        } else {
            let above = |k: &str| env.get(k).cloned().or_else(|| std::env::var(k).ok());
            substitute(value, &above)
        };
        env.insert(key.to_string(), value);
    }
    env
}

/// One `.env` value as compose reads it: inside its quotes when quoted;
/// otherwise up to a `#` that follows a space (an inline comment).
fn dotenv_value(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(rest) = v.strip_prefix(q) {
            return rest.find(q).map_or(rest, |end| &rest[..end]);
        }
    }
    let comment = v
        .char_indices()
        .find(|&(i, c)| c == '#' && v[..i].ends_with([' ', '\t']))
        .map_or(v.len(), |(i, _)| i);
    v[..comment].trim_end()
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

    /// `.env` values as compose reads them: inline comments, quotes, `export`.
    #[test]
    fn dotenv_values_as_compose_reads_them() {
        assert_eq!(dotenv_value("8004  # the new port"), "8004");
        assert_eq!(dotenv_value("8004\t# tab"), "8004");
        assert_eq!(dotenv_value("a#b"), "a#b");
        assert_eq!(dotenv_value("\"8004 # kept\" # comment"), "8004 # kept");
        assert_eq!(dotenv_value("'x'"), "x");
        let dir = std::env::temp_dir().join(format!("dotenv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(".env"),
            "export PORT=8004 # new\nG2=6m\nGRACE=${G2}\nG3=${NONE_SUCH_VAR_X:-5m}\nLIT='${G2}'\nCOLON: 30s\n",
        )
        .unwrap();
        let env = read_dotenv(&dir.join(".env"));
        std::fs::remove_dir_all(&dir).unwrap();
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("PORT"), Some("8004"));
        assert_eq!(
            (get("GRACE"), get("G3")),
            (Some("6m"), Some("5m")),
            "expanded"
        );
        assert_eq!(get("LIT"), Some("${G2}"), "single quotes are literal");
        assert_eq!(get("COLON"), Some("30s"), "KEY: value");
    }
}
