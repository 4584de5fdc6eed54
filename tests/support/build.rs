//! Builds the guest programs the tests run (the examples and the `behave` test guest) for
//! `wasm32-wasip1`, and tells the crate where they are.
//!
//! The nested cargo uses its own target directory: the outer build holds the lock on the
//! workspace's, and a shared one would make this build wait for itself.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const GUESTS: &[&str] = &["hello", "pi", "wordcount", "flaky", "behave"];

fn main() {
    let support = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = support.join("../..").canonicalize().unwrap();
    for dir in ["examples", "guest-sdk", "host-api", "tests/guest"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    let target_dir = workspace.join("target/guests");

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&workspace)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip1",
            "--target-dir",
        ])
        .arg(&target_dir);
    for guest in GUESTS {
        build.args(["-p", guest]);
    }
    // The outer build's flags and wrappers are for the host, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        build.env_remove(var);
    }
    let status = build.status().expect("running cargo to build the guests");
    assert!(
        status.success(),
        "building the test guests for wasm32-wasip1 failed; is the target installed? \
         (rustup target add wasm32-wasip1)"
    );
    println!(
        "cargo:rustc-env=WASMJOB_GUESTS_DIR={}",
        target_dir.join("wasm32-wasip1/release").display()
    );
}
