//! Builds Weft's container image without a registry.
//!
//! Nothing can be pulled here, so the image is a root filesystem assembled
//! from the host: the `weft` binary, exactly the shared libraries `ldd`
//! lists (with the dynamic loader), and the few files glibc reads at run
//! time (`/etc/nsswitch.conf` so names resolve through docker's DNS,
//! `/etc/passwd`, `/tmp`). `docker import` turns the tarball into an image;
//! no Dockerfile, builder or base image is involved. The result is a few MB
//! larger than the binary and has no shell, which is why faults that touch a
//! node's files (bitrot, disk-full) act on its bind-mounted volume from the
//! host instead of from inside the container.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Default image tag.
pub const DEFAULT_TAG: &str = "weft-chaos/weft:latest";

/// The target directory, under the cargo one, that chaos builds use: the
/// `weft` with fault hooks lives there, so it never replaces the normal
/// `release/weft` or `debug/weft`.
pub const CHAOS_TARGET_SUBDIR: &str = "chaos";

/// Where scripts/chaos-image.sh has cargo put the `weft` binary of `profile`
/// (`release` or `dev`): `$CARGO_TARGET_DIR/chaos/<release|debug>/weft`
/// (`target/chaos/...` when `CARGO_TARGET_DIR` is unset).
pub fn default_binary(profile: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    binary_in(&target, profile)
}

fn binary_in(cargo_target: &Path, profile: &str) -> PathBuf {
    let dir = if profile == "dev" { "debug" } else { profile };
    cargo_target
        .join(CHAOS_TARGET_SUBDIR)
        .join(dir)
        .join("weft")
}

/// The libraries `ldd` resolves for `binary`, plus the loader.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .context("run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        bail!(
            "ldd {}: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(parse_ldd(&text))
}

/// Parses `ldd` output: `name => /path (addr)` and `/loader (addr)` lines.
pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    libs.sort();
    libs.dedup();
    libs
}

/// The name of the gateway's fault switch: present in a `weft` binary only
/// when it was built with the `failpoints` feature: one per switch the
/// suite uses, so an image from an older build is refused too.
const FAILPOINTS_MARKERS: [&[u8]; 3] = [
    b"WEFT_FAULT_ACK_BEFORE_COMMIT",
    b"WEFT_FAULT_POWER_CUT",
    b"WEFT_FAULT_SKIP_FSYNC",
];

/// Whether `binary` has the fault hooks the injected bugs and the
/// power-cut scenario need. A binary without them would ignore the switch and the self-test
/// would pass for the wrong reason, so images are only built from such
/// binaries.
pub fn has_failpoints(binary: &Path) -> Result<bool> {
    let bytes = std::fs::read(binary).with_context(|| format!("read {}", binary.display()))?;
    Ok(FAILPOINTS_MARKERS
        .iter()
        .all(|m| bytes.windows(m.len()).any(|w| w == *m)))
}

/// Builds the image `tag` from `binary`; returns the image id.
pub async fn build(binary: &Path, tag: &str) -> Result<String> {
    if !binary.is_file() {
        bail!(
            "no weft binary at {} (build it: scripts/chaos-image.sh, or cargo build --release --target-dir \"$CARGO_TARGET_DIR/chaos\" -p weft-cli --features failpoints --bin weft, or pass --binary)",
            binary.display()
        );
    }
    if !has_failpoints(binary)? {
        bail!(
            "the weft binary at {} was built without the fault hooks the chaos suite needs; rebuild it with `cargo build --target-dir \"$CARGO_TARGET_DIR/chaos\" -p weft-cli --features failpoints --bin weft` (scripts/chaos-image.sh does)",
            binary.display()
        );
    }
    let root = std::env::temp_dir().join(format!("weft-chaos-rootfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let result = assemble_and_import(binary, tag, &root).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn assemble_and_import(binary: &Path, tag: &str, root: &Path) -> Result<String> {
    let copy = |from: &Path, to_rel: &Path| -> Result<()> {
        let to = root.join(to_rel.strip_prefix("/").unwrap_or(to_rel));
        std::fs::create_dir_all(to.parent().expect("file paths have a parent"))?;
        // `fs::copy` follows symlinks, so the image gets the real library
        // under the name the loader asks for.
        std::fs::copy(from, &to)
            .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
        Ok(())
    };
    copy(binary, Path::new("/usr/local/bin/weft"))?;
    let libs = shared_libraries(binary)?;
    for lib in &libs {
        copy(lib, lib)?;
    }
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc)?;
    std::fs::write(etc.join("nsswitch.conf"), "hosts: files dns\n")?;
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/:/nonexistent\n")?;
    std::fs::write(etc.join("group"), "root:x:0:\n")?;
    for d in ["tmp", "data", "etc/weft"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    }
    tracing::info!(binary = %binary.display(), libraries = libs.len(), "assembled image root filesystem");

    // tar the tree into `docker import`.
    let tar = std::process::Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(root)
        .args(["-cf", "-", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("run tar")?;
    let import = std::process::Command::new("docker")
        .args([
            "import",
            "--change",
            "ENTRYPOINT [\"/usr/local/bin/weft\"]",
            "--change",
            "LABEL weft-chaos.image=1",
            "--change",
            "ENV WEFT_LOG=info,s3s=off,openraft=warn",
            "-",
            tag,
        ])
        .stdin(tar.stdout.expect("piped stdout"))
        .output()
        .context("run docker import")?;
    if !import.status.success() {
        bail!("docker import: {}", String::from_utf8_lossy(&import.stderr));
    }
    let id = String::from_utf8_lossy(&import.stdout).trim().to_string();
    // Prove the image runs: the loader, libc and the binary all resolve.
    let version = crate::docker::docker(&["run", "--rm", "--network", "none", tag, "--version"])
        .await
        .context("run the new image (weft --version)")?;
    tracing::info!(%tag, %version, "image built");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaos_binaries_live_apart_from_the_normal_ones() {
        let t = Path::new("/t");
        assert_eq!(binary_in(t, "release"), Path::new("/t/chaos/release/weft"));
        assert_eq!(binary_in(t, "dev"), Path::new("/t/chaos/debug/weft"));
        for (profile, normal) in [("release", "/t/release/weft"), ("dev", "/t/debug/weft")] {
            assert_ne!(binary_in(t, profile), Path::new(normal));
        }
    }

    #[test]
    fn failpoints_are_recognised_by_the_switch_name() {
        let dir = std::env::temp_dir().join(format!("weft-chaos-fp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let with = dir.join("with");
        let without = dir.join("without");
        let older = dir.join("older");
        std::fs::write(
            &with,
            b"\x7fELF...WEFT_FAULT_ACK_BEFORE_COMMIT...WEFT_FAULT_SKIP_FSYNC..WEFT_FAULT_POWER_CUT.",
        )
        .unwrap();
        std::fs::write(&without, b"\x7fELF...WEFT_LOG...").unwrap();
        std::fs::write(&older, b"\x7fELF...WEFT_FAULT_ACK_BEFORE_COMMIT...").unwrap();
        assert!(has_failpoints(&with).unwrap());
        assert!(!has_failpoints(&without).unwrap());
        assert!(
            !has_failpoints(&older).unwrap(),
            "a build without the power-cut switch"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }
}
