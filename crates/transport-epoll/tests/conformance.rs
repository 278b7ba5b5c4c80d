//! The `transport` conformance suite, run against the epoll (tokio) backend.

transport::conformance_suite!(|conf| std::sync::Arc::new(
    transport_epoll::EpollTransport::new(conf).unwrap()
));
