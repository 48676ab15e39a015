//! The benchmark's typed errors. Binaries print them; library code never panics on them.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("i/o error talking to {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("i/o error: {0}")]
    LocalIo(#[from] io::Error),
    #[error("could not encode {what}: {message}")]
    Encode { what: &'static str, message: String },
    #[error("could not decode {what}: {message}")]
    Decode { what: &'static str, message: String },
    #[error("response frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("response correlation id {got} does not match the request's {expected}")]
    CorrelationMismatch { expected: i32, got: i32 },
    #[error("broker error {code} ({what})")]
    Broker { code: i16, what: String },
    #[error("topic {topic}: {message}")]
    Topic { topic: String, message: String },
    #[error("corrupt record batch at offset {offset}: {message}")]
    CorruptBatch { offset: i64, message: String },
    #[error("invalid workload: {0}")]
    Workload(String),
    #[error("unknown preset {0:?} (see `weir-bench presets`)")]
    UnknownPreset(String),
    #[error("{0}")]
    Config(String),
    #[error("executor failed: {0}")]
    Executor(String),
    #[error("{0}")]
    Unsupported(String),
}

impl BenchError {
    pub fn io(addr: impl Into<String>, source: io::Error) -> BenchError {
        BenchError::Io {
            addr: addr.into(),
            source,
        }
    }
}
