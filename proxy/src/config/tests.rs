//! Config loading: the shipped files, and each trap refused with its field.

use super::*;

const GOOD: &str = r#"{
    "_comment": "ignored",
    "port": 8004,
    "endpoints": [
        {"name": "ohmygpt-openai", "base_url": "https://api.ohmygpt.com/v1/chat/completions", "api_key_env": "K"},
        {"name": "ohmygpt-anthropic", "base_url": "https://api.ohmygpt.com/v1/messages", "api_key_env": ["K1", "K2"]}
    ],
    "models": [
        {"id": "gpt-4o", "type": "openai", "upstream": "ohmygpt", "id_aliases": ["4o"],
         "upstream_model_id": ["a", "b"], "upstream_model_weights": [3, 1],
         "input_price_per_mtok": 2.5, "output_price_per_mtok": 10, "billing_multiplier": 2,
         "cache_hit_price_per_mtok": 1.25},
        {"id": "claude", "type": "anthropic", "upstream": "ohmygpt", "reasoning": "high",
         "input_price_per_mtok": 3, "output_price_per_mtok": 15,
         "cache_write_price_per_mtok": 3.75, "cache_hit_price_per_mtok": 0.3}
    ],
    "system_prompt": "",
    "user_agent": "goproxy"
}"#;

fn with(patch: impl FnOnce(&mut Value)) -> Result<Config, ConfigError> {
    let mut v: Value = serde_json::from_str(GOOD).unwrap();
    patch(&mut v);
    Config::from_json(&v.to_string(), "test.json")
}

fn err(patch: impl FnOnce(&mut Value)) -> String {
    with(patch)
        .expect_err("config should be refused")
        .to_string()
}

/// The body budget's default is never below one body.
#[test]
fn body_budget_default_follows_a_larger_max_body() {
    let c = with(|v| v["max_body_bytes"] = (1u64 << 30).into()).unwrap();
    assert_eq!(c.max_body_bytes_in_flight, 1 << 30);
}

/// The reference file loads, resolves endpoints and applies defaults.
#[test]
fn good_config_loads() {
    let c = Config::from_json(GOOD, "good.json").unwrap();
    assert_eq!(c.port(), 8004);
    assert_eq!(c.host().to_string(), "0.0.0.0");
    assert_eq!(c.models().len(), 2);
    let m = c.model("4o").unwrap();
    assert_eq!(&*m.id, "gpt-4o");
    assert_eq!(m.prices.input, 5.0);
    assert_eq!(
        &*c.endpoint_for(m, Format::Anthropic).unwrap().name,
        "ohmygpt-anthropic"
    );
    assert_eq!(c.model("claude").unwrap().thinking_budget, Some(10000));
    assert_eq!(c.idle_timeout, Duration::from_secs(75));
    assert_eq!(c.max_body_bytes_in_flight, 256 << 20);
    assert_eq!(c.max_connections, 4096);
    assert_eq!(c.drain_timeout, Duration::from_secs(30));
    assert_eq!(c.read_on_after_disconnect, Duration::from_secs(60));
    assert_eq!(c.endpoints()[1].api_key_env, vec!["K1", "K2"]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.summary(),
        "config OK: good.json: port 8004, 2 endpoints, 2 models; bodies up to 10485760 bytes, 268435456 in flight; 4096 connections"
    );
}

/// Malformed JSON is reported with file, line and column.
#[test]
fn malformed_json_has_line_and_column() {
    let e = Config::from_json("{\n  \"port\": 8004,\n  oops\n}", "bad.json")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("bad.json:3:3: invalid JSON"), "{e}");
}

#[test]
fn port_missing_zero_too_big_or_string_is_refused() {
    let e = err(|v| {
        v.as_object_mut().unwrap().remove("port");
    });
    assert!(e.contains("test.json: port = (missing)"), "{e}");
    for (bad, shown) in [
        (serde_json::json!(0), "0"),
        (serde_json::json!(70000), "70000"),
        (serde_json::json!("8004"), "\"8004\""),
        (serde_json::json!(80.5), "80.5"),
        (serde_json::json!(-1), "-1"),
    ] {
        let whole = bad.is_i64() || bad.is_u64();
        let e = err(|v| v["port"] = bad);
        assert!(e.contains(&format!("test.json: port = {shown}")), "{e}");
        // A whole number out of range is not told it is a string or a
        // fraction.
        assert_eq!(!e.contains("not a string or a fraction"), whole, "{e}");
    }
}

#[test]
fn upstream_naming_no_endpoint_is_refused() {
    let e = err(|v| v["models"][0]["upstream"] = "nowhere".into());
    assert!(
        e.contains("models[0].upstream = \"nowhere\": names no endpoint"),
        "{e}"
    );
}

#[test]
fn duplicate_ids_and_aliases_are_refused() {
    let e = err(|v| v["models"][1]["id"] = "gpt-4o".into());
    assert!(e.contains("models[1].id = \"gpt-4o\": duplicate"), "{e}");
    let e = err(|v| v["models"][1]["id_aliases"] = serde_json::json!(["4o"]));
    assert!(
        e.contains("models[1].id_aliases[0] = \"4o\": duplicate"),
        "{e}"
    );
}

#[test]
fn non_http_base_url_is_refused() {
    let e = err(|v| v["endpoints"][0]["base_url"] = "ftp://x/y".into());
    assert!(e.contains("endpoints[0].base_url = \"ftp://x/y\""), "{e}");
    let e = err(|v| v["endpoints"][0]["base_url"] = "api.ohmygpt.com/v1".into());
    assert!(e.contains("endpoints[0].base_url"), "{e}");
}

#[test]
fn weights_must_match_their_list() {
    let e = err(|v| v["models"][0]["upstream_model_weights"] = serde_json::json!([1]));
    assert!(
        e.contains(
            "models[0].upstream_model_weights = [1]: has 1 weights but upstream_model_id has 2 ids"
        ),
        "{e}"
    );
    let e = err(|v| v["models"][0]["upstream_model_weights"] = serde_json::json!([0, 0]));
    assert!(e.contains("sum above 0"), "{e}");
}

