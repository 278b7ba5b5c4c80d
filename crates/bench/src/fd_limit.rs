//! The open-file limit (`RLIMIT_NOFILE`): `rpc-bench idle-conns` holds thousands of sockets,
//! and the `serve` it starts accepts as many; each raises its soft limit to the hard one
//! (a child started afterwards inherits the raised limit).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// This process's open-file limits: `(soft, hard)`, in descriptors (`u64::MAX`: unlimited).
pub fn limits() -> (u64, u64) {
    let l = getrlimit(Resource::Nofile);
    (l.current.unwrap_or(u64::MAX), l.maximum.unwrap_or(u64::MAX))
}

/// Raises this process's soft open-file limit to its hard limit; returns the new soft limit.
///
/// # Errors
/// The OS error of `setrlimit` (it does not fail for an unprivileged process raising its soft
/// limit up to the hard one).
pub fn raise_to_hard() -> std::io::Result<u64> {
    let l = getrlimit(Resource::Nofile);
    if l.current == l.maximum {
        return Ok(limits().0);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        },
    )?;
    Ok(limits().0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_rises_to_the_hard_one() {
        let (_, hard) = limits();
        assert_eq!(raise_to_hard().unwrap(), hard);
        assert_eq!(limits(), (hard, hard));
    }
}
