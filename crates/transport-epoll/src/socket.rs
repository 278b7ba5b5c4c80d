//! Socket options from `TransportConf` (Spark's `spark.rpc.io.sendBuffer`,
//! `receiveBuffer`, and Netty's `TCP_NODELAY`), and the listening socket.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use transport::TransportConf;

/// Backlog of listening sockets: enough for hundreds of clients connecting at
/// once (the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;

/// Applies `TCP_NODELAY`, `SO_SNDBUF` and `SO_RCVBUF` from `conf` (0 leaves the OS default).
pub(crate) fn configure(stream: &tokio::net::TcpStream, conf: &TransportConf) -> std::io::Result<()> {
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

/// A non-blocking listening socket on `addr` with `SO_REUSEADDR` and a deep backlog.
pub(crate) fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
