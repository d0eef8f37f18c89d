//! goproxy served by several event loops (the binary runs one per CPU):
//! connections accepted by every loop are served, streams relay whole,
//! and the drain ends every loop's thread.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{default_secrets, spawn_proxy_on, wait_for, CLIENT_KEY, DEFAULT_CONFIG};

/// This process's threads named `goproxy-<n>` (the extra loops).
fn loop_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("goproxy-"))
        .count()
}

#[tokio::test]
async fn every_loop_serves_and_the_drain_ends_them_all() {
    let p = spawn_proxy_on(DEFAULT_CONFIG, |_| default_secrets(), 3).await;
    wait_for("two extra loops", Duration::from_secs(5), || async {
        (loop_threads() == 2).then_some(())
    })
    .await;
    // One connection per request (a fresh client each), so the kernel
    // hands them to whichever loop is waiting.
    let url = p.url("/v1/chat/completions");
    let streams = (0..24).map(|_| {
        let url = url.clone();
        async move {
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let body = json!({"model": "stream-gpt", "stream": true, "messages": []});
            let r = client
                .post(url)
                .bearer_auth(CLIENT_KEY)
                .json(&body)
                .send()
                .await;
            let r = r.expect("proxy reachable");
            assert_eq!(r.status(), 200);
            r.text().await.expect("whole stream")
        }
    });
    for text in join_all(streams).await {
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    }
    p.shutdown().await;
    assert_eq!(loop_threads(), 0, "every extra loop's thread ended");
}
