use std::collections::HashMap;

use super::*;

const UPSTREAM: &str = "sk-proj-Xy7aB3cD9eF1gH5iJ2kL8mN4";

fn secrets() -> Secrets {
    Secrets::new(
        vec!["client-key-1".into()],
        HashMap::from([("openai".to_string(), vec![UPSTREAM.to_string()])]),
    )
}

/// Every logged form leaves no piece of the key (no 6 characters of the
/// part after its prefix).
fn assert_clean(logged: &str, key: &str) {
    let body = key.trim_start_matches("sk-").trim_start_matches("proj-");
    for w in body.as_bytes().windows(6) {
        let w = std::str::from_utf8(w).unwrap();
        assert!(!logged.contains(w), "{w:?} of the key in {logged:?}");
    }
}

#[test]
fn redacts_known_and_sk_tokens() {
    let s = secrets();
    let r = redact("bad key client-key-1 and \"sk-abcdefghijkl\" here", &s);
    assert_eq!(r, "bad key [REDACTED] and \"sk-[REDACTED]\" here");
    assert!(!format!("{s:?}").contains("client-key-1"));
    assert_eq!(redact("key=sk-abcdefghijkl;", &s), "key=sk-[REDACTED];");
}

/// Keys in JSON escapes, URL encoding, glued to other characters, or cut
/// to a fragment of a configured key are all found.
#[test]
fn keys_in_every_disguise_are_redacted() {
    let s = secrets();
    let other = "sk-ant-api03-Zq8Wm2Lp5Rt7Yv1Nx4Kc6Bd";
    let bodies = [
        format!(r#"{{"error":"bad key\n{other}"}}"#),
        r#"{"error":"sk-ant-api03-Zq8Wm2Lp5Rt7Y\u0076\u0031Nx4Kc6Bd"}"#.to_string(),
        format!(r#"{{"error":"{}\/tail"}}"#, other.replace('-', "\\u002d")),
        format!("key=sk%2Dant%2Dapi03%2D{}", &other[13..]),
        format!("x.{other} _{other} -{other} 9{other}"),
        format!("key {} cut", &UPSTREAM[..17]),
        format!("key {} end", &UPSTREAM[12..]),
        format!("{}{}", "a ".repeat(3), UPSTREAM),
    ];
    for body in bodies {
        let logged = redact_prefix(body.as_bytes(), false, 512, &s);
        assert_clean(&logged, other);
        assert_clean(&logged, UPSTREAM);
    }
}

/// Bearer tokens, JWTs, long hex and base64 secrets go; model names,
/// UUIDs, paths and request ids stay.
#[test]
fn random_looking_tokens_go_and_names_stay() {
    let s = secrets();
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N";
    let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let b64 = "dGhpcyBpcyBhIHNlY3JldCB0b2tlbiAxMjM0NTY=";
    for secret in [jwt, hex, b64] {
        let logged = redact_prefix(format!("token {secret} refused").as_bytes(), false, 512, &s);
        assert_eq!(logged, "token [REDACTED] refused", "{secret}");
    }
    let logged = redact("Authorization: Bearer abc123", &s);
    assert_eq!(logged, "Authorization: Bearer [REDACTED]");
    let kept = "model gpt-4o-2024-08-06 at /v1/chat/completions id 123e4567-e89b-12d3-a456-426614174000 request_id req_011CV4x9y8z7w6v5u4t3s2r1";
    assert_eq!(redact(kept, &s), kept);
    assert_eq!(
        redact("task-management-service-v2", &s),
        "task-management-service-v2"
    );
}

/// A key crossing the 512-character log limit or the end of the read
/// prefix leaves no fragment in the log.
#[test]
fn no_key_fragment_at_either_boundary() {
    let key = "upstream-secret-value-0123456789";
    let s = Secrets::new(
        vec![],
        HashMap::from([("e".to_string(), vec![key.to_string()])]),
    );
    for pad in 490..512 {
        let body = format!("{}{key} tail", "a ".repeat(pad / 2));
        let logged = redact_prefix(body.as_bytes(), false, 512, &s);
        assert!(!logged.contains("upstream-secret"), "pad {pad}: {logged}");
        assert!(!logged.contains("0123456789"), "pad {pad}: {logged}");
    }
    let body = format!("error: bad key {}", &key[..20]);
    let logged = redact_prefix(body.as_bytes(), true, 512, &s);
    assert_eq!(logged, "error: bad key ");
    let logged = redact_prefix(b"error: sk-abcd", true, 512, &s);
    assert_eq!(logged, "error: ");
    // An escape or a UTF-8 sequence cut in half shelters nothing.
    for tail in [&b"%4"[..], b"%", b"\\", b"\\u00", b"\xc3"] {
        let body = [&b"provided: Zq8XkP3"[..], tail].concat();
        let logged = redact_prefix(&body, true, 512, &s);
        assert_eq!(logged, "provided: ", "{:?}", String::from_utf8_lossy(tail));
    }
}

/// Newlines, terminal escapes and DEL in a body cannot forge log lines.
#[test]
fn control_characters_are_escaped() {
    let s = secrets();
    let body = "line one\n2026-01-01T00:00:00Z  INFO forged\r\x1b[31mred\x7f\u{2028}";
    let logged = redact_prefix(body.as_bytes(), false, 512, &s);
    assert!(!logged.chars().any(|c| c.is_control()), "{logged:?}");
    assert_eq!(
        logged,
        "line one\\n2026-01-01T00:00:00Z  INFO forged\\r\\u001b[31mred\\u007f\\u2028"
    );
    let escaped = redact_prefix(br#"{"e":"a\nb\u001b"}"#, false, 512, &s);
    assert_eq!(escaped, r#"{"e":"a\nb\u001b"}"#);
}

#[test]
fn long_bodies_are_cut_with_an_ellipsis() {
    let s = secrets();
    let logged = redact_prefix("é".repeat(600).as_bytes(), false, 512, &s);
    assert_eq!(logged.chars().count(), 515);
    assert!(logged.ends_with("é..."));
}
