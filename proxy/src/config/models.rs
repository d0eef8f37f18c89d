//! The `models` section: ids and aliases, reasoning, prices, upstream ids
//! and weights, and which endpoint serves each model per route.

use foldhash::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::endpoints::Endpoints;
use super::error::{kind_of, shown, shown_number, ConfigError};
use super::raw::Reader;
use super::types::{Format, Model, Prices, Reasoning};

/// Keys a model may have.
const KNOWN: &[&str] = &[
    "id",
    "name",
    "id_aliases",
    "type",
    "reasoning",
    "thinking_budget",
    "input_price_per_mtok",
    "output_price_per_mtok",
    "cache_write_price_per_mtok",
    "cache_hit_price_per_mtok",
    "billing_multiplier",
    "upstream",
    "upstream_model_id",
    "upstream_model_weights",
];

/// Anthropic's smallest `thinking.budget_tokens`.
const MIN_THINKING_BUDGET: u32 = 1024;
/// Largest budget: goproxy asks for `max_tokens` = budget + 4000, and
/// Anthropic's largest `max_tokens` (128k output) must hold it.
const MAX_THINKING_BUDGET: u32 = 124_000;

/// Longest id or name: real model ids are under 64 characters.
const MAX_NAME: usize = 200;

/// Validated models and their index by id and alias.
#[derive(Debug, Default)]
pub(crate) struct Models {
    pub list: Vec<Model>,
    pub by_id: HashMap<String, usize>,
    /// The endpoint names models looked for first and did not find (with
    /// the model's id): `<upstream or type>-<format>`.
    pub missing: Vec<(String, String)>,
}

/// Validate every entry of `models`.
pub(crate) fn models(
    top: &Reader<'_>,
    endpoints: &Endpoints,
    warnings: &mut Vec<String>,
) -> Result<Models, ConfigError> {
    let items = top.list("models")?;
    if items.is_empty() {
        return Err(top.at.invalid(
            "models",
            top.value("models").map_or("(missing)".into(), shown),
            "at least one model is required",
        ));
    }
    let mut out = Models::default();
    for (i, v) in items.iter().enumerate() {
        let id = v.get("id").and_then(Value::as_str);
        let r = Reader::new(
            v,
            top.at.entry("models", i, "model", id),
            &format!("models[{i}]"),
        )?;
        r.unknown_keys(KNOWN, warnings)?;
        let m = model(&r, endpoints)?;
        if r.value("thinking_budget").is_some() && !m.endpoints.contains_key(&Format::Anthropic) {
            warnings.push(format!(
                "{} is ignored: model {} is served on no Anthropic route",
                r.at.path_of("thinking_budget"),
                m.id
            ));
        }
        let unpriced = ["input_price_per_mtok", "output_price_per_mtok"]
            .iter()
            .all(|f| r.value(f).is_none());
        if unpriced {
            warnings.push(format!(
                "model {} has no input_price_per_mtok or output_price_per_mtok: its requests are counted but cost 0",
                m.id
            ));
        } else {
            unpriced_cache(&r, &m, warnings);
        }
        if r.number("billing_multiplier")? == Some(0.0) {
            warnings.push(format!(
                "{} = 0: every request of model {} is billed at 0",
                r.at.path_of("billing_multiplier"),
                m.id
            ));
        }
        register(&r, &m, i, &mut out.by_id)?;
        let line = r.string("upstream")?.unwrap_or_else(|| m.kind.clone());
        for f in Format::ALL
            .into_iter()
            .filter(|f| !m.endpoints.contains_key(f))
        {
            out.missing.push((format!("{line}-{f}"), m.id.to_string()));
        }
        out.list.push(m);
    }
    Ok(out)
}

/// A priced model without cache prices bills cache tokens at 0, and the
/// client decides how many there are (`cache_control`, a repeated
/// prefix): cache reads for any model, cache writes for Anthropic's.
fn unpriced_cache(r: &Reader<'_>, m: &Model, warnings: &mut Vec<String>) {
    let mut missing = vec![];
    if r.value("cache_hit_price_per_mtok").is_none() {
        missing.push("cache_hit_price_per_mtok (cache reads)");
    }
    if m.kind == "anthropic" && r.value("cache_write_price_per_mtok").is_none() {
        missing.push("cache_write_price_per_mtok (cache writes)");
    }
    if !missing.is_empty() {
        warnings.push(format!(
            "model {} has no {}: those tokens cost 0, and the client decides how many there are",
            m.id,
            missing.join(" or ")
        ));
    }
}

