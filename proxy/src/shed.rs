//! At `max_connections`, idle connections are asked to close to make room,
//! as nginx closes idle keep-alive connections when its
//! `worker_connections` run out. Without it, clients that each send one
//! request and then keep their connection open (75 s of keep-alive, no key
//! needed for `/health`) would hold every slot and lock everyone out.
//!
//! Each ask fires the [`Cut`] connections wait on and puts a fresh one in
//! its place; a connection that was busy when asked waits on the fresh one.

use std::sync::Mutex;
use std::time::Duration;

use crate::cancel::Cut;

/// How long a connection must have been idle to be closed when asked: one
/// that has just answered is likely to carry the next request at once.
pub const MIN_IDLE: Duration = Duration::from_secs(1);

/// The signal for idle connections to close.
#[derive(Debug, Default)]
pub struct Shed {
    current: Mutex<Cut>,
}

impl Shed {
    /// No ask yet.
    pub fn new() -> Self {
        Shed::default()
    }

    /// Ask every connection idle for [`MIN_IDLE`] to close.
    pub fn ask(&self) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.cancel();
        *current = Cut::new();
    }

    /// What the next [`Shed::ask`] fires.
    pub fn next(&self) -> Cut {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ask fires the signal handed out before it, not the one after.
    #[test]
    fn an_ask_fires_the_signal_handed_out_before_it() {
        let shed = Shed::new();
        let before = shed.next();
        shed.ask();
        let after = shed.next();
        assert!(before.is_cancelled());
        assert!(!after.is_cancelled());
    }
}
