//! BurstFlare's benchmarks (`make bench`, docs/benchmarks.md): each benchmark measures a path of
//! the product against a floor of plain tools on the same machine, and the results go to
//! BENCHMARKS.md at the repository root. Not part of `make test`: only the pure pieces (the data
//! generator, the summaries, the report) have tests, none of them timed.

pub mod agent;
pub mod mix;
pub mod report;
pub mod snapshots;
pub mod stats;
pub mod tree;
