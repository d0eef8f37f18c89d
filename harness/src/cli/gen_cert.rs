//! `harness gen-cert`: a throwaway certificate for the test stack.

use std::path::PathBuf;

use anyhow::Context as _;

use super::Global;
use crate::tls;

/// Arguments of `harness gen-cert`.
#[derive(Debug, clap::Args)]
pub struct GenCertArgs {
    #[arg(long, default_value = "stack/tls")]
    pub out: PathBuf,
}

pub(super) fn run(a: GenCertArgs, g: &Global) -> anyhow::Result<i32> {
    let out = if a.out.is_absolute() {
        a.out
    } else {
        g.root.join(a.out)
    };
    let context = || format!("cannot write a certificate to {}", out.display());
    std::fs::create_dir_all(&out).with_context(context)?;
    let cert = tls::generate(crate::stack::HOSTNAME).with_context(context)?;
    tls::write_tls_dir(&out, &cert).with_context(context)?;
    println!(
        "wrote {}/fullchain.pem and privkey.pem for {}",
        out.display(),
        crate::stack::HOSTNAME
    );
    Ok(0)
}
