//! goproxy API tests: one test binary, fake upstreams from `helpers`.

mod binary;
mod drain;
mod helpers;
mod routing;
mod security;
mod streaming;
