//! Socket options from `TransportConf` and the listening and connecting sockets.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use transport::TransportConf;

/// Backlog of listening sockets (the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;

/// Applies `TCP_NODELAY`, `SO_SNDBUF` and `SO_RCVBUF` from `conf` (0 leaves the OS default).
pub(crate) fn configure(stream: &TcpStream, conf: &TransportConf) -> std::io::Result<()> {
    stream.set_nodelay(conf.tcp_nodelay)?;
    let sock = SockRef::from(stream);
    if conf.send_buffer_bytes > 0 {
        sock.set_send_buffer_size(conf.send_buffer_bytes)?;
    }
    if conf.receive_buffer_bytes > 0 {
        sock.set_recv_buffer_size(conf.receive_buffer_bytes)?;
    }
    Ok(())
}

/// A listening socket on `addr` with `SO_REUSEADDR` and a deep backlog.
pub(crate) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Connects to `addr`, blocking the calling thread for at most `timeout`.
///
/// Connecting on the caller's thread (rather than with `IORING_OP_CONNECT` on
/// the loop) keeps the loop free of timers: `Transport::connect` blocks its
/// caller anyway, and the kernel's own connect timeout handling is exact.
pub(crate) fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.connect_timeout(&addr.into(), timeout)?;
    socket.set_nonblocking(false)?;
    Ok(socket.into())
}
