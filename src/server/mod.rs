//! The Kafka protocol server: accept, frame, dispatch, respond in order.
//!
//! Hot path: a connection's read loop and its writer. No locks, no blocking syscalls; the
//! only per-request allocations are the request frame and the response.

pub mod budget;
pub mod connection;
pub mod frame;
pub mod listener;
pub mod response;
pub mod sendfile;