#[test]
fn model_no_endpoint_serves_is_refused() {
    let e = err(|v| {
        v["models"][1].as_object_mut().unwrap().remove("upstream");
        v["models"][1]["type"] = "gemini".into();
    });
    // The field to write is named, with the endpoint names looked for
    // (it blamed `models[1].id`, with placeholders).
    assert!(
        e.contains("models[1].upstream = (missing): no endpoint serves model claude by its type gemini (looked for gemini-openai, gemini-anthropic, openai, anthropic)"),
        "{e}"
    );
    // Weights without the ids they weigh: the ids are what is missing.
    let e = err(|v| {
        v["models"][0]
            .as_object_mut()
            .unwrap()
            .remove("upstream_model_id");
    });
    assert!(
        e.contains("models[0].upstream_model_weights = [3,1]: has 2 weights but upstream_model_id is missing"),
        "{e}"
    );
}

#[test]
fn idle_timeout_must_exceed_nginx_keepalive() {
    let e = err(|v| v["idle_timeout_secs"] = 60.into());
    assert!(e.contains("idle_timeout_secs = 60"), "{e}");
    assert!(e.contains("nginx"), "{e}");
}

#[test]
fn unknown_keys_warn_but_load() {
    let c = with(|v| v["extra_thing"] = 1.into()).unwrap();
    assert_eq!(c.warnings, vec!["unknown key extra_thing ignored"]);
    // Dashed field names are names, not keys: shown as written.
    let c = with(|v| v["models"][0]["anthropic-version"] = "2023-06-01".into()).unwrap();
    assert_eq!(
        c.warnings,
        vec!["unknown key models[0].anthropic-version ignored (model \"gpt-4o\")"]
    );
    // One word in common is not a near miss.
    let c = with(|v| v["models"][0]["upstream_weights"] = 1.into()).unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
}

#[test]
fn weighted_pick_only_returns_listed_ids() {
    let c = Config::from_json(GOOD, "good.json").unwrap();
    let m = c.model("gpt-4o").unwrap();
    let picks: Vec<&str> = (0..200).map(|_| &**m.pick_upstream_id()).collect();
    assert!(picks.iter().all(|p| *p == "a" || *p == "b"));
    assert!(picks.contains(&"a") && picks.contains(&"b"));
}

#[test]
fn shipped_configs_agree_on_port_8004() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let prod = Config::load(&dir.join("config-ohmygpt-prod.json")).unwrap();
    let dev = Config::load(&dir.join("config-ohmygpt-dev.json")).unwrap();
    assert_eq!(prod.port(), 8004);
    assert_eq!(dev.port(), prod.port());
    assert!(prod.warnings.is_empty(), "{:?}", prod.warnings);
}

