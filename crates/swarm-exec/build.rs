//! Builds the node-side program that zero-install helpers run — `swarm-exec-node`, static,
//! and the loader that starts it from its swarm configs — and leaves in OUT_DIR what
//! `src/node_program.rs` embeds: the loader, the program compressed (zstd; the binary
//! unpacks it only to create its configs), and `node_program.rs` with the program's length
//! and the build's digest (as `swarm_exec_core::model::node_program::build_id_of` has it). One artifact
//! is all a user installs.
//!
//! They are built by a nested cargo into their own target directory (beside this build's),
//! always in release mode and linked statically against glibc: they run in whatever image
//! the target task runs, with nothing of that image's libc. `SWARM_EXEC_NODE_PROGRAM=DIR`
//! takes ready `swarm-exec-node` and `swarm-exec-load` files from DIR instead.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-env-changed=SWARM_EXEC_NODE_PROGRAM");
    if let Some(dir) = env::var_os("SWARM_EXEC_NODE_PROGRAM") {
        let dir = std::path::absolute(PathBuf::from(dir)).expect("SWARM_EXEC_NODE_PROGRAM");
        for name in ["swarm-exec-node", "swarm-exec-load"] {
            println!("cargo:rerun-if-changed={}", dir.join(name).display());
        }
        embed(&dir, &out);
        return;
    }
    for watched in [
        "crates/swarm-exec-node",
        "crates/swarm-exec-proto",
        "crates/swarm-exec-load/src",
        "crates/swarm-exec-load/build.rs",
        "crates/swarm-exec-load/Cargo.toml",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = cargo_target_dir(&out).join("node-program");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    let build = |manifest_path: &Path, package: Option<&str>, rustflags: &str| {
        let mut cmd = Command::new(&cargo);
        cmd.args(["build", "--release", "--locked", "--target", TARGET])
            .arg("--manifest-path")
            .arg(manifest_path)
            .arg("--target-dir")
            .arg(&target_dir);
        if let Some(p) = package {
            cmd.args(["-p", p]);
        }
        // Nothing of this build's own flags or profile leaks into the nested one.
        for (key, _) in env::vars_os() {
            let key = key.to_string_lossy();
            let kept = ["CARGO_HOME", "CARGO_NET_OFFLINE", "CARGO_MAKEFLAGS"];
            if key.starts_with("CARGO_") && !kept.contains(&key.as_ref()) || key == "RUSTFLAGS" {
                cmd.env_remove(key.as_ref());
            }
        }
        cmd.env("CARGO_ENCODED_RUSTFLAGS", rustflags);
        let status = cmd
            .status()
            .expect("running cargo for the node-side program");
        assert!(status.success(), "building the node-side program failed");
    };
    build(
        &root.join("Cargo.toml"),
        Some("swarm-exec-node"),
        "-Ctarget-feature=+crt-static",
    );
    build(&root.join("crates/swarm-exec-load/Cargo.toml"), None, "");
    embed(&target_dir.join(TARGET).join("release"), &out);
}

/// Writes what `src/node_program.rs` embeds from the two files in `dir`.
fn embed(dir: &Path, out: &Path) {
    use sha2::Digest as _;
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    };
    let (loader, program) = (read("swarm-exec-load"), read("swarm-exec-node"));
    let mut h = sha2::Sha256::new();
    h.update((loader.len() as u64).to_le_bytes());
    h.update(&loader);
    h.update(&program);
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let digest = hex(&h.finalize());
    let program_sha256 = hex(&sha2::Sha256::digest(&program));
    let packed = zstd::bulk::compress(&program, 19).expect("compressing the node program");
    let write = |name: &str, data: &[u8]| {
        std::fs::write(out.join(name), data).unwrap_or_else(|e| panic!("writing {name}: {e}"));
    };
    write("swarm-exec-load", &loader);
    write("swarm-exec-node.zst", &packed);
    write(
        "node_program.rs",
        format!(
            "/// The node program's length, unpacked.\npub const PROGRAM_LEN: usize = {};\n\
             /// The build's digest.\npub const BUILD_ID: &str = \"{digest}\";\n\
             /// The program's SHA-256, which the loader checks.\n\
             pub const PROGRAM_SHA256: &str = \"{program_sha256}\";\n",
            program.len()
        )
        .as_bytes(),
    );
}

/// The target directory this build runs in: the ancestor of OUT_DIR that cargo tagged.
fn cargo_target_dir(out: &Path) -> PathBuf {
    out.ancestors()
        .find(|p| p.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out.join("node-program"))
}
