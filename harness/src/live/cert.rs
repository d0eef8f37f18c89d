//! The certificate a deployment serves: valid for the host, trusted, and
//! how long until it expires (a warning under 14 days, a no-go once
//! expired). Read from the TLS handshake itself (reqwest's `tls_info`) and
//! parsed with `x509-parser`, so an expired certificate still says when it
//! expired instead of only "invalid peer certificate".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;

use super::target::Target;
use crate::probe::{mismatch, ProbeError};

/// Fewer days left than this is a warning in the evidence.
pub const WARN_DAYS: i64 = 14;

/// What the served certificate says.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub dns_names: Vec<String>,
    /// Seconds since the epoch.
    pub not_before: i64,
    pub not_after: i64,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, ProbeError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| mismatch!("the served certificate does not parse: {e}"))?;
        let dns_names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) => Some(d.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            dns_names,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// Whole days from `now` until expiry (negative once expired).
    pub fn days_left(&self, now: SystemTime) -> i64 {
        let now = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs() as i64;
        (self.not_after - now).div_euclid(86_400)
    }

    /// The expiry as `2027-02-25T10:00:00Z`.
    pub fn expires(&self) -> String {
        let t = UNIX_EPOCH + Duration::from_secs(self.not_after.max(0) as u64);
        humantime::format_rfc3339_seconds(t).to_string()
    }
}

/// The verdict on a certificate's dates: Ok with the evidence (which starts
/// with `WARNING` under [`WARN_DAYS`]), Err once expired or not yet valid.
pub fn judge_dates(info: &CertInfo, now: SystemTime) -> Result<String, ProbeError> {
    let days = info.days_left(now);
    let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    if info.not_before > now_s {
        return Err(mismatch!(
            "the certificate is not valid yet (from {}): check the host's clock",
            humantime::format_rfc3339_seconds(
                UNIX_EPOCH + Duration::from_secs(info.not_before.max(0) as u64)
            )
        ));
    }
    if days < 0 || info.not_after <= now_s {
        return Err(mismatch!(
            "the certificate EXPIRED on {} ({} days ago): renew it (e.g. `certbot renew`) \
             and reload nginx",
            info.expires(),
            -days
        ));
    }
    if days < WARN_DAYS {
        return Ok(format!(
            "WARNING: the certificate expires in {days} days ({}): renew it now",
            info.expires()
        ));
    }
    Ok(format!("expires {} ({days} days left)", info.expires()))
}

/// Reads the certificate served for the target's host and judges it:
/// trusted and valid for the host (the verified client's handshake), dates
/// (see [`judge_dates`]).
pub async fn check(target: &Target) -> Result<String, ProbeError> {
    let resp = target
        .inspect
        .get(target.url("/health"))
        .send()
        .await
        .map_err(|e| ProbeError::NoAnswer {
            what: format!("no TLS connection to {}", target.base),
            why: Target::explain(&e),
        })?;
    let der = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .ok_or(ProbeError::mismatch("the server sent no certificate"))?
        .to_vec();
    let info = CertInfo::from_der(&der)?;
    let dates = judge_dates(&info, SystemTime::now())?;
    let names = if info.dns_names.is_empty() {
        info.subject.clone()
    } else {
        info.dns_names.join(", ")
    };
    if !target.insecure {
        // The verified client checks the chain and the host name.
        if let Err(e) = target.client.get(target.url("/health")).send().await {
            return Err(mismatch!(
                "the certificate for {names} (issuer {}) is not accepted for {}: {}",
                info.issuer,
                target.host,
                Target::explain(&e)
            ));
        }
    }
    Ok(format!(
        "{dates}; certificate for {names}, issuer {}; {}",
        info.issuer, target.trust
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(days_from_now: i64) -> CertInfo {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        CertInfo {
            subject: "CN=chat.trollllm.xyz".into(),
            issuer: "CN=R11".into(),
            dns_names: vec!["chat.trollllm.xyz".into()],
            not_before: now - 80 * 86_400,
            not_after: now + days_from_now * 86_400 + 3600,
        }
    }

    /// 90 days left passes quietly; 5 days warns; expired is a no-go that
    /// says when and what to do.
    #[test]
    fn judges_expiry_dates() {
        let now = SystemTime::now();
        let ok = judge_dates(&cert(90), now).unwrap();
        assert!(ok.contains("90 days left"), "{ok}");
        let warn = judge_dates(&cert(5), now).unwrap();
        assert!(warn.starts_with("WARNING"), "{warn}");
        assert!(warn.contains("5 days"), "{warn}");
        let expired = judge_dates(&cert(-3), now).unwrap_err().to_string();
        assert!(expired.contains("EXPIRED"), "{expired}");
        assert!(expired.contains("days ago"), "{expired}");
    }

    /// An rcgen certificate with past dates parses, and its dates are read.
    #[test]
    fn reads_an_expired_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["chat.trollllm.xyz".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 3, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let info = CertInfo::from_der(&der).unwrap();
        assert_eq!(info.dns_names, ["chat.trollllm.xyz"]);
        assert!(
            info.expires().starts_with("2020-03-01"),
            "{}",
            info.expires()
        );
        assert!(judge_dates(&info, SystemTime::now())
            .unwrap_err()
            .to_string()
            .contains("EXPIRED on 2020-03-01"));
    }
}
