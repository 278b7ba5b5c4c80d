//! `RpcAddress`: where an RpcEnv listens (Spark's `RpcAddress`, `spark://host:port`).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use crate::error::RpcError;

/// The address of a server-mode RpcEnv: a host name or IP, and a TCP port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RpcAddress {
    /// Host name or IP literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl RpcAddress {
    /// An address from its parts.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }

    /// Resolves the host to the first socket address it names.
    ///
    /// # Errors
    /// [`RpcError::InvalidAddress`] when the host does not resolve.
    pub fn to_socket_addr(&self) -> Result<SocketAddr, RpcError> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| it.next())
            .ok_or_else(|| RpcError::InvalidAddress {
                address: self.to_string(),
                reason: "the host does not resolve".into(),
            })
    }

    /// The URL form, `rpc://host:port`.
    pub fn to_url(&self) -> String {
        format!("rpc://{self}")
    }
}

impl From<SocketAddr> for RpcAddress {
    fn from(addr: SocketAddr) -> Self {
        Self::new(addr.ip().to_string(), addr.port())
    }
}

impl fmt::Display for RpcAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for RpcAddress {
    type Err = RpcError;

    /// Parses `host:port`, `[v6]:port`, or either behind `rpc://` or `spark://`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| RpcError::InvalidAddress {
            address: s.to_string(),
            reason: reason.to_string(),
        };
        let rest = s
            .strip_prefix("rpc://")
            .or_else(|| s.strip_prefix("spark://"))
            .unwrap_or(s);
        if let Some((scheme, _)) = rest.split_once("://") {
            return Err(bad(&format!(
                "`{scheme}://` is not an RpcEnv address; write host:port or rpc://host:port"
            )));
        }
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("expected host:port or rpc://host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let port = port
            .parse()
            .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
        Ok(Self::new(host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let a: RpcAddress = "rpc://localhost:7077".parse().unwrap();
        assert_eq!(a, RpcAddress::new("localhost", 7077));
        assert_eq!(a.to_url(), "rpc://localhost:7077");
        let b: RpcAddress = "[::1]:80".parse().unwrap();
        assert_eq!(b.host, "::1");
        assert_eq!(b.to_string(), "[::1]:80");
        assert!("nohost".parse::<RpcAddress>().is_err());
        let e = "http://127.0.0.1:7077"
            .parse::<RpcAddress>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("rpc://host:port"), "{e}");
        assert!(
            "h:99999"
                .parse::<RpcAddress>()
                .unwrap_err()
                .to_string()
                .contains("port")
        );
        assert_eq!(
            RpcAddress::new("127.0.0.1", 9).to_socket_addr().unwrap(),
            "127.0.0.1:9".parse::<SocketAddr>().unwrap()
        );
    }
}
