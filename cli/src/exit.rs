//! How a daemon ends when it cannot go on: the error, the exit status and
//! the advice an operator gets.

/// A daemon stopped on a condition a restart cures: the process exits with
/// [`EXIT_RESTART`] so a supervisor restarts it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RestartNeeded(pub String);

/// Exit status of a daemon that stopped so it can be restarted: EX_TEMPFAIL
/// of sysexits.h ("temporary failure; retry"), distinct from 1 (bad
/// configuration, failed start).
pub const EXIT_RESTART: u8 = 75;

/// How long a metad whose raft core died may take to close its server and
/// files before the process exits anyway.
pub const STOP_AFTER_FATAL: std::time::Duration = std::time::Duration::from_secs(20);

/// What to do about a fatal cause the operator can fix.
pub fn fatal_hint(cause: &str) -> &'static str {
    if cause.contains("Too many open files") || cause.contains("os error 24") {
        " It ran out of file descriptors: raise its open-file limit (LimitNOFILE) or reduce client connections."
    } else if cause.contains("No space left") || cause.contains("os error 28") {
        " Its disk is full: free space in the data directory before restarting."
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_and_space_exhaustion_get_advice_and_other_causes_none() {
        assert!(
            fatal_hint("open snapshot: Too many open files (os error 24)").contains("LimitNOFILE")
        );
        assert!(fatal_hint("write: No space left on device (os error 28)").contains("free space"));
        assert_eq!(fatal_hint("raft stopped"), "");
    }
}