/// Index `m` under its id and aliases, refusing duplicates.
fn register(
    r: &Reader<'_>,
    m: &Model,
    i: usize,
    by_id: &mut HashMap<String, usize>,
) -> Result<(), ConfigError> {
    let names = std::iter::once(("id".to_string(), &*m.id)).chain(
        m.aliases
            .iter()
            .enumerate()
            .map(|(j, a)| (format!("id_aliases[{j}]"), a.as_str())),
    );
    // Each name is already a `plain_name` (not empty).
    for (field, name) in names {
        if let Some(&other) = by_id.get(name) {
            return Err(r.at.invalid(
                &field,
                shown(&Value::String(name.to_string())),
                format!("duplicate model id or alias (already used by models[{other}])"),
            ));
        }
        by_id.insert(name.to_string(), i);
    }
    Ok(())
}

fn model(r: &Reader<'_>, endpoints: &Endpoints) -> Result<Model, ConfigError> {
    let Some(id) = r.string("id")? else {
        return Err(r.at.invalid("id", "(missing)", "required"));
    };
    plain_name(r, "id", &id)?;
    let kind = r.string("type")?.unwrap_or_else(|| "openai".to_string());
    plain_name(r, "type", &kind)?;
    let reasoning = reasoning(r)?;
    // 1 to 1023 are refused too (below): the message says so.
    let budget = r.whole_allowed(
        "thinking_budget",
        "tokens",
        &format!(": 0 (off), or from {MIN_THINKING_BUDGET} to {MAX_THINKING_BUDGET}"),
        0..=u64::from(MAX_THINKING_BUDGET),
    )?;
    let thinking_budget =
        match (budget.map(|b| b as u32), reasoning) {
            (Some(0), _) => None,
            (Some(b), _) if b < MIN_THINKING_BUDGET => return Err(r.at.invalid(
                "thinking_budget",
                b.to_string(),
                "must be 0 (off) or from 1024 to 124000 tokens (Anthropic refuses smaller budgets)",
            )),
            (Some(b), _) => Some(b),
            (None, Some(r)) => Some(r.default_budget()),
            (None, None) => None,
        };
    let upstream = r.string("upstream")?;
    if let Some(up) = &upstream {
        plain_name(r, "upstream", up)?;
    }
    let served = serving(r, endpoints, upstream.as_deref(), &kind, &id)?;
    let name = r.string("name")?.unwrap_or_else(|| id.clone());
    if name.trim().is_empty() {
        return Err(r.at.invalid(
            "name",
            shown(&Value::String(name)),
            "must not be empty (leave it out to show the id)",
        ));
    }
    if let Some(c) = name.chars().find(|&c| c.is_control() || is_invisible(c)) {
        return Err(r.at.invalid(
            "name",
            shown(&Value::String(name.clone())),
            format!(
                "must not hold control or invisible characters (found U+{:04X})",
                c as u32
            ),
        ));
    }
    let aliases = r.list_of_strings("id_aliases")?.unwrap_or_default();
    for (j, a) in aliases.iter().enumerate() {
        plain_name(r, &format!("id_aliases[{j}]"), a)?;
    }
    Ok(Model {
        name,
        aliases,
        upstream_ids: upstream_ids(r, &id)?,
        prices: prices(r)?,
        id: id.into(),
        kind,
        reasoning,
        thinking_budget,
        endpoints: served,
    })
}

fn reasoning(r: &Reader<'_>) -> Result<Option<Reasoning>, ConfigError> {
    Ok(match r.string("reasoning")?.as_deref() {
        None | Some("") => None,
        Some("low") => Some(Reasoning::Low),
        Some("medium") => Some(Reasoning::Medium),
        Some("high") => Some(Reasoning::High),
        Some(other) => {
            return Err(r.at.invalid(
                "reasoning",
                shown(&Value::String(other.into())),
                "must be low, medium or high",
            ))
        }
    })
}

