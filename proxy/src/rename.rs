//! Rewrite a client body for the upstream without building a JSON tree:
//! only the top-level keys are read (each value borrowed as its text, found
//! by [`crate::toplevel`]), and the few changes (model id, system prompt, thinking
//! budget, stream usage) are spliced between slices of the original bytes
//! ([`Chunks`]). A 90 KB agent request with 200 messages is neither copied
//! nor re-serialized.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::sync::Arc;

use crate::chunks::{Chunks, JOIN_BELOW};
use crate::config::{Format, Model};
use crate::error::ProxyError;
use crate::toplevel::members;

/// A top-level value as its exact text in the body.
#[derive(Debug, Clone, Copy)]
struct Raw<'a>(&'a str);

impl<'a> Raw<'a> {
    fn get(&self) -> &'a str {
        self.0
    }
}

/// The top-level keys goproxy reads or changes; the rest are skipped.
/// A duplicate of one of these keys is refused (the upstream might read the
/// other copy than goproxy did).
#[derive(Debug, Default)]
struct Top<'a> {
    model: Option<Raw<'a>>,
    stream: Option<Raw<'a>>,
    stream_options: Option<Raw<'a>>,
    reasoning_effort: Option<Raw<'a>>,
    messages: Option<Raw<'a>>,
    system: Option<Raw<'a>>,
    thinking: Option<Raw<'a>>,
    max_tokens: Option<Raw<'a>>,
}

impl<'a> Top<'a> {
    fn slot(&mut self, key: &str) -> Option<&mut Option<Raw<'a>>> {
        Some(match key {
            "model" => &mut self.model,
            "stream" => &mut self.stream,
            "stream_options" => &mut self.stream_options,
            "reasoning_effort" => &mut self.reasoning_effort,
            "messages" => &mut self.messages,
            "system" => &mut self.system,
            "thinking" => &mut self.thinking,
            "max_tokens" => &mut self.max_tokens,
            _ => return None,
        })
    }
}

/// A client body: its text, its top-level keys and the model it asks for.
#[derive(Debug)]
pub struct ClientBody<'a> {
    raw: &'a Bytes,
    text: &'a str,
    top: Top<'a>,
    /// The requested model id (non-empty).
    pub model: Cow<'a, str>,
}

impl<'a> ClientBody<'a> {
    /// Parse the top level of `raw`: 400 unless a JSON object with a
    /// non-empty string `model`.
    pub fn parse(raw: &'a Bytes) -> Result<Self, ProxyError> {
        // simdutf8: ~10x fewer instructions than std on a 90 KB body, and
        // the same answer (its `basic` API says only valid or not).
        let text = simdutf8::basic::from_utf8(raw)
            .map_err(|_| ProxyError::BadRequest("request body is not UTF-8".into()))?;
        let top = parse(text)?;
        let missing = || ProxyError::BadRequest("missing string field \"model\"".into());
        let model = match top.model.map(|m| json_str(m.get())) {
            Some(Some(s)) if !s.is_empty() => s,
            _ => return Err(missing()),
        };
        Ok(ClientBody {
            raw,
            text,
            top,
            model,
        })
    }

    /// Rewrite for the upstream: model id mapping, system prompt, reasoning
    /// effort and stream usage (OpenAI), thinking budget with
    /// `max_tokens >= budget + 4000` (Anthropic). Returns the new body and
    /// the upstream model id chosen. 400 for a thinking budget too large
    /// to add 4000 to.
    pub fn rewrite(
        &self,
        model: &Model,
        format: Format,
        system_prompt: Option<&str>,
    ) -> Result<(Chunks, Arc<str>), ProxyError> {
        let (body, top) = (self.text, &self.top);
        let open = body.find('{').map_or(0, |i| i + 1);
        let upstream_id = model.pick_upstream_id().clone();
        let mut s = Splices::default();
        if let Some(m) = top.model {
            s.replace(body, m, json_string(&upstream_id));
        }
        match format {
            Format::OpenAi => openai(top, body, open, model, system_prompt, &mut s),
            Format::Anthropic => anthropic(top, body, open, model, system_prompt, &mut s)?,
        }
        Ok((s.apply(self.raw), upstream_id))
    }
}

