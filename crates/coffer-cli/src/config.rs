//! Profiles from a TOML config file (placeholder: filled in by the config work).

/// The profile this run uses, if any (a metrics label).
pub fn profile_name() -> Option<&'static str> {
    None
}
