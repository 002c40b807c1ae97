//! `[worker.landlock]`: a worker restricts itself with Landlock before it
//! loads the plugin's library (see [`crate::manifest::Landlock`] for what
//! stays reachable). It runs before the worker starts any thread: Landlock
//! restricts the calling thread and the threads and processes it starts
//! later, so no thread of the worker is left unrestricted.

use crate::manifest::Landlock;

/// What every worker may read: the shared libraries the plugin's library
/// links against, the loader's cache, and the usual character devices.
/// Missing ones are skipped.
#[cfg(target_os = "linux")]
const SYSTEM_READ: &[&str] = &[
    "/lib",
    "/lib32",
    "/lib64",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/local/lib",
    "/etc/ld.so.cache",
    "/dev/urandom",
];

/// Restrict this process (its calling thread, which must be its only one) to
/// `sandbox`, plus [`SYSTEM_READ`] and `/dev/null`.
///
/// # Errors
/// A message naming what failed: a path that does not exist or cannot be
/// opened, or a kernel that cannot enforce every requested restriction
/// (Landlock missing or disabled, or an ABI older than the rules need).
#[cfg(target_os = "linux")]
pub(crate) fn restrict(sandbox: &Landlock) -> Result<(), String> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
        RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
    };

    // ABI 3 (Linux 6.2) is the first to control truncation: without it, a
    // read-only file could still be emptied.
    const FS: ABI = ABI::V3;
    let failed = |e: landlock::RulesetError| format!("landlock: {e}");
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(FS))
        .map_err(failed)?;
    if !sandbox.tcp {
        ruleset = ruleset.handle_access(AccessNet::from_all(ABI::V4)).map_err(failed)?;
    }
    // Signals to and abstract sockets of processes outside the sandbox
    // (ABI 6): where the kernel has it.
    ruleset = ruleset.set_compatibility(CompatLevel::BestEffort).scope(Scope::from_all(ABI::V6)).map_err(failed)?;
    let mut created = ruleset.create().map_err(failed)?.set_compatibility(CompatLevel::HardRequirement);
    created = created.add_rules(path_beneath_rules(SYSTEM_READ, AccessFs::from_read(FS))).map_err(failed)?;
    created = created.add_rules(path_beneath_rules(["/dev/null"], AccessFs::from_all(FS))).map_err(failed)?;
    for (paths, access, field) in
        [(&sandbox.read, AccessFs::from_read(FS), "read"), (&sandbox.write, AccessFs::from_all(FS), "write")]
    {
        for path in paths {
            let fd = PathFd::new(path)
                .map_err(|e| format!("worker.landlock.{field}: cannot open {}: {e}", path.display()))?;
            // A file takes only the rights that apply to files.
            let access = if path.is_dir() { access } else { access & AccessFs::from_file(FS) };
            created = created.add_rule(PathBeneath::new(fd, access)).map_err(failed)?;
        }
    }
    let status = created.restrict_self().map_err(failed)?;
    match status.ruleset {
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced if status.no_new_privs => Ok(()),
        other => Err(format!("landlock: the kernel did not enforce the sandbox ({other:?})")),
    }
}

/// Landlock is Linux's: elsewhere a manifest that asks for it does not load.
///
/// # Errors
/// Always.
#[cfg(not(target_os = "linux"))]
pub(crate) fn restrict(_: &Landlock) -> Result<(), String> {
    Err("worker.landlock: Landlock is Linux-only; this host cannot restrict the worker".into())
}
