//! What the load generator measures. Each core records into its own structures (no sharing
//! on the hot path); the runner merges them once at the end. `live` is the exception: a few
//! atomic counters, bumped once per request rather than per message, for the progress line.

pub mod delivery;
pub mod latency;
pub mod live;
pub mod series;
