//! goproxy API tests: one test binary, fake upstreams from `helpers`.

mod binary;
mod drain;
mod event_loops;
mod hardening;
mod helpers;
mod http1;
mod limits;
mod raw;
mod read_on;
mod routing;
mod security;
mod streaming;
mod upstream_conns;
mod upstream_tls;