fn parse(text: &str) -> Result<Top<'_>, ProxyError> {
    let bad = |e: &dyn std::fmt::Display| {
        ProxyError::BadRequest(format!("request body is not a JSON object: {e}"))
    };
    let mut top = Top::default();
    for (key, value) in members(text).map_err(|e| bad(&e))? {
        if let Some(slot) = top.slot(&key) {
            if slot.is_some() {
                return Err(bad(&format_args!("duplicate field `{key}`")));
            }
            *slot = Some(Raw(value));
        } else if key.bytes().any(|b| b.is_ascii_uppercase()) {
            // A gateway that matches keys regardless of case (Go's
            // encoding/json) would read this one as the key goproxy reads:
            // goproxy would then price or rewrite one request and the
            // upstream serve another (`"Stream":true` streamed without
            // usage). The names `slot` knows are lower case, so the key's
            // lower case is the one it stands for. (Keys written in lower
            // case, nearly all, cost no allocation here.)
            let name = key.to_ascii_lowercase();
            if Top::default().slot(&name).is_some() {
                return Err(ProxyError::BadRequest(format!(
                    "field `{}` differs from `{name}` only in case: write it as `{name}`",
                    key.escape_default()
                )));
            }
        }
    }
    // Anything but a boolean would be read one way here (not a stream: no
    // usage asked for) and perhaps another upstream.
    if top
        .stream
        .is_some_and(|v| !matches!(v.get(), "true" | "false"))
    {
        return Err(ProxyError::BadRequest(
            "field `stream` must be true or false".into(),
        ));
    }
    Ok(top)
}

/// Changes to the original bytes: replace `start..end` with `text`
/// (an insertion when `start == end`).
#[derive(Debug, Default)]
struct Splices(Vec<(usize, usize, String)>);

impl Splices {
    fn replace(&mut self, body: &str, v: Raw<'_>, text: String) {
        let start = offset(body, v.get());
        self.0.push((start, start + v.get().len(), text));
    }
    fn insert(&mut self, at: usize, text: String) {
        self.0.push((at, at, text));
    }
    /// The body with the splices applied to `raw` (the bytes the offsets
    /// index): one buffer when it is small (below [`JOIN_BELOW`]), else
    /// slices of `raw` and the new pieces, in order, so a big body is
    /// never copied.
    fn apply(mut self, raw: &Bytes) -> Chunks {
        self.0.sort_by_key(|s| s.0);
        let len = self.0.iter().fold(raw.len(), |n, (start, end, text)| {
            n - (end - start) + text.len()
        });
        if len < JOIN_BELOW {
            let mut one = BytesMut::with_capacity(len);
            let mut at = 0;
            for (start, end, text) in &self.0 {
                one.extend_from_slice(&raw[at..*start]);
                one.extend_from_slice(text.as_bytes());
                at = *end;
            }
            one.extend_from_slice(&raw[at..]);
            return Chunks::one(one.freeze());
        }
        let mut out = Chunks::with_capacity(2 * self.0.len() + 1);
        let mut at = 0;
        for (start, end, text) in self.0 {
            out.push(raw.slice(at..start));
            out.push(Bytes::from(text));
            at = end;
        }
        out.push(raw.slice(at..));
        out
    }
}

/// The string a JSON token denotes, or `None` if it is not a string. A
/// token with nothing to unescape is borrowed from between its quotes
/// (parsing it into a `Value` was 1k instructions a request, and a copy
/// is an allocation).
fn json_str(token: &str) -> Option<Cow<'_, str>> {
    match token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if plain(inner) => Some(Cow::Borrowed(inner)),
        _ => serde_json::from_str::<String>(token).ok().map(Cow::Owned),
    }
}

/// `s` as a JSON string token.
fn json_string(s: &str) -> String {
    if plain(s) {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
        out
    } else {
        json!(s).to_string()
    }
}