/// Prices times `billing_multiplier`; all finite and non-negative.
fn prices(r: &Reader<'_>) -> Result<Prices, ConfigError> {
    let non_negative = |field: &str, default: f64| -> Result<f64, ConfigError> {
        let v = r.number(field)?.unwrap_or(default);
        if v.is_finite() && v >= 0.0 {
            Ok(v + 0.0) // -0.0 is 0
        } else {
            Err(r
                .at
                .invalid(field, shown_number(v), "must be a finite number >= 0"))
        }
    };
    let mult = non_negative("billing_multiplier", 1.0)?;
    // The product is what is billed: 1e300 x 1e300 is infinite, and a cost
    // metric of inf or NaN (0 tokens x inf) is no use to anyone.
    let priced = |field: &str| -> Result<f64, ConfigError> {
        let price = non_negative(field, 0.0)?;
        let billed = price * mult;
        if billed.is_finite() && billed * 1e9 < f64::MAX {
            Ok(billed)
        } else {
            Err(r.at.invalid(
                field,
                shown_number(price),
                format!(
                    "times billing_multiplier ({}) is too large to bill with",
                    shown_number(mult)
                ),
            ))
        }
    };
    Ok(Prices {
        input: priced("input_price_per_mtok")?,
        output: priced("output_price_per_mtok")?,
        cache_write: priced("cache_write_price_per_mtok")?,
        cache_hit: priced("cache_hit_price_per_mtok")?,
    })
}

/// Upstream ids with weights that a weighted pick can use: finite,
/// non-negative, with a positive and finite sum.
fn upstream_ids(r: &Reader<'_>, id: &str) -> Result<Vec<(Arc<str>, f64)>, ConfigError> {
    let ids = match r.value("upstream_model_id") {
        Some(Value::String(s)) => {
            plain_name(r, "upstream_model_id", s)?;
            vec![s.clone()]
        }
        Some(Value::Array(_)) => {
            let ids = r.list_of_strings("upstream_model_id")?.unwrap_or_default();
            for (j, u) in ids.iter().enumerate() {
                plain_name(r, &format!("upstream_model_id[{j}]"), u)?;
            }
            ids
        }
        Some(other) => {
            return Err(r.at.invalid(
                "upstream_model_id",
                shown(other),
                format!(
                    "expected a string or a list of strings, found {}",
                    kind_of(other)
                ),
            ))
        }
        // The model's own id, already a plain name.
        None => vec![id.to_string()],
    };
    if ids.is_empty() {
        return Err(r.at.invalid(
            "upstream_model_id",
            "[]",
            "must be a non-empty string or a list of non-empty strings",
        ));
    }
    let field = "upstream_model_weights";
    let Some(weights) = r.list_of_numbers(field)? else {
        return Ok(ids.into_iter().map(|i| (i.into(), 1.0)).collect());
    };
    let show = || shown(r.value(field).unwrap_or(&Value::Null));
    if weights.len() != ids.len() && r.value("upstream_model_id").is_none() {
        return Err(r.at.invalid(
            field,
            show(),
            format!(
                "has {} weights but upstream_model_id is missing (the model's own id is sent): \
                 list the {} upstream ids the weights are for in upstream_model_id",
                weights.len(),
                weights.len()
            ),
        ));
    }
    if weights.len() != ids.len() {
        return Err(r.at.invalid(
            field,
            show(),
            format!(
                "has {} weights but upstream_model_id has {} ids",
                weights.len(),
                ids.len()
            ),
        ));
    }
    if let Some(j) = weights.iter().position(|w| !w.is_finite() || *w < 0.0) {
        return Err(r.at.invalid(
            &format!("{field}[{j}]"),
            shown_number(weights[j]),
            "must be a finite number >= 0",
        ));
    }
    let sum: f64 = weights.iter().sum();
    if !(sum > 0.0 && sum.is_finite()) {
        return Err(r.at.invalid(
            field,
            show(),
            "weights must be finite and >= 0, with a sum above 0 that is itself finite (e.g. [3, 1])",
        ));
    }
    Ok(ids.into_iter().map(Arc::from).zip(weights).collect())
}