/// Each config that would fail at run time is refused at load, naming the
/// field, the model and the value.
#[test]
fn run_time_traps_are_refused() {
    type Patch = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(Patch, &str)> = vec![
        (
            Box::new(|v| {
                v["models"][0]["upstream_model_weights"] = serde_json::json!([1e308, 1e308])
            }),
            "models[0].upstream_model_weights = [1e+308,1e+308]: weights must be finite",
        ),
        (
            Box::new(|v| v["user_agent"] = "goproxy\r\nX-Evil: 1".into()),
            "user_agent = \"goproxy\\r\\nX-Evil: 1\": must be printable ASCII",
        ),
        (
            Box::new(|v| v["user_agent"] = "caf\u{e9}".into()),
            "user_agent = \"caf\u{e9}\"",
        ),
        (
            Box::new(|v| v["sse_heartbeat_secs"] = serde_json::json!(1e-9)),
            "sse_heartbeat_secs = 1e-9: must be 0 (off)",
        ),
        (
            Box::new(|v| v["models"] = serde_json::json!([])),
            "models = []: at least one model is required",
        ),
        (
            Box::new(|v| v["endpoints"] = serde_json::json!([])),
            "endpoints = []: at least one endpoint",
        ),
        (
            Box::new(|v| v["client_api_keys_env"] = serde_json::json!([])),
            "client_api_keys_env = []: an empty list accepts no client",
        ),
        (
            Box::new(|v| v["endpoints"][0]["api_key_env"] = serde_json::json!([])),
            "endpoints[0].api_key_env = []",
        ),
        (
            Box::new(|v| v["stream_idle_timeout_secs"] = 0.into()),
            "stream_idle_timeout_secs = 0: must be a number of seconds from 1 to 3600",
        ),
        (
            Box::new(|v| v["read_on_after_disconnect_secs"] = serde_json::json!(-1)),
            "read_on_after_disconnect_secs = -1: must be a number of seconds from 0 to 3600",
        ),
        (
            Box::new(|v| v["read_on_after_disconnect_secs"] = "60".into()),
            "read_on_after_disconnect_secs",
        ),
        (
            Box::new(|v| v["drain_timeout_secs"] = serde_json::json!(1e9)),
            "drain_timeout_secs = 1000000000: must be",
        ),
        (
            Box::new(|v| v["connect_timeout_secs"] = serde_json::json!(1e-6)),
            "connect_timeout_secs = 1e-6",
        ),
        (
            Box::new(|v| v["models"][0]["id_aliases"] = serde_json::json!([""])),
            "models[0].id_aliases[0] = \"\": must not be empty (model \"gpt-4o\")",
        ),
        (
            Box::new(|v| {
                v["endpoints"][0]["base_url"] =
                    "https://user:s3cret@api.ohmygpt.com/v1/chat/completions".into()
            }),
            "endpoints[0].base_url = \"https://***@api.ohmygpt.com/v1/chat/completions\": carries user:password@ and api_key_env names a key",
        ),
        (
            Box::new(|v| v["endpoints"][0]["base_url"] = "ftp://user:s3cret@x/y".into()),
            "endpoints[0].base_url = \"ftp://***@x/y\": must start with http:// or https://",
        ),
        (
            Box::new(|v| v["models"][1]["billing_multiplier"] = serde_json::json!(-1)),
            "models[1].billing_multiplier = -1: must be a finite number >= 0 (model \"claude\")",
        ),
        (
            Box::new(|v| {
                v["models"][0]["billing_multiplier"] = serde_json::json!(1e300);
                v["models"][0]["input_price_per_mtok"] = serde_json::json!(1e300);
            }),
            "models[0].input_price_per_mtok = 1e300: times billing_multiplier (1e300) is too large",
        ),
        (
            Box::new(|v| v["models"][0]["id"] = "gpt\"4o".into()),
            "models[0].id = \"gpt\\\"4o\": must be printable ASCII",
        ),
        (
            Box::new(|v| v["models"][0]["id"] = "gpt\n4o".into()),
            "models[0].id = \"gpt\\n4o\": must be printable ASCII",
        ),
        (
            Box::new(|v| v["models"][0]["id_aliases"] = serde_json::json!(["ok", "b a d"])),
            "models[0].id_aliases[1] = \"b a d\": must be printable ASCII",
        ),
        (
            Box::new(|v| v["models"][0]["upstream_model_id"] = serde_json::json!(["a", "b\u{7f}"])),
            "models[0].upstream_model_id[1] = \"b\\u007f\": must be printable ASCII",
        ),
        (
            Box::new(|v| v["models"][0]["name"] = "GPT\u{1b}[31m".into()),
            "models[0].name = \"GPT\\u001b[31m\": must not hold control or invisible characters",
        ),
        (
            Box::new(|v| v["models"][0]["id_aliases"] = serde_json::json!(["ok", ["x"]])),
            "models[0].id_aliases[1] = [\"x\"]: expected a string, found a list (model \"gpt-4o\")",
        ),
        (
            Box::new(|v| v["models"][0]["upstream_model_weights"] = serde_json::json!([1, "2"])),
            "models[0].upstream_model_weights[1] = \"2\": expected a number, found a string",
        ),
        (
            Box::new(|v| v["models"][1] = serde_json::json!("claude")),
            "test.json: models[1] = \"claude\": expected an object",
        ),
        (
            Box::new(|v| v["models"][1]["thinking_budget"] = 512.into()),
            "models[1].thinking_budget = 512: must be 0 (off) or from 1024 to 124000 tokens",
        ),
        (
            Box::new(|v| v["endpoints"][0]["base_url"] = "https://api.ohmygpt.com:0/v1/chat/completions".into()),
            "endpoints[0].base_url = \"https://api.ohmygpt.com:0/v1/chat/completions\": port 0",
        ),
        (
            Box::new(|v| v["endpoints"][0]["base_url"] = "https://api.ohmygpt.com".into()),
            "endpoints[0].base_url = \"https://api.ohmygpt.com\": has no path",
        ),
        (
            Box::new(|v| v["host"] = "224.0.0.1".into()),
            "host = \"224.0.0.1\": is a multicast or broadcast address",
        ),
        (
            Box::new(|v| v["host"] = "255.255.255.255".into()),
            "host = \"255.255.255.255\": is a multicast or broadcast address",
        ),
        (
            Box::new(|v| v["endpoints"][0]["api_key_envv"] = "K".into()),
            "endpoints[0].api_key_envv = \"K\": unknown key; did you mean api_key_env?",
        ),
        (
            Box::new(|v| v["Port"] = 8005.into()),
            "Port = 8005: unknown key; did you mean port?",
        ),
        (
            Box::new(|v| v["models"][0]["upstream_model"] = "gpt-4o-2024-08-06".into()),
            "models[0].upstream_model = \"gpt-4o-2024-08-06\": unknown key; did you mean upstream_model_id?",
        ),
        (
            Box::new(|v| v["endpoints"][0]["api_key"] = "OPENAI_API_KEY".into()),
            "endpoints[0].api_key = \"OPENAI_API_KEY\": unknown key; did you mean api_key_env?",
        ),
        (
            Box::new(|v| v["models"][0]["input_price_per_mtok_usd"] = 1.into()),
            "models[0].input_price_per_mtok_usd = 1: unknown key; did you mean input_price_per_mtok?",
        ),
        (
            Box::new(|v| v["endpoints"][0]["token"] = "sk-proj-REALKEYabcdefghijklmnop1234".into()),
            "endpoints[0].token = (a string hidden: it holds what looks like a key): unknown key holding what looks like a key: goproxy reads keys only from environment variables",
        ),
        (
            Box::new(|v| v["endpoints"][0]["secret"] = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6".into()),
            "endpoints[0].secret = (a string hidden: it holds what looks like a key): unknown key holding",
        ),
        (
            Box::new(|v| v["max_body_bytes"] = 1.into()),
            "max_body_bytes = 1: must be a whole number of bytes from 1024 to 1073741824",
        ),
        (
            Box::new(|v| v["max_body_bytes"] = serde_json::json!(1e308)),
            "max_body_bytes = 1e308: must be a whole number of bytes from 1024 to 1073741824",
        ),
        (
            Box::new(|v| v["max_body_bytes"] = 0.into()),
            "max_body_bytes = 0: must be a whole number of bytes from 1024 to 1073741824",
        ),
        (
            Box::new(|v| v["max_connections"] = 0.into()),
            "max_connections = 0: must be a whole number of connections from 1 to 1048576",
        ),
        (
            Box::new(|v| v["max_body_bytes_in_flight"] = serde_json::json!(-1)),
            "max_body_bytes_in_flight = -1: must be a whole number of bytes from 1024 to 68719476736",
        ),
        (
            Box::new(|v| {
                v["max_body_bytes"] = 2_000_000.into();
                v["max_body_bytes_in_flight"] = 1_000_000.into();
            }),
            "max_body_bytes_in_flight = 1000000: must be at least max_body_bytes (2000000)",
        ),
        (
            Box::new(|v| v["max_body_bytes_in_flight"] = "256MiB".into()),
            "max_body_bytes_in_flight = \"256MiB\": must be a whole number of bytes from 1024 to 68719476736 (write it as a number, without quotes: 268435456)",
        ),
        (
            Box::new(|v| v["max_connections"] = "512".into()),
            "max_connections = \"512\": must be a whole number of connections from 1 to 1048576 (write it as a number, without quotes: 512)",
        ),
        (
            Box::new(|v| v["max_body_bytes"] = "10 MB".into()),
            "max_body_bytes = \"10 MB\": must be a whole number of bytes from 1024 to 1073741824 (write it as a number, without quotes: 10485760)",
        ),
        (
            Box::new(|v| v["max_conections"] = 10.into()),
            "max_conections = 10: unknown key; did you mean max_connections?",
        ),
        (
            Box::new(|v| v["hots"] = "127.0.0.1".into()),
            "hots = \"127.0.0.1\": unknown key; did you mean host?",
        ),
        (
            Box::new(|v| v["endpoints"][0]["nmae"] = "x".into()),
            "endpoints[0].nmae = \"x\": unknown key; did you mean name?",
        ),
        (
            Box::new(|v| v["endpoints"][0]["name"] = "\u{1b}[31mX-openai".into()),
            "endpoints[0].name = \"\\u001b[31mX-openai\": must be printable ASCII",
        ),
        (
            Box::new(|v| v["models"][0]["id"] = "gpt\u{200b}4o".into()),
            "models[0].id = \"gpt\u{200b}4o\": must be printable ASCII",
        ),
        (
            Box::new(|v| v["models"][0]["name"] = "GPT \u{202e}4o".into()),
            "models[0].name = \"GPT \u{202e}4o\": must not hold control or invisible characters",
        ),
        (
            Box::new(|v| v["models"][0]["name"] = "  ".into()),
            "models[0].name = \"  \": must not be empty",
        ),
        (
            Box::new(|v| v["models"][0]["upstream"] = "".into()),
            "models[0].upstream = \"\": must not be empty",
        ),
        (
            Box::new(|v| v["models"][0]["type"] = "openai\n".into()),
            "models[0].type = \"openai\\n\": must be printable ASCII",
        ),
        (
            Box::new(|v| v["models"][0].as_object_mut().unwrap().remove("id").map(|_| ()).unwrap()),
            "models[0].id = (missing): required",
        ),
        (
            Box::new(|v| v["models"][1]["thinking_budget"] = 200_000.into()),
            "models[1].thinking_budget = 200000: must be a whole number of tokens: 0 (off), or from 1024 to 124000",
        ),
        (
            Box::new(|v| v["models"][1]["thinking_budget"] = (-1).into()),
            "models[1].thinking_budget = -1: must be a whole number of tokens: 0 (off), or from 1024 to 124000",
        ),
        (
            Box::new(|v| v["models"][0]["upstream_model_weights"] = serde_json::json!([1, -1])),
            "models[0].upstream_model_weights[1] = -1: must be a finite number >= 0",
        ),
        (
            Box::new(|v| v["models"][0]["upstream_model_id"] = serde_json::json!(["ok", ""])),
            "models[0].upstream_model_id[1] = \"\": must not be empty",
        ),
        (
            Box::new(|v| v["endpoints"][0]["base_url"] = "http://224.0.0.1/v1/chat/completions".into()),
            "is a multicast address",
        ),
        (
            Box::new(|v| v["endpoints"][0]["base_url"] = "http://0.0.0.0/v1/chat/completions".into()),
            "is the unspecified address",
        ),
        (
            Box::new(|v| v["endpoints"][0]["base_url"] = "http:///v1/chat/completions".into()),
            "endpoints[0].base_url = \"http:///v1/chat/completions\": has no host",
        ),
        (
            Box::new(|v| v["endpoints"][0]["base_url"] = "http://./v1/chat/completions".into()),
            "has no host name (only dots)",
        ),
        (
            Box::new(|v| v["endpoints"][0]["base_url"] = "https://api.ohmygpt.com/v1/chat completions".into()),
            "holds U+0020 (a space, control character or backslash)",
        ),
        (
            Box::new(|v| v["user_agent"] = "x".repeat(2000).into()),
            "user_agent = \"xxxx",
        ),
    ];
    for (patch, expected) in cases {
        let e = err(patch);
        assert!(e.contains(expected), "expected {expected:?} in {e:?}");
    }
}

/// Wrong JSON types name the field and the model, never a Rust type.
#[test]
fn type_errors_name_the_field_and_model() {
    let e = err(|v| v["models"][1]["upstream_model_id"] = 5.into());
    assert_eq!(e, "test.json: models[1].upstream_model_id = 5: expected a string or a list of strings, found a number (model \"claude\")");
    let e = err(|v| v["models"][0]["input_price_per_mtok"] = "2.5".into());
    assert!(e.contains("models[0].input_price_per_mtok = \"2.5\": expected a number, found a string (model \"gpt-4o\")"), "{e}");
    let e = err(|v| v["endpoints"][1]["api_key_env"] = 7.into());
    assert!(
        e.contains("endpoints[1].api_key_env = 7: expected an environment variable name"),
        "{e}"
    );
    let e = err(|v| v["models"][0]["upstream"] = "nowhere".into());
    assert!(e.ends_with("(model \"gpt-4o\")"), "{e}");
    let e = Config::from_json("[1, 2]", "list.json")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "list.json:1:1: the config must be a JSON object {...}, found a list"
    );
    for e in [e, err(|v| v["models"][0] = 1.into())] {
        assert!(
            !e.contains("Raw") && !e.contains("untagged") && !e.contains("StringOrList"),
            "{e}"
        );
    }
}

