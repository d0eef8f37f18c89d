//! `harness gen-cert`: a throwaway certificate for the test stack.

use std::path::PathBuf;

use super::{usage, Global};
use crate::tls;

/// Arguments of `harness gen-cert`.
#[derive(Debug, clap::Args)]
pub struct GenCertArgs {
    #[arg(long, default_value = "stack/tls")]
    pub out: PathBuf,
}

pub(super) fn run(a: GenCertArgs, g: &Global) -> i32 {
    let out = if a.out.is_absolute() {
        a.out
    } else {
        g.root.join(a.out)
    };
    let written = std::fs::create_dir_all(&out)
        .map_err(|e| e.to_string())
        .and_then(|_| tls::generate(crate::stack::HOSTNAME).map_err(|e| e.to_string()))
        .and_then(|c| tls::write_tls_dir(&out, &c).map_err(|e| e.to_string()));
    match written {
        Ok(()) => {
            println!(
                "wrote {}/fullchain.pem and privkey.pem for {}",
                out.display(),
                crate::stack::HOSTNAME
            );
            0
        }
        Err(e) => usage(&format!(
            "cannot write a certificate to {}: {e}",
            out.display()
        )),
    }
}
