//! The `models` section: ids and aliases, reasoning, prices, upstream ids
//! and weights, and which endpoint serves each model per route.

use foldhash::HashMap;

use serde_json::Value;

use super::endpoints::Endpoints;
use super::error::{shown, ConfigError};
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

/// Validated models and their index by id and alias.
#[derive(Debug, Default)]
pub(crate) struct Models {
    pub list: Vec<Model>,
    pub by_id: HashMap<String, usize>,
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
            shown(top.value("models").unwrap_or(&Value::Null)),
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
        r.unknown_keys(KNOWN, warnings);
        let m = model(&r, endpoints)?;
        register(&r, &m, i, &mut out.by_id)?;
        out.list.push(m);
    }
    Ok(out)
}

/// Index `m` under its id and aliases, refusing duplicates.
fn register(
    r: &Reader<'_>,
    m: &Model,
    i: usize,
    by_id: &mut HashMap<String, usize>,
) -> Result<(), ConfigError> {
    let names = std::iter::once(("id".to_string(), &m.id)).chain(
        m.aliases
            .iter()
            .enumerate()
            .map(|(j, a)| (format!("id_aliases[{j}]"), a)),
    );
    for (field, name) in names {
        if name.is_empty() {
            return Err(r.at.invalid(&field, "\"\"", "must not be empty"));
        }
        if let Some(&other) = by_id.get(name) {
            return Err(r.at.invalid(
                &field,
                shown(&Value::String(name.clone())),
                format!("duplicate model id or alias (already used by models[{other}])"),
            ));
        }
        by_id.insert(name.clone(), i);
    }
    Ok(())
}

fn model(r: &Reader<'_>, endpoints: &Endpoints) -> Result<Model, ConfigError> {
    let id = r.string("id")?.unwrap_or_default();
    if id.is_empty() {
        return Err(r
            .at
            .invalid("id", "\"\"", "required, and must not be empty"));
    }
    let kind = r.string("type")?.unwrap_or_else(|| "openai".to_string());
    let reasoning = reasoning(r)?;
    let thinking_budget = match (
        r.get::<u32>("thinking_budget", "a whole number of tokens")?,
        reasoning,
    ) {
        (Some(0), _) => None,
        (Some(b), _) => Some(b),
        (None, Some(r)) => Some(r.default_budget()),
        (None, None) => None,
    };
    let upstream = r.string("upstream")?;
    let served = serving(r, endpoints, upstream.as_deref(), &kind, &id)?;
    Ok(Model {
        name: r.string("name")?.unwrap_or_else(|| id.clone()),
        aliases: r
            .get("id_aliases", "a list of strings")?
            .unwrap_or_default(),
        upstream_ids: upstream_ids(r, &id)?,
        prices: prices(r)?,
        id,
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
            Ok(v)
        } else {
            Err(r
                .at
                .invalid(field, v.to_string(), "must be a finite number >= 0"))
        }
    };
    let mult = non_negative("billing_multiplier", 1.0)?;
    Ok(Prices {
        input: non_negative("input_price_per_mtok", 0.0)? * mult,
        output: non_negative("output_price_per_mtok", 0.0)? * mult,
        cache_write: non_negative("cache_write_price_per_mtok", 0.0)? * mult,
        cache_hit: non_negative("cache_hit_price_per_mtok", 0.0)? * mult,
    })
}

/// Upstream ids with weights that a weighted pick can use: finite,
/// non-negative, with a positive and finite sum.
fn upstream_ids(r: &Reader<'_>, id: &str) -> Result<Vec<(String, f64)>, ConfigError> {
    let ids = r
        .strings("upstream_model_id")?
        .unwrap_or_else(|| vec![id.to_string()]);
    if ids.is_empty() || ids.iter().any(String::is_empty) {
        return Err(r.at.invalid(
            "upstream_model_id",
            shown(r.value("upstream_model_id").unwrap_or(&Value::Null)),
            "must be a non-empty string or a list of non-empty strings",
        ));
    }
    let field = "upstream_model_weights";
    let Some(weights) = r.get::<Vec<f64>>(field, "a list of numbers")? else {
        return Ok(ids.into_iter().map(|i| (i, 1.0)).collect());
    };
    let show = || shown(r.value(field).unwrap_or(&Value::Null));
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
    let sum: f64 = weights.iter().sum();
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || !(sum > 0.0 && sum.is_finite()) {
        return Err(r.at.invalid(
            field,
            show(),
            "weights must be finite and >= 0, with a sum above 0 that is itself finite (e.g. [3, 1])",
        ));
    }
    Ok(ids.into_iter().zip(weights).collect())
}

/// Endpoint per format: `<upstream>-F`, then `<type>-F`, then `F`.
fn serving(
    r: &Reader<'_>,
    endpoints: &Endpoints,
    upstream: Option<&str>,
    kind: &str,
    id: &str,
) -> Result<HashMap<Format, usize>, ConfigError> {
    let known = |n: &str| endpoints.by_name.contains_key(n);
    if let Some(up) = upstream {
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
    for f in Format::ALL {
        let candidates = upstream
            .map(|u| format!("{u}-{f}"))
            .into_iter()
            .chain([format!("{kind}-{f}"), f.as_str().to_string()]);
        if let Some(idx) = candidates.filter_map(|c| endpoints.by_name.get(&c)).next() {
            served.insert(f, *idx);
        }
    }
    if served.is_empty() {
        return Err(r.at.invalid(
            "id",
            shown(&Value::String(id.into())),
            "no endpoint serves this model (looked for <upstream>-openai|anthropic, <type>-openai|anthropic, openai, anthropic)",
        ));
    }
    Ok(served)
}