/// UTF-16 without a byte-order mark is named as such (it failed as
/// "key must be a string" at 1:2).
#[test]
fn utf16_without_a_bom_is_named() {
    let utf16le: String = GOOD.chars().flat_map(|c| [c, '\0']).collect();
    let e = Config::from_json(&utf16le, "u16.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("u16.json:1:1: the file holds NUL bytes: it is UTF-16"),
        "{e}"
    );
}

/// A byte-order mark is named as such.
#[test]
fn byte_order_mark_is_named() {
    let e = Config::from_json(&format!("\u{feff}{GOOD}"), "bom.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("bom.json:1:1: the file starts with a UTF-8 byte-order mark"),
        "{e}"
    );
}

/// A key pasted where a variable name belongs is refused and never echoed.
#[test]
fn keys_in_api_key_env_are_refused_unshown() {
    for key in [
        "sk-proj-abcdefghijklmnop1234",
        "AbCdEfGh1234567890XyZq",
        "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6",
        "JBSWY3DPEHPK3PXP4Q2ZLMNO",
    ] {
        let e = err(|v| v["endpoints"][0]["api_key_env"] = key.into());
        assert!(
            e.contains("endpoints[0].api_key_env[0] = (hidden: it looks like a key)"),
            "{e}"
        );
        assert!(!e.contains(&key[4..]), "{e}");
        assert!(
            e.contains("if this is a name, write it in UPPER_SNAKE_CASE"),
            "{e}"
        );
        let e = err(|v| v["client_api_keys_env"] = serde_json::json!(["OK_NAME", key]));
        assert!(e.contains("client_api_keys_env[1] = (hidden"), "{e}");
        assert!(!e.contains(&key[4..]), "{e}");
    }
    // Real names, however long, are names.
    for name in ["OHMYGPT_API_KEY_2", "AZURE_OPENAI_API_KEY_EASTUS2"] {
        with(|v| v["endpoints"][0]["api_key_env"] = name.into()).expect(name);
    }
    let e = err(|v| v["endpoints"][0]["api_key_env"] = "MY KEY".into());
    assert!(
        e.contains("= \"MY KEY\": must be an environment variable name"),
        "{e}"
    );
}

