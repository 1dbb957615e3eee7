//! The commit the binary is built from, for `coffer --version`: `git rev-parse` of the checkout
//! it is built in ("unknown" outside one, as from a source tarball), with "-dirty" when tracked
//! files differ from it. That is read when this script runs: on a new commit, and, for the
//! packages, whenever scripts/build-portable.sh's COFFER_TREE_STATE (a digest of the
//! differences) changes; a developer's build may keep a stale mark between commits.
use std::path::Path;
use std::process::Command;

fn main() {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (!text.is_empty()).then_some(text)
    };
    let mut commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    if commit != "unknown" && git(&["status", "--porcelain", "--untracked-files=no"]).is_some() {
        commit.push_str("-dirty");
    }
    println!("cargo:rustc-env=COFFER_COMMIT={commit}");
    println!("cargo:rerun-if-env-changed=COFFER_TREE_STATE");
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
