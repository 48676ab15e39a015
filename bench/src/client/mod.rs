//! The native Kafka client: framing shared by both halves, a blocking admin client for setup
//! (control plane: clarity over speed), and pipelined glommio connections for the load.

pub mod admin;
pub mod codec;
pub mod connection;
pub mod retry;
