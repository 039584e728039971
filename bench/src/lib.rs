//! BurstFlare's benchmarks (`make bench`, docs/benchmarks.md): each benchmark measures a path of
//! the product against a floor of plain tools on the same machine, and the results go to
//! BENCHMARKS.md at the repository root. Not part of `make test`: only the pure pieces (the data
//! generator, the summaries, the report, the parsers) have tests, none of them timed.

pub mod agent;
pub mod api_load;
pub mod cold_start;
pub mod latency;
pub mod mix;
pub mod noop;
pub mod platform;
pub mod report;
pub mod resume;
pub mod scale;
pub mod snapshots;
pub mod stats;
pub mod throughput;
pub mod timeline;
pub mod tree;
pub mod wsio;
