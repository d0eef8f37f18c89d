//! `harness deploy` and `harness rollback` of a deploy: the third kind of
//! stack, the operator's running compose project, driven by the same
//! phases as the gate (pre, the overlap switch, post, rollback).
//!
//! # Layout
//!
//! - [`backend`]: [`backend::Production`], the [`crate::stack::Backend`] of a live project.
//! - [`project`]: what Docker says about the project: mounted files, published port, health.
//! - [`deploy`]: the phases, in the runbook's order.
//! - [`plan`]: `--dry-run`, every step and command.
//! - [`strategy`]: the switch for the project's shape (one goproxy or two instances).
//! - [`state`]: the deploy's state on disk, for `harness rollback`.

pub mod backend;
pub mod deploy;
pub mod error;
pub mod plan;
pub mod project;
pub mod rollback;
pub mod state;
pub mod strategy;

use std::path::Path;

pub use error::ProdError;

/// The `"port"` of a goproxy config file, as goproxy reads it.
pub fn goproxy_port(path: &Path) -> Result<u16, ProdError> {
    proxy::config::Config::load(path)
        .map(|c| c.port())
        .map_err(|source| ProdError::GoproxyConfig {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
}