/// The upstream named directly as an endpoint serves the model; a missing
/// one is blamed on `upstream`, with the model's id.
#[test]
fn upstream_naming_an_endpoint_routes_to_it() {
    let c = with(|v| {
        v["endpoints"] = serde_json::json!([
            {"name": "openai", "base_url": "https://a.example/v1/chat/completions"},
            {"name": "m-openai", "base_url": "https://m.example/v1/chat/completions"}
        ]);
        v["models"] = serde_json::json!([{"id": "x", "upstream": "m-openai"}]);
    })
    .unwrap();
    let m = c.model("x").unwrap();
    assert_eq!(
        &*c.endpoint_for(m, Format::OpenAi).unwrap().name,
        "m-openai"
    );
    let e = err(|v| {
        v["endpoints"] = serde_json::json!([
            {"name": "z-anthropic", "base_url": "https://a.example/v1/messages"}
        ]);
        v["models"] = serde_json::json!([{"id": "x", "upstream": "nowhere"}]);
    });
    assert!(e.contains("models[0].upstream = \"nowhere\""), "{e}");
    assert!(e.contains("(model \"x\")"), "{e}");
}

/// Secrets in wrongly shaped fields and in base_url are never echoed.
#[test]
fn secrets_in_config_errors_are_hidden() {
    let key = "sk-ant-api03-Zq8Wm2Lp5Rt7Yv1Nx4Kc6Bd";
    let shapes = [
        serde_json::json!({"k": key}),
        serde_json::json!([[key]]),
        serde_json::json!([{"name": key}]),
    ];
    for shape in shapes {
        let e = err(|v| v["endpoints"][0]["api_key_env"] = shape.clone());
        assert!(!e.contains("Zq8Wm2"), "{e}");
    }
    for url in [
        "http:\\\\user:ss0rdZq8Wm2@127.0.0.1:9001\\v1",
        "https:user:ss0rdZq8Wm2@api.example.com/v1/chat/completions",
        "https:/user:ss0rdZq8Wm2@api.example.com/v1/chat/completions",
        "https://user:pa/ss0rdZq8Wm2@api.example.com/v1/chat/completions",
        "https://user:pa#ss0rdZq8Wm2@api.example.com/v1/chat/completions",
        "https://user:pa?ss0rdZq8Wm2@api.example.com/v1/chat/completions",
        "https://api.example.com/v1/chat/completions?key=ss0rdZq8Wm2",
    ] {
        let e = err(|v| {
            v["endpoints"][0]["base_url"] = url.into();
            v["endpoints"][0]["api_key_envv"] = "K".into();
        });
        assert!(!e.contains("Zq8Wm2"), "{e}");
        let e = err(|v| {
            v["endpoints"][0]["base_url"] = format!("{url}:0")
                .replace("ftp", "x")
                .replace("https", "ftp")
                .into()
        });
        assert!(!e.contains("Zq8Wm2"), "{e}");
    }
}

/// A key twice in one object is refused at its line; an empty file says so.
#[test]
fn duplicate_keys_and_empty_files_are_named() {
    let text = "{\n  \"port\": 8004,\n  \"port\": 8005\n}";
    let e = Config::from_json(text, "dup.json").unwrap_err().to_string();
    assert!(e.starts_with("dup.json:3:"), "{e}");
    assert!(
        e.contains("duplicate key \"port\" in the top-level object"),
        "{e}"
    );
    let nested = GOOD.replace(
        "\"upstream\": \"ohmygpt\", \"reasoning\"",
        "\"upstream\": \"ohmygpt\", \"upstream\": \"x\", \"reasoning\"",
    );
    let e = Config::from_json(&nested, "dup.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("duplicate key \"upstream\" in models[1] (model \"claude\")"),
        "{e}"
    );
    let deep = GOOD.replace(
        "\"K1\", \"K2\"]}",
        "\"K1\", \"K2\"], \"x\": [{\"a\": 1, \"a\": 2}]}",
    );
    let e = Config::from_json(&deep, "dup.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("duplicate key \"a\" in endpoints[1].x[0] ("),
        "{e}"
    );
    for empty in ["", "  \n"] {
        let e = Config::from_json(empty, "empty.json")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "empty.json:1:1: the file is empty (expected a JSON object {...})"
        );
    }
}

/// Huge numbers are shown as written, not as 309 digits; DEL is escaped.
#[test]
fn values_are_shown_short_and_printable() {
    let e = err(|v| v["drain_timeout_secs"] = serde_json::json!(1e308));
    assert!(e.contains("drain_timeout_secs = 1e308: must be"), "{e}");
    let e = err(|v| v["host"] = "1.2.3.\u{7f}".into());
    assert!(!e.contains('\u{7f}'), "{e:?}");
    assert!(e.contains("\\u007f"), "{e}");
}

