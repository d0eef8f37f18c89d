//! What the mock does with the next request: how many chunks, how fast, and
//! which fault to inject.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Behaviour of the mock's completion routes (`/v1/chat/completions` and
/// `/v1/messages`). Changed at run time with [`crate::MockUpstream::set_config`]
/// or `PUT /__mock/config`.
///
/// In JSON the durations are whole milliseconds and every field is optional
/// (missing fields take their [`Default`] value):
///
/// ```json
/// {"chunks": 8, "chunk_delay_ms": 20, "first_chunk_delay_ms": 0, "fault": "none"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MockConfig {
    /// Number of content chunks (OpenAI `chat.completion.chunk` events or
    /// Anthropic `content_block_delta` events) in a streamed answer; also the
    /// reported completion/output token count.
    pub chunks: usize,
    /// Pause before each content chunk after the first.
    #[serde(rename = "chunk_delay_ms", with = "duration_ms")]
    pub chunk_delay: Duration,
    /// Pause before the first content chunk (time to first token); for a
    /// non-streamed answer, the pause before the whole response.
    #[serde(rename = "first_chunk_delay_ms", with = "duration_ms")]
    pub first_chunk_delay: Duration,
    /// Fault injected into completion requests.
    pub fault: Fault,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            chunks: 8,
            chunk_delay: Duration::from_millis(20),
            first_chunk_delay: Duration::ZERO,
            fault: Fault::None,
        }
    }
}

/// A fault injected into the completion routes. Health, models and admin
/// routes never fault, so a faulting mock still passes its healthcheck.
///
/// JSON forms: `"none"`, `{"status": 503}`, `{"reset_after_chunks": 2}`,
/// `"hang"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Answer with this HTTP status and an error body in the route's format
    /// (OpenAI or Anthropic error JSON). A 429 also carries `Retry-After: 1`.
    Status(u16),
    /// Stream this many content chunks, then abort the connection without
    /// finishing the response (no `[DONE]` / `message_stop`). For a
    /// non-streamed request the connection is aborted before any body.
    ResetAfterChunks(usize),
    /// Accept the request and never answer.
    Hang,
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_milliseconds_in_json() {
        let config: MockConfig = serde_json::from_str(
            r#"{"chunks": 3, "chunk_delay_ms": 150, "fault": {"status": 503}}"#,
        )
        .unwrap();
        assert_eq!(config.chunks, 3);
        assert_eq!(config.chunk_delay, Duration::from_millis(150));
        assert_eq!(config.first_chunk_delay, Duration::ZERO);
        assert_eq!(config.fault, Fault::Status(503));
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["chunk_delay_ms"], 150);
    }

    #[test]
    fn every_fault_round_trips() {
        for fault in [
            Fault::None,
            Fault::Status(429),
            Fault::ResetAfterChunks(2),
            Fault::Hang,
        ] {
            let json = serde_json::to_string(&fault).unwrap();
            assert_eq!(serde_json::from_str::<Fault>(&json).unwrap(), fault);
        }
        assert_eq!(
            serde_json::from_str::<Fault>(r#""hang""#).unwrap(),
            Fault::Hang
        );
    }
}
