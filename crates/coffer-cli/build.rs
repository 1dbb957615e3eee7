//! The commit the binary is built from, for `coffer --version`: `git rev-parse` of the checkout
//! it is built in ("unknown" outside one, as from a source tarball).
use std::path::Path;
use std::process::Command;

fn main() {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (!text.is_empty()).then_some(text)
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=COFFER_COMMIT={commit}");
    // Built again when the checkout moves to another commit.
    // (Only files that exist: a missing one would rebuild the binary every time.)
    for what in ["HEAD", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", what]).filter(|p| Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r])) {
        if Path::new(&head).exists() {
            println!("cargo:rerun-if-changed={head}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
