//! The shared backend conformance suite, run on the io_uring backend.

transport::conformance_suite!(|conf| std::sync::Arc::new(
    transport_uring::UringTransport::new(conf).unwrap()
));
