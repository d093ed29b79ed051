//! Checks every daemon runs on its configuration before it starts, so a
//! value that cannot work stops the process with a message naming the
//! setting and the fix, instead of surfacing later as failed requests.

use std::net::SocketAddr;
use std::path::Path;
use thiserror::Error;

/// A configuration value that cannot work.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    /// The setting as written in the TOML file, e.g. `admin_listen`.
    pub setting: String,
    /// What is wrong and what to do.
    pub problem: String,
}

impl ConfigError {
    /// An error about `setting`.
    pub fn new(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            setting: setting.into(),
            problem: problem.into(),
        }
    }
}

/// Refuses two listeners on the same address (port 0 picks distinct free
/// ports, so it never collides). Binding would fail too, but with a bare
/// "address in use" that does not say which two settings clash.
pub fn distinct_listeners(addrs: &[(&str, SocketAddr)]) -> Result<(), ConfigError> {
    for (i, (name, a)) in addrs.iter().enumerate() {
        if a.port() == 0 {
            continue;
        }
        for (other, b) in &addrs[..i] {
            let same_ip = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
            if a.port() == b.port() && same_ip {
                return Err(ConfigError::new(
                    *name,
                    format!("{a} is also {other}; give each listener its own port"),
                ));
            }
        }
    }
    Ok(())
}

/// Creates `dir` if needed and proves it writable by creating and removing
/// a probe file: a read-only mount or a wrong owner is found at start, not
/// at the first write.
pub fn writable_dir(setting: &str, dir: &Path) -> Result<(), ConfigError> {
    if dir.as_os_str().is_empty() {
        return Err(ConfigError::new(
            setting,
            "empty; set it to a directory this process may write",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        ConfigError::new(
            setting,
            format!(
                "cannot create {}: {e}; create it or point {setting} at a writable directory",
                dir.display()
            ),
        )
    })?;
    let probe = dir.join(format!(".weft-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            ConfigError::new(
                setting,
                format!(
                    "{} is not writable: {e}; fix its permissions or point {setting} elsewhere",
                    dir.display()
                ),
            )
        })
}

/// Refuses a zero where zero would stall or refuse everything.
pub fn positive(setting: &str, value: u64, example: &str) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(
            setting,
            format!("0 is not allowed; use a positive value, e.g. {example}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_listeners_are_refused_naming_both() {
        let a: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let e = distinct_listeners(&[("listen", a), ("admin_listen", a)]).unwrap_err();
        assert_eq!(e.setting, "admin_listen");
        assert!(e.problem.contains("also listen"), "{}", e.problem);
    }

    #[test]
    fn unspecified_ip_clashes_with_any_ip_on_the_same_port() {
        let a: SocketAddr = "0.0.0.0:9000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        assert!(distinct_listeners(&[("listen", a), ("admin_listen", b)]).is_err());
    }

    #[test]
    fn port_zero_and_distinct_ports_are_accepted() {
        let z: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let a: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        assert_eq!(
            distinct_listeners(&[("listen", z), ("admin_listen", z)]),
            Ok(())
        );
        assert_eq!(
            distinct_listeners(&[("listen", a), ("admin_listen", b)]),
            Ok(())
        );
    }

    #[test]
    fn a_missing_directory_is_created_and_probed() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        assert_eq!(writable_dir("data_dir", &sub), Ok(()));
        assert!(sub.is_dir());
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0, "probe removed");
    }

    #[test]
    fn a_directory_under_a_file_is_refused_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = writable_dir("data_dir", &file.join("sub")).unwrap_err();
        assert_eq!(e.setting, "data_dir");
        assert!(e.problem.contains("cannot create"), "{}", e.problem);
    }

    #[test]
    fn zero_is_refused() {
        assert!(positive("max_requests", 0, "1024").is_err());
        assert_eq!(positive("max_requests", 1, "1024"), Ok(()));
    }
}
