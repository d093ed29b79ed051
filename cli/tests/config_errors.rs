//! A daemon given a configuration that cannot work exits non-zero at start
//! with a message naming the setting and the fix.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `weft <kind> --config <toml>`; returns (exit code, stderr). Fails
/// the test if the process is still running after 60 s (it started).
fn run_with_config(kind: &str, toml: &str) -> (Option<i32>, String) {
    run_daemon(kind, toml, &[("WEFT_INSECURE_INTERNAL", "true")])
}

fn run_daemon(kind: &str, toml: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{kind}.toml"));
    std::fs::write(&path, toml.replace("DIR", &dir.path().to_string_lossy())).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args([kind, "--config", &path.to_string_lossy()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("WEFT_LOG", "warn")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .spawn()
        .expect("spawn weft");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("weft {kind} started with a bad config instead of exiting");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

#[test]
fn gateway_with_storage_classes_exits_saying_they_moved_to_metad() {
    let toml = r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
metad = ["127.0.0.1:1"]

[profiles]
segment_bytes_max = 67108864

[[profiles.classes]]
name = "STANDARD"
spread_zones = true
layout = { kind = "erasure", k = 4, m = 2, unit_bytes = 1048576 }
"#;
    let (code, stderr) = run_with_config("gateway", toml);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("profiles.classes: moved to metad") && stderr.contains("weft class set"),
        "{stderr}"
    );
}

#[test]
fn metad_with_an_invalid_storage_class_exits_naming_it() {
    let toml = r#"
data_dir = "DIR/metad"

[[storage_classes]]
name = "STANDARD"
layout = { kind = "erasure", k = 200, m = 100, unit_bytes = 1048576 }
spread = "zones"
small_object_bytes = 65536
small_object_copies = 3
"#;
    let (code, stderr) = run_with_config("metad", toml);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("storage_classes: storage class STANDARD: k+m = 300 exceeds 256"),
        "{stderr}"
    );
}

#[test]
fn gateway_with_upload_max_age_exits_saying_it_moved_to_metad() {
    let (code, stderr) = run_with_config("gateway", "upload_max_age_ms = 1800000\n");
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("upload_max_age_ms: moved to metad's config"),
        "{stderr}"
    );
}

#[test]
fn gateway_with_s3_and_admin_on_one_port_exits_naming_both() {
    let toml = "listen = \"127.0.0.1:9500\"\nadmin_listen = \"127.0.0.1:9500\"\n";
    let (code, stderr) = run_with_config("gateway", toml);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("admin_listen: 127.0.0.1:9500 is also listen"),
        "{stderr}"
    );
}

#[test]
fn datad_with_gc_grace_exits_saying_it_moved_to_metad() {
    let toml = "data_dir = \"DIR/datad\"\ngc_grace_ms = 3600000\n";
    let (code, stderr) = run_with_config("datad", toml);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("gc_grace_ms: moved to metad's config"),
        "{stderr}"
    );
}

#[test]
fn metad_with_grace_below_twice_the_upload_age_exits_with_both_fixes() {
    let toml = "listen = \"127.0.0.1:0\"\ndata_dir = \"DIR/metad\"\nupload_max_age_ms = 600000\ngc_grace_ms = 900000\n";
    let (code, stderr) = run_with_config("metad", toml);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("raise gc_grace_ms to at least 1200000")
            && stderr.contains("lower upload_max_age_ms to at most 450000"),
        "{stderr}"
    );
}

/// Secure by default: a daemon given neither certificates nor
/// --insecure-internal does not start, and says how to do either.
#[test]
fn a_daemon_without_internal_tls_or_insecure_internal_exits_naming_both() {
    for kind in ["metad", "datad", "gateway"] {
        let (code, stderr) = run_daemon(kind, "listen = \"127.0.0.1:0\"\n", &[]);
        assert_ne!(code, Some(0), "{kind}: {stderr}");
        assert!(
            stderr.contains("no internal TLS configured")
                && stderr.contains(&format!("weft cert issue --role {kind}"))
                && stderr.contains("--insecure-internal"),
            "{kind}: {stderr}"
        );
    }
}

/// Certificates and --insecure-internal together are a contradiction.
#[test]
fn a_daemon_with_both_internal_tls_and_insecure_internal_exits() {
    let toml = "listen = \"127.0.0.1:0\"\ninsecure_internal = true\ntls = { cert = \"c.pem\", key = \"c.key\", ca = \"ca.pem\" }\n";
    let (code, stderr) = run_daemon("metad", toml, &[]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("choose one"), "{stderr}");
}

/// A certificate file that is missing stops the daemon with the path.
#[test]
fn a_daemon_whose_certificate_is_missing_exits_naming_the_file() {
    let toml = "listen = \"127.0.0.1:0\"\ndata_dir = \"DIR/datad\"\ntls = { cert = \"DIR/none.pem\", key = \"DIR/none.key\", ca = \"DIR/ca.pem\" }\n";
    let (code, stderr) = run_daemon("datad", toml, &[]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("none.pem"), "{stderr}");
}

/// A metad with certificates but no master key does not start: secrets
/// would be kept in clear.
#[test]
fn a_metad_without_a_master_key_exits_saying_how_to_make_one() {
    let toml = "listen = \"127.0.0.1:0\"\ndata_dir = \"DIR/metad\"\ntls = { cert = \"DIR/c.pem\", key = \"DIR/c.key\", ca = \"DIR/ca.pem\" }\n";
    let (code, stderr) = run_daemon("metad", toml, &[]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("no master key") && stderr.contains("weft cert master-key"),
        "{stderr}"
    );
}
