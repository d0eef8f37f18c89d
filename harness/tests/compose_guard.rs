//! The compose guard removes its project on drop even when its compose
//! files are already gone (a temporary directory dropped before the guard):
//! `down` cannot run then, and the project must not be left running.

use std::time::Duration;

use harness::compose::ComposeStack;

fn containers_of(project: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// A project whose compose file was deleted is still removed on drop.
#[tokio::test]
async fn drop_removes_the_project_when_its_files_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(
        &file,
        "version: \"2.4\"\nservices:\n  upstream:\n    image: goproxy-mock-upstream:test\n    \
         environment:\n      MOCK_LISTEN: \"0.0.0.0:9000\"\n",
    )
    .unwrap();
    let stack = ComposeStack::new(&file, "guardtest").unwrap();
    let project = stack.project().to_string();
    stack.up(&[], false).await.unwrap();
    stack
        .wait_healthy(&["upstream"], Duration::from_secs(60))
        .await
        .unwrap();
    assert!(!containers_of(&project).is_empty(), "the project started");

    drop(dir);
    drop(stack);

    assert_eq!(containers_of(&project), Vec::<String>::new());
}
