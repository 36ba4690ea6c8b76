//! The open-files limit (`RLIMIT_NOFILE`): every connection, client or upstream, holds a file
//! descriptor, and a distribution's default soft limit (often 1,024) would cap the gateway far
//! below the connections it can hold. At start the gateway raises the soft limit to the hard
//! limit (what an unprivileged process may do) and says in the log what it got, or why not.

use std::io;

use rlimit::Resource;

/// What raising the limit came to.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenFiles {
    /// The soft limit was raised from `from` to `to` (the hard limit, or the kernel's
    /// per-process ceiling when the hard limit is unlimited).
    Raised {
        /// The soft limit before.
        from: u64,
        /// The soft limit now.
        to: u64,
    },
    /// The soft limit was already the hard limit.
    AtHardLimit(u64),
    /// The limit could not be read or raised; the soft limit stays `soft` (when read).
    Failed {
        /// The soft limit in force, when it could be read.
        soft: Option<u64>,
        /// The hard limit, when it could be read.
        hard: Option<u64>,
        /// Why it failed.
        error: String,
    },
}

/// Linux refuses a soft limit above `fs.nr_open` even when the hard limit is unlimited.
const NR_OPEN: &str = "/proc/sys/fs/nr_open";

/// Raises the process's open-files soft limit to its hard limit.
pub fn raise() -> OpenFiles {
    raise_with(
        || Resource::NOFILE.get(),
        |soft, hard| Resource::NOFILE.set(soft, hard),
        || {
            std::fs::read_to_string(NR_OPEN)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        },
    )
}

/// [`raise`] with the system calls passed in, so every outcome can be tested.
pub fn raise_with(
    get: impl FnOnce() -> io::Result<(u64, u64)>,
    set: impl FnOnce(u64, u64) -> io::Result<()>,
    nr_open: impl FnOnce() -> Option<u64>,
) -> OpenFiles {
    let (soft, hard) = match get() {
        Ok(limits) => limits,
        Err(e) => {
            return OpenFiles::Failed {
                soft: None,
                hard: None,
                error: e.to_string(),
            }
        }
    };
    let target = if hard == rlimit::INFINITY {
        nr_open().unwrap_or(soft).max(soft)
    } else {
        hard
    };
    if soft >= target {
        return OpenFiles::AtHardLimit(soft);
    }
    match set(target, hard) {
        Ok(()) => OpenFiles::Raised {
            from: soft,
            to: target,
        },
        Err(e) => OpenFiles::Failed {
            soft: Some(soft),
            hard: Some(hard),
            error: e.to_string(),
        },
    }
}

/// Logs `outcome`: info when the limit is what it can be, a warning when it could not be raised.
pub fn log(outcome: &OpenFiles) {
    match outcome {
        OpenFiles::Raised { from, to } => {
            tracing::info!(from, to, "open-files limit raised to the hard limit");
        }
        OpenFiles::AtHardLimit(limit) => {
            tracing::info!(limit, "open-files limit already at the hard limit");
        }
        OpenFiles::Failed { soft, hard, error } => {
            tracing::warn!(
                soft = soft.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
                hard = hard.map(|h| h.to_string()).unwrap_or_else(|| "unknown".into()),
                error = %error,
                "cannot raise the open-files limit: connections beyond the soft limit will be refused"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn never_set(_: u64, _: u64) -> io::Result<()> {
        panic!("set must not be called")
    }

    #[test]
    fn a_soft_limit_below_the_hard_limit_is_raised_to_it() {
        let mut asked = None;
        let outcome = raise_with(
            || Ok((1024, 524_288)),
            |soft, hard| {
                asked = Some((soft, hard));
                Ok(())
            },
            || None,
        );
        assert_eq!(
            outcome,
            OpenFiles::Raised {
                from: 1024,
                to: 524_288
            }
        );
        assert_eq!(asked, Some((524_288, 524_288)), "the hard limit is kept");
    }

    #[test]
    fn an_unlimited_hard_limit_raises_the_soft_limit_to_nr_open() {
        let mut asked = None;
        let outcome = raise_with(
            || Ok((1024, rlimit::INFINITY)),
            |soft, hard| {
                asked = Some((soft, hard));
                Ok(())
            },
            || Some(1_048_576),
        );
        assert_eq!(
            outcome,
            OpenFiles::Raised {
                from: 1024,
                to: 1_048_576
            }
        );
        assert_eq!(asked, Some((1_048_576, rlimit::INFINITY)));
    }

    #[test]
    fn a_soft_limit_at_the_hard_limit_is_left_alone() {
        assert_eq!(
            raise_with(|| Ok((4096, 4096)), never_set, || None),
            OpenFiles::AtHardLimit(4096)
        );
    }

    #[test]
    fn a_refused_raise_or_an_unreadable_limit_is_a_failure_with_its_reason() {
        let outcome = raise_with(
            || Ok((1024, 4096)),
            |_, _| Err(io::Error::from(io::ErrorKind::PermissionDenied)),
            || None,
        );
        assert!(
            matches!(&outcome, OpenFiles::Failed { soft: Some(1024), hard: Some(4096), error } if error.contains("ermission")),
            "{outcome:?}"
        );
        let outcome = raise_with(|| Err(io::Error::other("no getrlimit")), never_set, || None);
        assert!(
            matches!(&outcome, OpenFiles::Failed { soft: None, error, .. } if error == "no getrlimit"),
            "{outcome:?}"
        );
    }
}
