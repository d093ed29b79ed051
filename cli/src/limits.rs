//! Process limits the daemons raise for themselves at start.

/// The open-file limits before and after [`raise_open_file_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// Soft limit found at start.
    pub soft_before: u64,
    /// Soft limit now.
    pub soft: u64,
    /// Hard limit (the ceiling an unprivileged process may raise to).
    pub hard: u64,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit and logs both.
///
/// Every client connection, shard file and snapshot takes a descriptor, and
/// the soft limit is often 1024 while the hard limit allows far more: a burst
/// of requests would fail writes (EMFILE) with headroom unused. Raising the
/// hard limit needs privilege, so that is left to the service manager
/// (LimitNOFILE); a failure here is logged, never fatal.
// rlim_t is u64 on Linux but not on every Unix.
#[allow(clippy::unnecessary_cast)]
pub fn raise_open_file_limit() -> std::io::Result<OpenFileLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let soft_before = lim.rlim_cur as u64;
    let hard = lim.rlim_max as u64;
    if lim.rlim_cur != lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(OpenFileLimit {
        soft_before,
        soft: hard,
        hard,
    })
}

/// [`raise_open_file_limit`] for a daemon's entry point: logs the outcome.
pub fn raise_open_file_limit_logged() {
    match raise_open_file_limit() {
        Ok(l) => tracing::info!(
            soft_before = l.soft_before,
            soft = l.soft,
            hard = l.hard,
            "open-file limit (RLIMIT_NOFILE): soft {}, hard {}; soft now {}",
            show(l.soft_before),
            show(l.hard),
            show(l.soft)
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "could not raise the open-file limit (RLIMIT_NOFILE) to its hard limit; running with the soft limit"
        ),
    }
}

#[allow(clippy::unnecessary_cast)]
fn show(limit: u64) -> String {
    if limit == libc::RLIM_INFINITY as u64 {
        "unlimited".into()
    } else {
        limit.to_string()
    }
}