/// A model id, alias, upstream id, type or endpoint name: it is a metrics
/// label, a log field and JSON on the wire, so printable ASCII without
/// spaces, quotes or backslashes (`gpt-4o`, `claude-3-5-sonnet@20241022`,
/// `qwen2.5:7b`). Non-ASCII is refused too: invisible and bidirectional
/// characters would make two ids look the same, or a log line lie.
pub(crate) fn plain_name(r: &Reader<'_>, field: &str, name: &str) -> Result<(), ConfigError> {
    if name.trim().is_empty() {
        return Err(r.at.invalid(
            field,
            shown(&Value::String(name.into())),
            "must not be empty",
        ));
    }
    if name.len() > MAX_NAME {
        return Err(r.at.invalid(
            field,
            shown(&Value::String(name.into())),
            format!(
                "is {} characters long: at most {MAX_NAME} (it is a metrics label and a log field on every request)",
                name.len()
            ),
        ));
    }
    match name
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\\'))
    {
        None => Ok(()),
        Some(c) => Err(r.at.invalid(
            field,
            shown(&Value::String(name.into())),
            format!(
                "must be printable ASCII without spaces, quotes or backslashes (found U+{:04X}): \
                 it is a metrics label and a log field",
                c as u32
            ),
        )),
    }
}

/// Format and bidirectional controls, zero-width characters, the BOM.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// Endpoint per format: `<upstream>` itself when it is an endpoint's name
/// (for that endpoint's format), then `<upstream>-F`, then `<type>-F`,
/// then `F`.
fn serving(
    r: &Reader<'_>,
    endpoints: &Endpoints,
    upstream: Option<&str>,
    kind: &str,
    id: &str,
) -> Result<HashMap<Format, usize>, ConfigError> {
    let known = |n: &str| endpoints.by_name.contains_key(n);
    if let Some(up) = upstream {
        let unused = |n: &str| endpoints.unused.iter().any(|u| u == n);
        if unused(up) {
            return Err(r.at.invalid(
                "upstream",
                shown(&Value::String(up.into())),
                format!(
                    "names endpoint {up}, which is not loaded: endpoint names must be \
                     <line>-openai, <line>-anthropic, openai or anthropic"
                ),
            ));
        }
        if !(known(up) || Format::ALL.iter().any(|f| known(&format!("{up}-{f}")))) {
            return Err(r.at.invalid(
                "upstream",
                shown(&Value::String(up.into())),
                format!(
                    "names no endpoint (expected an endpoint named {up}-openai or {up}-anthropic)"
                ),
            ));
        }
    }
    let mut served = HashMap::default();
    let named = upstream
        .and_then(|u| endpoints.by_name.get(u))
        .map(|&i| (endpoints.list[i].format, i));
    if let Some((f, i)) = named {
        served.insert(f, i);
    }
    for f in Format::ALL {
        if served.contains_key(&f) {
            continue;
        }
        let candidates = upstream
            .map(|u| format!("{u}-{f}"))
            .into_iter()
            .chain([format!("{kind}-{f}"), f.as_str().to_string()]);
        if let Some(idx) = candidates.filter_map(|c| endpoints.by_name.get(&c)).next() {
            served.insert(f, *idx);
        }
    }
    if served.is_empty() {
        let looked: Vec<String> = upstream
            .into_iter()
            .chain([kind])
            .flat_map(|line| Format::ALL.map(|f| format!("{line}-{f}")))
            .chain(Format::ALL.map(|f| f.as_str().to_string()))
            .collect();
        let looked = looked.join(", ");
        return Err(match upstream {
            Some(up) => r.at.invalid(
                "upstream",
                shown(&Value::String(up.into())),
                format!("no endpoint serves this model (looked for {looked})"),
            ),
            None => r.at.invalid(
                "upstream",
                "(missing)",
                format!(
                    "no endpoint serves model {id} by its type {kind} (looked for {looked}): \
                     add \"upstream\": \"<line>\", the part of the endpoint names before \
                     -openai / -anthropic"
                ),
            ),
        });
    }
    Ok(served)
}
