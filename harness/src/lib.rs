//! The pre-deploy validation gate for goproxy's port change.
//!
//! It turns the design's runbook (pre-deployment checks, rolling update,
//! post-deployment checks, rollback) into code that runs against the real
//! stack of `docker-compose.yml` with the override `docker-compose.test.yml`
//! (nginx with TLS, goproxy, a streaming mock LLM upstream, and a wiremock
//! server on the host) and answers go or no-go with an exit code CI can gate
//! on; then `deploy` and `check` run the same phases on the production project.
//!
//! ```text
//! cargo run -p harness -- lint
//! cargo run -p harness -- validate --scenario scenarios/port-change-8005-to-8004.toml
//! cargo run -p harness -- scenarios run
//! ```
//!
//! # Layout
//!
//! - [`cli`]: the command line and its exit codes.
//! - [`gate`]: one scenario from lint to verdict.
//! - [`scenario`], [`expect`]: scenario files and whether a run matched them.
//! - [`lint`], [`ports`]: static checks; where each file writes the port.
//! - [`nginx`]: the one nginx reader (tokenizer, directives with file and
//!   line, includes, goproxy's sites, span edits) for lint, rendering and
//!   the local backend.
//! - [`compose_file`], [`compose_env`], [`compose_sites`], [`compose_lines`],
//!   [`compose_grace`]: compose files read as YAML, with compose's
//!   `${VAR:-default}` interpolation, where they write goproxy's port (and
//!   on which line, by indentation), and goproxy's `stop_grace_period`.
//! - [`render`] (and [`render::base`]): the candidate (the operator's files as written,
//!   test-stack substitutions listed) and the base (a git ref, a directory,
//!   or simulated).
//! - [`names`]: messages name the operator's files and lines, not the run's.
//! - [`files`]: the run directory's live files and backups.
//! - [`signals`]: SIGINT, SIGTERM and SIGHUP end a run alike (130, 143, 129).
//! - [`stack`], [`compose`], [`docker`], [`tls`]: the containers and their guard.
//! - [`pre`], [`deploy`], [`verify`], [`rollback`]: the runbook's phases.
//! - [`poll`]: the one readiness loop (`poll_until`, a deadline and an interval).
//! - [`traffic`]: the steady client and SSE streams run during the switch.
//! - [`probe`]: why a probe of a deployment failed (`ProbeError`), for
//!   verify, traffic and the live checks.
//! - [`kept`]: `up`, `rollback` and `down` on a kept stack.
//! - [`live`]: `harness check`, the post-deployment checks on any live deployment.
//! - [`prod`]: `harness deploy`, the gate's phases on a production compose project.
//! - [`state`]: what a kept run leaves for `harness rollback` / `down`.
//! - [`check`], [`report`]: check results; summary, JSON and JUnit outputs.
//! - [`exit`]: exit codes of the errors that end a command before a verdict,
//!   and the one place such an error is printed. Each layer has its own
//!   `thiserror` type; `anyhow` is used only in [`cli`] (see ARCHITECTURE.md,
//!   "Errors").
//! - [`backend_kind`], [`stream_model`]: leaf types shared by the stack,
//!   the scenarios and the checks (kept apart so imports never loop; the
//!   test `tests/module_deps.rs` fails on a cycle).

pub mod backend_kind;
pub mod check;
pub mod cli;
pub mod compose;
pub mod compose_env;
pub mod compose_file;
pub mod compose_grace;
pub mod compose_lines;
pub mod compose_sites;
pub mod deploy;
pub mod docker;
pub mod exit;
pub mod expect;
pub mod files;
pub mod gate;
pub mod kept;
pub mod lint;
pub mod live;
pub mod names;
pub mod nginx;
pub mod poll;
pub mod ports;
pub mod pre;
pub mod probe;
pub mod prod;
pub mod render;
pub mod report;
pub mod rollback;
pub mod scenario;
pub mod signals;
pub mod stack;
pub mod state;
pub mod stream_model;
pub mod tls;
pub mod traffic;
pub mod verify;
