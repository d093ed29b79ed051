//! `weft cert init` and `weft cert issue` from the command line: the files
//! they write, their modes, and that what they issue is what an endpoint
//! will accept (the same webpki check a handshake makes).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use weft_client::pki::{self, Role};

fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env_remove("WEFT_DATA")
        .output()
        .expect("weft runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn der(path: &Path) -> rustls_pki_types::CertificateDer<'static> {
    let pem = std::fs::read_to_string(path).unwrap();
    pki::certs_from_pem(&pem, "test").unwrap().remove(0)
}

#[test]
fn init_then_issue_writes_a_ca_and_a_role_certificate_that_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let d = dir.to_str().unwrap();
    let o = weft(&["cert", "init", "--dir", d, "--cluster", "test-cluster"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(mode(&dir.join("ca.key")), 0o600, "the CA key is owner-only");

    let o = weft(&[
        "cert",
        "issue",
        "--dir",
        d,
        "--role",
        "datad",
        "--name",
        "datad-1",
        "--node-id",
        "1",
        "--host",
        "127.0.0.1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(mode(&dir.join("datad-1.key")), 0o600);
    let role = pki::verify_client(&der(&dir.join("datad-1.pem")), &[der(&dir.join("ca.pem"))])
        .expect("the issued certificate chains to the CA");
    assert_eq!(role, Role::Datad);
    assert!(pki::names_node(&der(&dir.join("datad-1.pem")), 1));
    assert!(!pki::names_node(&der(&dir.join("datad-1.pem")), 2));
    // A data node certificate must name its node; other roles may not.
    let o = weft(&[
        "cert", "issue", "--dir", d, "--role", "datad", "--name", "datad-2",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--node-id"), "{}", text(&o));
    assert!(!dir.join("datad-2.pem").exists());
    let o = weft(&[
        "cert",
        "issue",
        "--dir",
        d,
        "--role",
        "gateway",
        "--name",
        "gw",
        "--node-id",
        "3",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("only a data node"), "{}", text(&o));
}

#[test]
fn a_second_init_an_unknown_role_and_a_silent_overwrite_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    assert!(weft(&["cert", "init", "--dir", d]).status.success());
    let ca_before = std::fs::read(tmp.path().join("ca.key")).unwrap();

    let o = weft(&["cert", "init", "--dir", d]);
    assert!(!o.status.success());
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    assert_eq!(
        std::fs::read(tmp.path().join("ca.key")).unwrap(),
        ca_before,
        "the CA key was not replaced"
    );

    let o = weft(&["cert", "issue", "--dir", d, "--role", "root", "--name", "x"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("metad, datad, gateway or admin"),
        "{}",
        text(&o)
    );

    let issue = |force: bool| {
        let mut args = vec![
            "cert", "issue", "--dir", d, "--role", "admin", "--name", "ops",
        ];
        if force {
            args.push("--force");
        }
        weft(&args)
    };
    assert!(issue(false).status.success());
    let first = std::fs::read(tmp.path().join("ops.pem")).unwrap();
    let o = issue(false);
    assert!(!o.status.success());
    assert!(text(&o).contains("--force"), "{}", text(&o));
    assert_eq!(std::fs::read(tmp.path().join("ops.pem")).unwrap(), first);
    assert!(issue(true).status.success());
    assert_ne!(std::fs::read(tmp.path().join("ops.pem")).unwrap(), first);
}

#[test]
fn issuing_without_a_ca_says_how_to_make_one() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let o = weft(&[
        "cert", "issue", "--dir", d, "--role", "gateway", "--name", "gw",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("weft cert init"), "{}", text(&o));
}

#[test]
fn the_ca_is_never_replaced_by_init_or_by_a_certificate_named_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    assert!(weft(&["cert", "init", "--dir", d]).status.success());
    let ca_pem = std::fs::read(tmp.path().join("ca.pem")).unwrap();
    // The key taken offline: a second init must still refuse.
    std::fs::rename(tmp.path().join("ca.key"), tmp.path().join("offline.key")).unwrap();
    let o = weft(&["cert", "init", "--dir", d]);
    assert!(!o.status.success());
    assert!(text(&o).contains("ca.pem"), "{}", text(&o));
    assert_eq!(std::fs::read(tmp.path().join("ca.pem")).unwrap(), ca_pem);
    std::fs::rename(tmp.path().join("offline.key"), tmp.path().join("ca.key")).unwrap();

    let o = weft(&[
        "cert", "issue", "--dir", d, "--role", "gateway", "--name", "ca", "--force",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--name ca"), "{}", text(&o));
    assert_eq!(std::fs::read(tmp.path().join("ca.pem")).unwrap(), ca_pem);

    let o = weft(&[
        "cert",
        "issue",
        "--dir",
        d,
        "--role",
        "gateway",
        "--name",
        "gw",
        "--host",
        "*.internal",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("wildcard"), "{}", text(&o));
    assert!(!tmp.path().join("gw.pem").exists());
}

#[test]
fn a_ca_certificate_from_another_ca_than_the_key_is_caught_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for dir in [&a, &b] {
        assert!(weft(&["cert", "init", "--dir", dir.to_str().unwrap()])
            .status
            .success());
    }
    // a's key with b's certificate: what a mixed-up roll leaves.
    std::fs::copy(b.join("ca.pem"), a.join("ca.pem")).unwrap();
    let o = weft(&[
        "cert",
        "issue",
        "--dir",
        a.to_str().unwrap(),
        "--role",
        "metad",
        "--name",
        "m1",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("are not one CA"), "{}", text(&o));
    assert!(!a.join("m1.pem").exists() && !a.join("m1.key").exists());
}
