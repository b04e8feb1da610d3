//! Benchmarks of netauto; see `benches/`.