/// Whether `s` reads the same inside JSON quotes (no quote, backslash or
/// control character).
fn plain(s: &str) -> bool {
    !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Where `part` (a sub-slice of `whole`, as `Raw::get` returns) starts.
fn offset(whole: &str, part: &str) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

fn openai(
    top: &Top<'_>,
    body: &str,
    open: usize,
    model: &Model,
    system_prompt: Option<&str>,
    s: &mut Splices,
) {
    if let (Some(sp), Some(msgs)) = (system_prompt, top.messages) {
        if let Some(inner) = msgs.get().strip_prefix('[') {
            let msg = json!({"role": "system", "content": sp}).to_string();
            let comma = if inner.trim_start().starts_with(']') {
                ""
            } else {
                ","
            };
            s.insert(offset(body, msgs.get()) + 1, format!("{msg}{comma}"));
        }
    }
    // A reasoning model gets the configured effort unless the client chose one.
    if let (Some(r), None) = (model.reasoning, top.reasoning_effort) {
        s.insert(open, format!("\"reasoning_effort\":\"{}\",", r.as_str()));
    }
    // Ask for usage in the stream so it can be priced: always, whatever
    // the client wrote there (`include_usage: false` or `null` would make
    // the stream free). The client's other stream options are kept.
    let streaming = top.stream.is_some_and(|v| v.get() == "true");
    if !streaming {
        return;
    }
    match top.stream_options {
        None => s.insert(open, "\"stream_options\":{\"include_usage\":true},".into()),
        Some(v) => match with_usage(v.get()) {
            Some(Some(text)) => s.replace(body, v, text),
            Some(None) => {}
            // Not an object (`null`, most often): the option alone.
            None => s.replace(body, v, "{\"include_usage\":true}".into()),
        },
    }
}

/// `stream_options` (an object's text) asking for usage: `None` if it is
/// not an object goproxy can read; `Some(None)` if it is right as written
/// (its one key named `include_usage` in any case is that, and `true`: an
/// `Include_Usage: false` beside it would win at a case-blind gateway);
/// else `"include_usage":true` and the client's other members exactly as
/// written (a `Value` rounded numbers and dropped what it could not hold).
fn with_usage(text: &str) -> Option<Option<String>> {
    let members = members(text).ok()?;
    let usage: Vec<_> = members
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("include_usage"))
        .collect();
    if let [(key, value)] = usage[..] {
        if key == "include_usage" && *value == "true" {
            return Some(None);
        }
    }
    let mut out = String::from("{\"include_usage\":true");
    let mut from = text.find('{')? + 1;
    for (key, value) in &members {
        let end = offset(text, value) + value.len();
        // The member as written: its key (quotes, escapes), `:`, value.
        let written =
            text[from..end].trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if !key.eq_ignore_ascii_case("include_usage") {
            out.push(',');
            out.push_str(written);
        }
        from = end;
    }
    out.push('}');
    Some(Some(out))
}

fn anthropic(
    top: &Top<'_>,
    body: &str,
    open: usize,
    model: &Model,
    system_prompt: Option<&str>,
    s: &mut Splices,
) -> Result<(), ProxyError> {
    if let Some(sp) = system_prompt {
        system(top.system, body, open, sp, s);
    }
    let thinking: Option<Value> = top
        .thinking
        .and_then(|t| serde_json::from_str(t.get()).ok());
    let client_budget = thinking
        .as_ref()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("enabled"))
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64);
    let budget = match (client_budget, model.thinking_budget) {
        (Some(b), _) => Some(b),
        (None, Some(b)) if top.thinking.is_none() => {
            let t = json!({"type": "enabled", "budget_tokens": b});
            s.insert(open, format!("\"thinking\":{t},"));
            Some(u64::from(b))
        }
        _ => None,
    };
    let Some(b) = budget else { return Ok(()) };
    let min = b.checked_add(4000).ok_or_else(|| {
        ProxyError::BadRequest(format!("thinking.budget_tokens {b} is too large"))
    })?;
    match top.max_tokens {
        None => s.insert(open, format!("\"max_tokens\":{min},")),
        // Any JSON number, as written (`2e4`, `20000.0`): raised only when
        // below the minimum, never replaced for being written differently.
        // (Digits alone, the usual case, are read without a `Value`.)
        Some(v) => match plain_u64(v.get()).map(|n| n as f64).or_else(|| {
            serde_json::from_str::<Value>(v.get())
                .ok()
                .and_then(|n| n.as_f64())
        }) {
            Some(current) if current >= min as f64 => {}
            Some(_) => s.replace(body, v, min.to_string()),
            None => {
                return Err(ProxyError::BadRequest(
                    "field `max_tokens` must be a number".into(),
                ))
            }
        },
    }
    Ok(())
}

/// `text` as a whole number when it is digits alone (`+5` is not JSON).
fn plain_u64(text: &str) -> Option<u64> {
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse().ok())
        .flatten()
}

