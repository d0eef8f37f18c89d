//! Endpoints no model uses. Each is warned about; one whose name is a near
//! miss of a name a model looked for in vain (`ohmygtp-openai` for
//! `ohmygpt-openai`, a case variant) is refused: that typo takes a route
//! away from every model of the line (404 on it), and nothing else in the
//! file looks wrong.

use foldhash::HashSet;
use serde_json::Value;

use super::endpoints::Endpoints;
use super::error::{shown, ConfigError};
use super::models::Models;
use super::raw::Reader;

/// Most edits between an endpoint's name and a wanted name for a typo.
const MAX_EDITS: usize = 2;

/// Warn about every endpoint no model uses; refuse a near miss.
pub(crate) fn check(
    top: &Reader<'_>,
    endpoints: &Endpoints,
    models: &Models,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let used: HashSet<usize> = models
        .list
        .iter()
        .flat_map(|m| m.endpoints.values().copied())
        .collect();
    for (i, v) in top.list("endpoints")?.iter().enumerate() {
        let Some(name) = v.get("name").and_then(Value::as_str) else {
            continue;
        };
        let loaded = endpoints.by_name.get(name);
        if loaded.is_some_and(|j| used.contains(j)) {
            continue;
        }
        if let Some((wanted, model)) = near_miss(name, &models.missing) {
            let at = top.at.entry("endpoints", i, "endpoint", Some(name));
            return Err(at.invalid(
                "name",
                shown(&Value::String(name.into())),
                format!(
                    "no model uses it, and model {model} found no endpoint named {wanted}: \
                     did you mean {wanted}? (as written, that route answers 404 for every \
                     model of the line)"
                ),
            ));
        }
        if loaded.is_some() {
            warnings.push(format!("endpoint {name} is used by no model"));
        }
    }
    Ok(())
}

/// The first wanted name `name` is a typo of: the same but for case, or
/// at most [`MAX_EDITS`] edits away.
fn near_miss<'a>(name: &str, missing: &'a [(String, String)]) -> Option<&'a (String, String)> {
    missing.iter().find(|(wanted, _)| {
        wanted.eq_ignore_ascii_case(name) || strsim::levenshtein(wanted, name) <= MAX_EDITS
    })
}