/// An upstream naming an endpoint that is not loaded says why; a pasted
/// secret as a key is not echoed; deep nesting is named in plain words.
#[test]
fn odd_names_keys_and_nesting_are_explained() {
    let e = err(|v| {
        v["endpoints"][1]["name"] = "bad".into();
        v["models"][1]["upstream"] = "bad".into();
    });
    assert!(e.contains("names endpoint bad, which is not loaded"), "{e}");
    let secret = "sk-proj-Zq8Wm2Lp5Rt7Yv1Nx4Kc6Bd";
    let c = with(|v| v[secret] = 1.into()).unwrap();
    assert!(!c.warnings.join(" ").contains("Zq8Wm2"), "{:?}", c.warnings);
    let text = GOOD.replacen(
        "\"port\": 8004",
        &format!("\"{secret}\": 1, \"{secret}\": 2, \"port\": 8004"),
        1,
    );
    let e = Config::from_json(&text, "t.json").unwrap_err().to_string();
    assert!(e.contains("duplicate key") && !e.contains("Zq8Wm2"), "{e}");
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let e = Config::from_json(&deep, "t.json").unwrap_err().to_string();
    assert!(e.contains("nested more than 128 levels deep"), "{e}");
    let c = with(|v| v["\u{1b}[31mX"] = 1.into()).unwrap();
    assert!(!c.warnings.join(" ").contains('\u{1b}'), "{:?}", c.warnings);
}

/// A thinking budget that no route can use is warned about.
#[test]
fn thinking_budget_without_an_anthropic_route_is_warned() {
    let c = with(|v| {
        v["endpoints"] = serde_json::json!([
            {"name": "x-openai", "base_url": "https://a.example/v1/chat/completions"}
        ]);
        v["models"] = serde_json::json!([{"id": "m", "upstream": "x", "thinking_budget": 2048, "input_price_per_mtok": 1, "cache_hit_price_per_mtok": 0.1}]);
    })
    .unwrap();
    assert_eq!(
        c.warnings,
        vec!["models[0].thinking_budget is ignored: model m is served on no Anthropic route"]
    );
}

/// `user:password@` in a base_url becomes `Authorization: Basic` of the
/// percent-decoded bytes as they are: a byte that is not UTF-8 (`%ff`)
/// dropped the whole header, or the password, without a word.
#[test]
fn base_url_credentials_keep_every_byte() {
    use base64::Engine as _;
    for (userinfo, plain) in [
        ("user:pw", &b"user:pw"[..]),
        ("%ff:pwSECRET", b"\xff:pwSECRET"),
        ("user:%ffpw", b"user:\xffpw"),
        ("user", b"user:"),
        (":pw", b":pw"),
    ] {
        let c = with(|v| {
            v["endpoints"][0]["base_url"] =
                format!("http://{userinfo}@127.0.0.1:9/v1/chat/completions").into();
            v["endpoints"][0]
                .as_object_mut()
                .unwrap()
                .remove("api_key_env");
        })
        .unwrap();
        let e = &c.endpoints()[0];
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(plain)
        );
        assert_eq!(
            e.basic_auth.as_ref().map(|h| h.as_bytes()),
            Some(want.as_bytes()),
            "{userinfo}"
        );
        assert_eq!(e.uri.to_string(), "http://127.0.0.1:9/v1/chat/completions");
    }
}

