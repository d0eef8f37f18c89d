//! Which switch `harness deploy` runs on the operator's project: the one
//! the gate proved for its shape. One goproxy: `overlap` (a new goproxy
//! beside the old one). Two instances behind one upstream (`goproxy` and
//! `goproxy-b`, as `docker-compose.multi.yml`): `rolling-restart`, each
//! taken out of nginx's rotation, restarted and put back while the other
//! serves; the overlap switch would scale `goproxy` only and leave
//! goproxy-b on its old config.

use super::ProdError;
use crate::scenario::Strategy;

/// The `--strategy` values deploy accepts (the design's
/// restart-then-reload drops requests and is the gate's exhibit only).
pub fn parse(s: &str) -> Result<Strategy, ProdError> {
    match s {
        "overlap" => Ok(Strategy::Overlap),
        "rolling-restart" => Ok(Strategy::RollingRestart),
        other => Err(ProdError::UnknownStrategy {
            given: other.to_string(),
        }),
    }
}

/// The strategy's name as the operator types it.
pub fn name(s: Strategy) -> &'static str {
    match s {
        Strategy::Overlap => "overlap",
        Strategy::RollingRestart => "rolling-restart",
        Strategy::RestartThenReload => "restart-then-reload",
    }
}

/// The switch for a project that runs one goproxy or two instances
/// (`two_instances`), or the operator's `--strategy` when it fits.
pub fn choose(requested: Option<Strategy>, two_instances: bool) -> Result<Strategy, ProdError> {
    match (requested, two_instances) {
        (None, false) | (Some(Strategy::Overlap), false) => Ok(Strategy::Overlap),
        (None, true) | (Some(Strategy::RollingRestart), true) => Ok(Strategy::RollingRestart),
        (Some(Strategy::Overlap), true) => Err(ProdError::StrategyDoesNotFit(
            "--strategy overlap: the project runs goproxy and goproxy-b behind one upstream; \
             the overlap switch would scale goproxy only and leave goproxy-b on its old \
             config. Leave --strategy out (rolling-restart is chosen for two instances)",
        )),
        (Some(Strategy::RollingRestart), false) => Err(ProdError::StrategyDoesNotFit(
            "--strategy rolling-restart restarts one instance while the other serves, but \
             the project runs no goproxy-b: leave --strategy out (overlap is chosen for one \
             goproxy)",
        )),
        (Some(Strategy::RestartThenReload), _) => Err(ProdError::StrategyDoesNotFit(
            "restart-then-reload (the design's manual steps) drops requests: deploy runs \
             overlap or rolling-restart",
        )),
    }
}

/// A rolling restart changes one instance at a time, so while `goproxy`
/// is out of rotation goproxy-b must already answer where the candidate
/// nginx.conf sends it: its port cannot change in the same deploy.
pub fn check_second_port(live: u16, candidate: u16) -> Result<String, ProdError> {
    if live == candidate {
        Ok(format!(
            "goproxy-b keeps port {live}: it serves alone while goproxy restarts"
        ))
    } else {
        Err(ProdError::SecondPortMoves { live, candidate })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One goproxy gets the overlap switch, two instances the rolling
    /// restart; a `--strategy` that does not fit the project is refused
    /// with what to do.
    #[test]
    fn the_switch_follows_the_project() {
        assert_eq!(choose(None, false).ok(), Some(Strategy::Overlap));
        assert_eq!(choose(None, true).ok(), Some(Strategy::RollingRestart));
        assert_eq!(
            choose(Some(Strategy::RollingRestart), true).ok(),
            Some(Strategy::RollingRestart)
        );
        assert_eq!(
            choose(Some(Strategy::Overlap), false).ok(),
            Some(Strategy::Overlap)
        );
        let e = choose(Some(Strategy::Overlap), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("goproxy-b on its old config"), "{e}");
        let e = choose(Some(Strategy::RollingRestart), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no goproxy-b"), "{e}");
        assert!(choose(Some(Strategy::RestartThenReload), false).is_err());
    }

    #[test]
    fn strategy_names_round_trip() {
        for s in [Strategy::Overlap, Strategy::RollingRestart] {
            assert_eq!(parse(name(s)).ok(), Some(s));
        }
        assert!(parse("restart-then-reload").is_err());
    }

    #[test]
    fn goproxy_b_keeps_its_port() {
        assert!(check_second_port(8005, 8005).is_ok());
        let e = check_second_port(8005, 8006).unwrap_err().to_string();
        assert!(e.contains("second deploy"), "{e}");
    }
}
