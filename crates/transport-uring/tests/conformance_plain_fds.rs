//! The shared backend conformance suite, run on the io_uring backend with
//! sockets named by descriptor (`UringConf::fixed_files` off), the path taken
//! when a loop's file table is full or the kernel refuses one.

transport::conformance_suite!(|conf: transport::TransportConf| {
    let pool = transport::BufferPool::new(conf.pool_max_bytes);
    let uring = transport_uring::UringConf {
        fixed_files: false,
        ..transport_uring::UringConf::default()
    };
    std::sync::Arc::new(transport_uring::UringTransport::with_uring_conf(conf, pool, uring).unwrap())
});