/// A whole number written as a fraction or with an exponent shows as one,
/// with what to write instead (it showed as `1048576`, then "must be a
/// whole number" contradicted it).
#[test]
fn whole_numbers_written_as_fractions_say_how_to_write_them() {
    let e = err(|v| v["max_body_bytes"] = serde_json::json!(1048576.0));
    assert!(
        e.contains("max_body_bytes = 1048576.0: must be a whole number of bytes from 1024 to 1073741824 (write it without a decimal point or exponent: 1048576)"),
        "{e}"
    );
    // No advice that would be refused too.
    for out_of_range in [serde_json::json!(-0.0), serde_json::json!(2e9)] {
        let e = err(|v| v["max_body_bytes"] = out_of_range.clone());
        assert!(!e.contains("write it without"), "{e}");
        let e = err(|v| v["port"] = out_of_range.clone());
        assert!(!e.contains("write it without"), "{e}");
    }
    let e = with(|v| v["port"] = serde_json::json!(1e3))
        .unwrap_err()
        .to_string();
    assert!(e.contains("port = 1000.0: must be a whole port number from 1 to 65535 (not a string or a fraction) (write it without a decimal point or exponent: 1000)"), "{e}");
    let e = err(|v| v["max_body_bytes"] = serde_json::json!(1.5));
    assert!(
        e.contains("max_body_bytes = 1.5: must be a whole number of bytes from 1024 to 1073741824"),
        "{e}"
    );
    assert!(!e.contains("write it"), "{e}");
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they are,
/// a base_url path with `.` or `..` segments (resolved before sending) is
/// refused with the path it would become, and swapped endpoint URLs are
/// warned about.
#[test]
fn mapped_addresses_dot_segments_and_swapped_urls() {
    let url = |u: &str| {
        let u = u.to_string();
        err(move |v| v["endpoints"][0]["base_url"] = u.into())
    };
    let e = err(|v| v["host"] = "::ffff:224.0.0.1".into());
    assert!(
        e.contains("host = \"::ffff:224.0.0.1\": is a multicast or broadcast address"),
        "{e}"
    );
    let e = url("http://[::ffff:224.0.0.1]:9/v1/chat/completions");
    assert!(e.contains("is a multicast address"), "{e}");
    let e = url("http://[::ffff:0.0.0.0]:9/v1/chat/completions");
    assert!(e.contains("is the unspecified address"), "{e}");
    let e = url("http://[::ffff:255.255.255.255]:9/v1/chat/completions");
    assert!(e.contains("is a broadcast address"), "{e}");
    for dots in [
        "http://127.0.0.1:9/v1/../../chat/completions",
        "http://127.0.0.1:9/v1/%2E%2e/v1/chat/completions",
        "http://127.0.0.1:9/./v1/chat/completions",
    ] {
        let e = url(dots);
        assert!(e.contains("has . or .. path segments"), "{dots}: {e}");
    }
    let e = url("http://127.0.0.1:9/v1/../../chat/completions");
    assert!(e.contains("requests would go to /chat/completions"), "{e}");
    // Dots inside a segment are a name, not a segment.
    with(|v| v["endpoints"][0]["base_url"] = "http://127.0.0.1:9/v1.2/..x/chat/completions".into())
        .unwrap();

    let c = with(|v| {
        v["endpoints"][0]["base_url"] = "https://api.ohmygpt.com/v1/messages".into();
        v["endpoints"][1]["base_url"] = "https://api.ohmygpt.com/v1/chat/completions".into();
    })
    .unwrap();
    let w = c.warnings.join("\n");
    assert!(w.contains("endpoint ohmygpt-openai is an openai endpoint but its base_url path /v1/messages is the anthropic route's"), "{w}");
    assert!(
        w.contains("endpoint ohmygpt-anthropic is a anthropic endpoint")
            || w.contains("endpoint ohmygpt-anthropic is an anthropic endpoint"),
        "{w}"
    );
}

/// A billing multiplier of 0 bills every request at 0: loaded, with a
/// warning naming the model. An idle timeout at or under nginx's 60 s says
/// why whatever its value (-1 was told "from 0 to 3600").
#[test]
fn free_models_are_warned_about_and_short_idle_says_why() {
    let c = with(|v| v["models"][1]["billing_multiplier"] = serde_json::json!(0)).unwrap();
    let w = c.warnings.join("\n");
    assert!(
        w.contains(
            "models[1].billing_multiplier = 0: every request of model claude is billed at 0"
        ),
        "{w}"
    );
    for idle in [
        serde_json::json!(-1),
        serde_json::json!(0),
        serde_json::json!(60),
    ] {
        let e = err(|v| v["idle_timeout_secs"] = idle.clone());
        assert!(
            e.contains("must be longer than nginx's upstream keepalive_timeout (60 s)"),
            "{idle}: {e}"
        );
    }
    // Not "from 60": 60 itself is refused.
    let e = err(|v| v["idle_timeout_secs"] = serde_json::json!(4000));
    assert!(
        e.contains(
            "idle_timeout_secs = 4000: must be a number of seconds over 60 and at most 3600"
        ),
        "{e}"
    );
}

/// A base_url the URL parser refuses says the parser's reason when it is
/// one the operator can act on (a port of 99999 was "must be an absolute
/// http:// URL").
#[test]
fn base_url_parse_errors_say_what_is_wrong() {
    for (url, why) in [
        (
            "http://127.0.0.1:99999/v1/chat/completions",
            "has a port that is not a number from 1 to 65535",
        ),
        (
            "http://[::1:/v1/chat/completions",
            "has a host that is not a valid IP address",
        ),
        (
            "http://exa%mple.com/v1/chat/completions",
            "has a host name with characters",
        ),
    ] {
        let e = err(|v| v["endpoints"][0]["base_url"] = url.into());
        assert!(e.contains(why), "{url}: {e}");
    }
}

/// An endpoint name one typo or a case away from the name a line's route
/// looks for is refused at its field, with the name meant: the check said
/// OK and every model of the line answered 404 on that route. An endpoint
/// no model uses, and that is no such near miss, is warned about.
#[test]
fn near_miss_endpoint_names_are_refused_and_unused_ones_warned() {
    for typo in [
        "ohmygtp-openai",
        "OHMYGPT-openai",
        "ohmygpt-OpenAI",
        "ohmygpt-opnai",
    ] {
        let e = err(|v| v["endpoints"][0]["name"] = typo.into());
        assert!(
            e.contains(&format!("endpoints[0].name = \"{typo}\"")),
            "{typo}: {e}"
        );
        assert!(e.contains("did you mean ohmygpt-openai?"), "{typo}: {e}");
    }
    let c = with(|v| {
        let spare = serde_json::json!({"name": "spare-openai", "base_url": "https://x.example/v1/chat/completions"});
        v["endpoints"].as_array_mut().unwrap().push(spare);
    })
    .unwrap();
    assert_eq!(
        c.warnings,
        vec!["endpoint spare-openai is used by no model".to_string()]
    );
}

/// Files a config cannot be are refused in plain words, at once and with
/// bounded memory: a directory, a FIFO (opening it would block), a file
/// over 16 MiB (a device would never end), a missing path; never an OS
/// error number.
#[test]
fn unreadable_config_files_are_refused_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_FILE_BYTES + 1)
        .unwrap();
    let fifo = dir.path().join("fifo.json");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let cases = [
        (dir.path().to_path_buf(), "it is a directory"),
        (fifo, "not a regular file"),
        (big, "larger than 16 MiB"),
        (dir.path().join("missing.json"), "no such file"),
    ];
    for (path, says) in cases {
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
        assert!(!e.contains("os error"), "{e}");
    }
}

/// A variable the system sets is no key: `PATH` was sent upstream as one.
#[test]
fn system_variables_are_not_keys() {
    for name in ["PATH", "home", "LC_ALL", "RUST_LOG", "_"] {
        let e = err(|v| v["endpoints"][1]["api_key_env"] = serde_json::json!(["K1", name]));
        assert!(
            e.contains(&format!(
                "endpoints[1].api_key_env[1] = \"{name}\": names the system variable {name}"
            )),
            "{e}"
        );
        let e = err(|v| v["client_api_keys_env"] = name.into());
        assert!(e.contains("client_api_keys_env[0]"), "{e}");
    }
}