/// Prepend the configured system prompt to Anthropic's `system` (absent,
/// null, a string or a list of blocks).
fn system(current: Option<Raw<'_>>, body: &str, open: usize, sp: &str, s: &mut Splices) {
    let Some(v) = current else {
        s.insert(open, format!("\"system\":{},", json!(sp)));
        return;
    };
    match serde_json::from_str::<Value>(v.get()) {
        Ok(Value::Null) => s.replace(body, v, json!(sp).to_string()),
        Ok(Value::String(old)) if old.is_empty() => s.replace(body, v, json!(sp).to_string()),
        Ok(Value::String(old)) => s.replace(body, v, json!(format!("{sp}\n\n{old}")).to_string()),
        Ok(Value::Array(blocks)) => {
            let block = json!({"type": "text", "text": sp}).to_string();
            let comma = if blocks.is_empty() { "" } else { "," };
            s.insert(offset(body, v.get()) + 1, format!("{block}{comma}"));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config() -> Config {
        Config::from_json(
            r#"{"port": 8004, "endpoints": [{"name":"anthropic","base_url":"http://127.0.0.1:1/v1/messages"},
                {"name":"openai","base_url":"http://127.0.0.1:1/v1/chat/completions"}],
                "models": [{"id":"c","type":"anthropic","reasoning":"medium","upstream_model_id":"claude-up"}]}"#,
            "t",
        )
        .unwrap()
    }

    /// The shortcuts read and write JSON strings as serde_json does.
    #[test]
    fn json_strings_as_serde_json_reads_and_writes_them() {
        for s in [
            "gpt-4o",
            "",
            "a\"b",
            "back\\slash",
            "tab\there",
            "nl\n",
            "ünï 模型",
            "\u{7f}",
            "\u{1}",
        ] {
            assert_eq!(json_string(s), serde_json::to_string(s).unwrap(), "{s:?}");
            let token = serde_json::to_string(s).unwrap();
            assert_eq!(json_str(&token).as_deref(), Some(s), "{token}");
        }
        assert_eq!(json_str(r#""a\u0062c""#).as_deref(), Some("abc"));
        for not_a_string in ["12", "null", "{}", "[\"a\"]", "\"", "\"a\\\""] {
            assert_eq!(json_str(not_a_string), None, "{not_a_string}");
        }
    }

    /// A small rewrite is one buffer and a big one is slices of the
    /// client's bytes, and both are the same rewrite: each splice where it
    /// belongs, the rest byte for byte.
    #[test]
    fn small_bodies_are_joined_and_big_ones_are_not_copied() {
        let c = config();
        for filler in [10, JOIN_BELOW] {
            let text = "x".repeat(filler);
            let raw = Bytes::from(format!(
                r#"{{"stream":true,"messages":[{{"role":"user","content":"{text}"}}],"model":"c","n":1}}"#
            ));
            let (out, upstream) = ClientBody::parse(&raw)
                .unwrap()
                .rewrite(c.model("c").unwrap(), Format::OpenAi, None)
                .unwrap();
            let want = format!(
                r#"{{"reasoning_effort":"medium","stream_options":{{"include_usage":true}},"stream":true,"messages":[{{"role":"user","content":"{text}"}}],"model":"{upstream}","n":1}}"#
            );
            assert_eq!(String::from_utf8(out.to_vec()).unwrap(), want);
            assert_eq!(out.len(), want.len());
            let pieces: Vec<&[u8]> = out.pieces().collect();
            if filler < JOIN_BELOW {
                assert_eq!(pieces.len(), 1);
            } else {
                assert!(pieces.len() > 1);
                // The messages are the client's own bytes, not a copy.
                let content = pieces.iter().find(|p| p.len() > filler).unwrap();
                let within = raw.as_ptr_range();
                assert!(within.contains(&content.as_ptr()));
            }
        }
    }

    /// The client's other stream options reach the upstream exactly as
    /// written: numbers past f64, escapes, key order, duplicates, deep
    /// nesting (they were parsed into a `Value` and written back, which
    /// rounded them, or replaced them all when it could not hold them).
    #[test]
    fn other_stream_options_are_kept_as_written() {
        let c = config();
        for (opts, want) in [
            (
                r#"{"keep":1, "x":123456789012345678901234567890}"#,
                r#"{"include_usage":true,"keep":1,"x":123456789012345678901234567890}"#,
            ),
            (
                r#"{ "b":1E2,"a":"\u00e9\/","include_usage":false,"b":2 }"#,
                r#"{"include_usage":true,"b":1E2,"a":"\u00e9\/","b":2}"#,
            ),
            (
                r#"{"x":"\ud800"}"#,
                r#"{"include_usage":true,"x":"\ud800"}"#,
            ),
            (r#"{"include_usage":true}"#, r#"{"include_usage":true}"#),
            (r#"{"Include_Usage":true}"#, r#"{"include_usage":true}"#),
            ("null", r#"{"include_usage":true}"#),
        ] {
            let raw =
                format!(r#"{{"model":"c","stream":true,"stream_options":{opts},"messages":[]}}"#);
            let (out, _) = ClientBody::parse(&Bytes::from(raw))
                .unwrap()
                .rewrite(c.model("c").unwrap(), Format::OpenAi, None)
                .unwrap();
            let text = String::from_utf8(out.to_vec()).unwrap();
            assert!(
                text.contains(&format!(r#""stream_options":{want}"#)),
                "{opts}: {text}"
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            with_usage(&format!(r#"{{"x":{deep}}}"#)).unwrap().unwrap(),
            format!(r#"{{"include_usage":true,"x":{deep}}}"#)
        );
    }

    fn rewrite(body: Value, format: Format, sp: Option<&str>) -> (Value, String) {
        let c = config();
        let raw = Bytes::from(body.to_string());
        let (out, id) = ClientBody::parse(&raw)
            .unwrap()
            .rewrite(c.model("c").unwrap(), format, sp)
            .unwrap();
        (
            serde_json::from_slice(&out.to_vec()).expect("valid JSON out"),
            id.to_string(),
        )
    }

    #[test]
    fn anthropic_thinking_and_max_tokens() {
        let body = json!({"model":"c","max_tokens":1000,"system":"be brief","messages":[]});
        let (body, id) = rewrite(body, Format::Anthropic, Some("SP"));
        assert_eq!(id, "claude-up");
        assert_eq!(body["model"], "claude-up");
        assert_eq!(
            body["thinking"],
            json!({"type":"enabled","budget_tokens":5000})
        );
        assert_eq!(body["max_tokens"], 9000);
        assert_eq!(body["system"], "SP\n\nbe brief");
    }

    #[test]
    fn anthropic_system_blocks_and_absent_fields() {
        let body = json!({"model":"c","system":[{"type":"text","text":"x"}],"messages":[]});
        let (body, _) = rewrite(body, Format::Anthropic, Some("SP"));
        assert_eq!(body["system"][0], json!({"type":"text","text":"SP"}));
        assert_eq!(body["system"][1]["text"], "x");
        assert_eq!(body["max_tokens"], 9000);
        let (body, _) = rewrite(json!({"model":"c"}), Format::Anthropic, Some("SP"));
        assert_eq!(body["system"], "SP");
    }

    #[test]
    fn openai_system_prompt_and_stream_usage() {
        let body = json!({"model":"c","stream":true,"messages":[{"role":"user","content":"hi"}]});
        let (body, _) = rewrite(body, Format::OpenAi, Some("SP"));
        assert_eq!(body["messages"][0], json!({"role":"system","content":"SP"}));
        assert_eq!(body["messages"][1]["content"], "hi");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert!(body.get("thinking").is_none());
        assert_eq!(body["reasoning_effort"], "medium");
    }

    /// A stream always asks for usage, whatever the client's
    /// `stream_options` say (else `include_usage: false` made it free);
    /// the client's other options are kept.
    #[test]
    fn stream_usage_is_asked_for_whatever_the_client_wrote() {
        for opts in [
            json!({"include_usage": false}),
            json!(null),
            json!(false),
            json!("x"),
            json!({}),
            json!({"include_usage": true}),
        ] {
            let body = json!({"model":"c","stream":true,"stream_options":opts,"messages":[]});
            let (body, _) = rewrite(body, Format::OpenAi, None);
            assert_eq!(
                body["stream_options"],
                json!({"include_usage": true}),
                "{opts}"
            );
        }
        let body = json!({"model":"c","stream":true,"stream_options":{"include_usage":false,"x":1},"messages":[]});
        let (body, _) = rewrite(body, Format::OpenAi, None);
        assert_eq!(
            body["stream_options"],
            json!({"include_usage": true, "x": 1})
        );
        let body = json!({"model":"c","stream":false,"stream_options":{"include_usage":false},"messages":[]});
        let (body, _) = rewrite(body, Format::OpenAi, None);
        assert_eq!(body["stream_options"], json!({"include_usage": false}));
    }

    /// Keys goproxy reads that differ only in case are refused (a
    /// case-blind gateway would read them as the real ones), `stream` must
    /// be a boolean, and `stream_options` is made canonical whatever case
    /// variants it holds.
    #[test]
    fn case_variants_and_non_boolean_streams_are_refused() {
        for raw in [
            &br#"{"model":"c","Stream":true}"#[..],
            br#"{"model":"c","stream":false,"STREAM":true}"#,
            br#"{"model":"c","Model":"d"}"#,
            br#"{"model":"c","stream":true,"Stream_Options":{"include_usage":false}}"#,
            br#"{"model":"c","stream":1}"#,
            br#"{"model":"c","stream":"true"}"#,
        ] {
            let e = ClientBody::parse(&Bytes::from_static(raw)).unwrap_err();
            assert_eq!(e.status_code(), 400, "{}", String::from_utf8_lossy(raw));
        }
        let body = json!({"model":"c","stream":true,"stream_options":{"include_usage":true,"Include_Usage":false},"messages":[]});
        let (body, _) = rewrite(body, Format::OpenAi, None);
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
    }

    /// `max_tokens` written as any JSON number is kept when it is enough,
    /// raised when not, and refused when not a number (it was replaced by
    /// the minimum for being written `2e4`).
    #[test]
    fn max_tokens_as_written_is_kept_when_enough() {
        for (written, want) in [
            ("2e4", json!(20000.0)),
            ("20000.0", json!(20000.0)),
            ("100", json!(9000)),
        ] {
            let raw = format!(r#"{{"model":"c","max_tokens":{written},"messages":[]}}"#);
            let c = config();
            let raw = Bytes::from(raw);
            let (out, _) = ClientBody::parse(&raw)
                .unwrap()
                .rewrite(c.model("c").unwrap(), Format::Anthropic, None)
                .unwrap();
            let v: Value = serde_json::from_slice(&out.to_vec()).unwrap();
            assert_eq!(v["max_tokens"].as_f64(), want.as_f64(), "{written}");
        }
        let raw = Bytes::from_static(br#"{"model":"c","max_tokens":"20000","messages":[]}"#);
        let c = config();
        let e = ClientBody::parse(&raw)
            .unwrap()
            .rewrite(c.model("c").unwrap(), Format::Anthropic, None)
            .unwrap_err();
        assert_eq!(e.status_code(), 400);
    }

    /// A thinking budget too large to add 4000 to is a 400, not a panic
    /// (debug) or a wrapped `max_tokens` (release).
    #[test]
    fn a_thinking_budget_at_the_edge_is_400() {
        let c = config();
        let body = json!({"model":"c","thinking":{"type":"enabled","budget_tokens":u64::MAX},"messages":[]});
        let raw = Bytes::from(body.to_string());
        let e = ClientBody::parse(&raw)
            .unwrap()
            .rewrite(c.model("c").unwrap(), Format::Anthropic, None)
            .unwrap_err();
        assert_eq!(e.status_code(), 400);
        assert!(e.to_string().contains("budget_tokens"), "{e}");
        let body = json!({"model":"c","thinking":{"type":"enabled","budget_tokens":u64::MAX - 4000},"messages":[]});
        let (body, _) = rewrite(body, Format::Anthropic, None);
        assert_eq!(body["max_tokens"], u64::MAX);
    }

    /// Everything the rewrite does not touch stays byte for byte.
    #[test]
    fn untouched_bytes_survive_exactly() {
        let raw = Bytes::from_static(
            br#" { "messages" : [ {"content":"\u00e9 \"model\": 1"} ],"model":"c" ,"x":1.50}"#,
        );
        let c = config();
        let (out, _) = ClientBody::parse(&raw)
            .unwrap()
            .rewrite(c.model("c").unwrap(), Format::OpenAi, None)
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&out.to_vec()).unwrap(),
            r#" {"reasoning_effort":"medium", "messages" : [ {"content":"\u00e9 \"model\": 1"} ],"model":"claude-up" ,"x":1.50}"#
        );
    }

    #[test]
    fn bad_bodies_are_400() {
        for raw in [
            &b"[1]"[..],
            b"{\"model\": 5}",
            b"{}",
            b"{\"model\":\"a\",\"model\":\"b\"}",
            b"\xff",
            // Not UTF-8 deep inside otherwise valid JSON: a bad continuation
            // byte, an encoded surrogate, an overlong '/'.
            b"{\"model\":\"a\",\"messages\":[{\"content\":\"ok \xc3\x28\"}]}",
            b"{\"model\":\"a\",\"x\":\"\xed\xa0\x80\"}",
            b"{\"model\":\"a\",\"x\":\"\xc0\xaf\"}",
        ] {
            let e = ClientBody::parse(&Bytes::from_static(raw)).unwrap_err();
            assert_eq!(e.status_code(), 400, "{raw:?}");
        }
    }
}
