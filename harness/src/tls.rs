//! A throwaway certificate for the test stack's nginx, made with rcgen at
//! run time so that no private key is ever committed.

use std::path::Path;

/// A self-signed certificate and its key, both PEM. The certificate is its
/// own root: clients trust it with `add_root_certificate`.
#[derive(Debug, Clone)]
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate for `hostname`.
pub fn generate(hostname: &str) -> Result<TestCert, rcgen::Error> {
    let key = rcgen::generate_simple_self_signed(vec![hostname.to_string()])?;
    Ok(TestCert {
        cert_pem: key.cert.pem(),
        key_pem: key.key_pair.serialize_pem(),
    })
}

/// Writes `fullchain.pem` and `privkey.pem` (the Let's Encrypt names the
/// nginx config uses) into `dir`.
pub fn write_tls_dir(dir: &Path, cert: &TestCert) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("fullchain.pem"), &cert.cert_pem)?;
    std::fs::write(dir.join("privkey.pem"), &cert.key_pem)
}