/// A base_url that is not a route's full URL is warned about: an SDK's
/// base (`.../v1`) or a trailing `/` passed the check and every request
/// got the upstream's 404.
#[test]
fn base_urls_that_are_not_the_routes_url_are_warned() {
    let cases = [
        (
            0,
            "https://api.ohmygpt.com/v1",
            "does not end with /chat/completions",
        ),
        (
            0,
            "https://api.ohmygpt.com/v1/chat/completions/",
            "ends with /",
        ),
        (
            1,
            "https://api.ohmygpt.com/v1",
            "does not end with /messages",
        ),
    ];
    for (i, url, says) in cases {
        let c = with(|v| v["endpoints"][i]["base_url"] = url.into()).unwrap();
        assert!(
            c.warnings.iter().any(|w| w.contains(says)),
            "{url}: {:?}",
            c.warnings
        );
    }
    // Azure's deployment URLs end with the route, their query aside.
    let azure =
        "https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21";
    let c = with(|v| v["endpoints"][0]["base_url"] = azure.into()).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

/// The summary counts in words: "1 endpoint, 1 model", not "1 endpoints".
#[test]
fn summary_says_one_in_the_singular() {
    let c = with(|v| {
        v["endpoints"].as_array_mut().unwrap().truncate(1);
        v["models"].as_array_mut().unwrap().truncate(1);
    })
    .unwrap();
    assert_eq!(
        c.summary(),
        "config OK: test.json: port 8004, 1 endpoint, 1 model; bodies up to 10485760 bytes, 268435456 in flight; 4096 connections"
    );
}

/// A model with no prices is warned about (its requests cost 0, which a
/// reseller notices only on the bill); an id too long for a label is
/// refused.
#[test]
fn unpriced_models_are_warned_and_long_ids_refused() {
    // The warnings of the config with these prices of models[1] removed.
    let without = |prices: [&str; 2]| {
        with(|v| {
            let m = v["models"][1].as_object_mut().unwrap();
            prices.iter().for_each(|p| drop(m.remove(*p)));
        })
        .unwrap()
        .warnings
    };
    assert_eq!(
        without(["input_price_per_mtok", "output_price_per_mtok"]),
        vec!["model claude has no input_price_per_mtok or output_price_per_mtok: its requests are counted but cost 0".to_string()]
    );
    // Priced, but cache tokens (the client's to cause) are free.
    assert_eq!(
        without(["cache_write_price_per_mtok", "cache_hit_price_per_mtok"]),
        vec!["model claude has no cache_hit_price_per_mtok (cache reads) or cache_write_price_per_mtok (cache writes): those tokens cost 0, and the client decides how many there are".to_string()]
    );
    let e = err(|v| v["models"][0]["id"] = "m".repeat(5000).into());
    assert!(e.contains("is 5000 characters long: at most 200"), "{e}");
}

/// An endpoint whose URL is goproxy's own listener is refused: each
/// request came back to goproxy and looped until no connection was left
/// (even /health went unanswered). Another port, or another host, is fine.
#[test]
fn an_endpoint_at_goproxys_own_address_is_refused() {
    for (host, url) in [
        (None, "http://127.0.0.1:8004/v1/chat/completions"),
        (None, "http://localhost:8004/v1/chat/completions"),
        (None, "http://LOCALHOST.:8004/v1/chat/completions"),
        (None, "http://[::1]:8004/v1/chat/completions"),
        (None, "http://127.0.0.2:8004/v1/chat/completions"),
        (Some("10.1.2.3"), "http://10.1.2.3:8004/v1/chat/completions"),
        (None, "http://user:pw@127.0.0.1:8004/v1/chat/completions"),
    ] {
        let e = err(|v| {
            v["endpoints"][0]["base_url"] = url.into();
            v["endpoints"][0]["api_key_env"] = Value::Null;
            v["endpoints"][0]
                .as_object_mut()
                .unwrap()
                .remove("api_key_env");
            if let Some(h) = host {
                v["host"] = h.into();
            }
        });
        assert!(
            e.contains("endpoints[0].base_url = \"http://")
                && e.contains("is goproxy's own address (port 8004 on this host)"),
            "{url}: {e}"
        );
        assert!(!e.contains("pw@"), "{e}");
    }
    for url in [
        "http://127.0.0.1:8005/v1/chat/completions",
        "http://10.9.9.9:8004/v1/chat/completions",
        "http://goproxy:8004/v1/chat/completions",
    ] {
        with(|v| v["endpoints"][0]["base_url"] = url.into()).expect(url);
    }
}

/// A host name no resolver looks up is refused at load (each request
/// failed with a DNS error, blamed on the upstream).
#[test]
fn host_names_that_cannot_resolve_are_refused() {
    let long_label = format!("http://{}.com/v1/chat/completions", "a".repeat(64));
    let long_name = format!("http://{}com/v1/chat/completions", "abcdefghi.".repeat(26));
    for (url, why) in [
        ("http://a..b/v1/chat/completions", "an empty label"),
        (long_label.as_str(), "a label over 63 characters"),
        (long_name.as_str(), "a host name over 253 characters"),
    ] {
        let e = err(|v| v["endpoints"][0]["base_url"] = url.into());
        assert!(
            e.contains("endpoints[0].base_url") && e.contains(why),
            "{url}: {e}"
        );
    }
    let fine = format!("http://{}.example.com./v1/chat/completions", "a".repeat(63));
    with(|v| v["endpoints"][0]["base_url"] = fine.clone().into()).expect(&fine);
}

/// A missing list is shown as missing, as every other missing field is
/// (it was shown as `null`, a value the file did not hold).
#[test]
fn missing_lists_are_shown_as_missing() {
    for list in ["endpoints", "models"] {
        let e = err(|v| {
            v.as_object_mut().unwrap().remove(list);
        });
        assert!(e.contains(&format!("{list} = (missing): ")), "{e}");
    }
}

/// A comment is named as one, with what to write instead; a lone
/// surrogate says what a `\u` escape must be; no position is column 0.
#[test]
fn comments_and_escapes_are_explained() {
    for text in [
        "{\n  // upstreams\n  \"port\": 8004\n}",
        "{\"port\": /* the new one */ 8004}",
        "{\"port\": 8004} # done",
        "{\"port\": 8004, // the new one\n \"host\": \"0.0.0.0\"}",
    ] {
        let e = Config::from_json(text, "c.json").unwrap_err().to_string();
        assert!(
            e.contains("(a comment: JSON has none; remove it, or write it as a \"_comment\""),
            "{text}: {e}"
        );
    }
    let e = Config::from_json("{\"name\": \"\\ud800x\"}", "s.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("must be one of a pair"), "{e}");
    let e = Config::from_json("{\"name\": \"a\nb\"}", "n.json")
        .unwrap_err()
        .to_string();
    assert!(!e.contains(":0:"), "{e}");
    assert!(e.starts_with("n.json:2:1: "), "{e}");
}

/// A long value or id cut short in a message still ends in its quote (it
/// ran on as `(model "xxx...)`).
#[test]
fn long_values_cut_short_keep_their_closing_quote() {
    let long = "x".repeat(300);
    let e = err(|v| {
        v["models"][0]["id"] = long.clone().into();
        v["models"][0]["upstream"] = "nowhere".into();
    });
    let cut = e.find("...").expect("cut short");
    assert_eq!(&e[cut..cut + 4], "...\"", "{e}");
    assert!(!e.contains(&long), "{e}");
}
