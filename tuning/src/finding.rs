//! What one check concluded: the verdict, what it found, what it should be, why that matters
//! to Weir, how to fix it, and the file writes `apply` may make. Plain data: no check logic
//! and no I/O here.

use std::path::PathBuf;

use serde::Serialize;

/// How a check came out, from best to worst. `Skip` sits apart: nothing could be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// As Weir wants it.
    Ok,
    /// Weir runs, but slower or with worse tail latency than this host could give.
    Warn,
    /// Weir will not start or will not stay up.
    Fail,
    /// The file or fact is not there (container, VM, older kernel); the reason is in `found`.
    Skip,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        }
    }
}

/// One write `apply` may make: `value` into `path` (a `/proc` or `/sys` path as on the host).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tweak {
    pub path: PathBuf,
    pub value: String,
}

impl Tweak {
    pub fn new(path: impl Into<PathBuf>, value: impl Into<String>) -> Tweak {
        Tweak {
            path: path.into(),
            value: value.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable dotted id, e.g. `cpu.governor` or `net.irq_affinity.eth0`: scripts key on it.
    pub check: String,
    pub verdict: Verdict,
    pub found: String,
    pub expected: String,
    /// Why this matters to Weir; empty when there is nothing to say.
    pub why: String,
    /// What an operator does about it; empty when OK.
    pub fix: String,
    /// What `weir-tune apply` would write; empty when it cannot fix this itself.
    pub tweaks: Vec<Tweak>,
}

impl Finding {
    pub fn new(check: impl Into<String>, verdict: Verdict) -> Finding {
        Finding {
            check: check.into(),
            verdict,
            found: String::new(),
            expected: String::new(),
            why: String::new(),
            fix: String::new(),
            tweaks: Vec::new(),
        }
    }

    /// A check that could not run, with the reason in place of what it found.
    pub fn skip(check: impl Into<String>, reason: impl Into<String>) -> Finding {
        Finding::new(check, Verdict::Skip).found(reason)
    }

    pub fn verdict(mut self, verdict: Verdict) -> Finding {
        self.verdict = verdict;
        self
    }

    pub fn found(mut self, found: impl Into<String>) -> Finding {
        self.found = found.into();
        self
    }

    pub fn expected(mut self, expected: impl Into<String>) -> Finding {
        self.expected = expected.into();
        self
    }

    pub fn why(mut self, why: impl Into<String>) -> Finding {
        self.why = why.into();
        self
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = fix.into();
        self
    }

    pub fn tweaks(mut self, tweaks: Vec<Tweak>) -> Finding {
        self.tweaks = tweaks;
        self
    }

    /// WARN or FAIL: what the broker logs at start.
    pub fn is_problem(&self) -> bool {
        matches!(self.verdict, Verdict::Warn | Verdict::Fail)
    }

    /// One line for a log: `WARN vm.swappiness: found 60, expected <= 10; fix: ...`.
    pub fn log_line(&self) -> String {
        let mut line = format!(
            "{} {}: found {}",
            self.verdict.label(),
            self.check,
            self.found
        );
        if !self.expected.is_empty() {
            line.push_str(&format!(", expected {}", self.expected));
        }
        if !self.fix.is_empty() {
            line.push_str(&format!("; fix: {}", self.fix));
        }
        line
    }
}
