//! Turning findings and write outcomes into what the operator reads: an aligned table with
//! the reason and fix under each problem, or JSON for automation. Formatting only: no checks
//! and no I/O beyond the returned strings.

use std::fmt::Write as _;

use serde::Serialize;

use crate::apply::{PlannedWrite, WriteOutcome, WriteResult};
use crate::finding::{Finding, Verdict};

/// Columns wider than this are cut with an ellipsis in the table (never in JSON).
const FOUND_COLUMN_CHARS_MAX: usize = 48;
const EXPECTED_COLUMN_CHARS_MAX: usize = 44;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
    /// Findings `apply` can fix itself.
    pub fixable: usize,
}

pub fn summarize(findings: &[Finding]) -> Summary {
    let mut summary = Summary::default();
    for finding in findings {
        match finding.verdict {
            Verdict::Ok => summary.ok += 1,
            Verdict::Warn => summary.warn += 1,
            Verdict::Fail => summary.fail += 1,
            Verdict::Skip => summary.skip += 1,
        }
        if finding.is_problem() && !finding.tweaks.is_empty() {
            summary.fixable += 1;
        }
    }
    summary
}

/// The `check --json` document.
#[derive(Serialize)]
pub struct CheckDocument<'a> {
    pub summary: Summary,
    pub findings: &'a [Finding],
}

pub fn findings_json(findings: &[Finding]) -> String {
    let document = CheckDocument {
        summary: summarize(findings),
        findings,
    };
    serde_json::to_string_pretty(&document)
        .expect("findings are plain strings and numbers: always serializable")
}

/// The `check` table.
pub fn findings_table(findings: &[Finding]) -> String {
    let check_width = findings
        .iter()
        .map(|f| f.check.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7} {:<check_width$}  {:<FOUND_COLUMN_CHARS_MAX$}  EXPECTED",
        "VERDICT", "CHECK", "FOUND"
    );
    for finding in findings {
        let line = format!(
            "{:<7} {:<check_width$}  {:<FOUND_COLUMN_CHARS_MAX$}  {}",
            finding.verdict.label(),
            finding.check,
            cut(&finding.found, FOUND_COLUMN_CHARS_MAX),
            cut(&finding.expected, EXPECTED_COLUMN_CHARS_MAX),
        );
        let _ = writeln!(out, "{}", line.trim_end());
        if finding.verdict == Verdict::Skip
            && finding.found.chars().count() > FOUND_COLUMN_CHARS_MAX
        {
            let _ = writeln!(out, "{}reason: {}", " ".repeat(8), finding.found);
        }
        if finding.is_problem() {
            let indent = " ".repeat(8);
            if finding.found.chars().count() > FOUND_COLUMN_CHARS_MAX {
                let _ = writeln!(out, "{indent}found: {}", finding.found);
            }
            let _ = writeln!(out, "{indent}why:   {}", finding.why);
            let applies = if finding.tweaks.is_empty() {
                ""
            } else {
                "  [apply fixes this]"
            };
            let _ = writeln!(out, "{indent}fix:   {}{applies}", finding.fix);
        }
    }
    let summary = summarize(findings);
    let _ = writeln!(
        out,
        "\n{} OK, {} WARN, {} FAIL, {} SKIP.",
        summary.ok, summary.warn, summary.fail, summary.skip
    );
    if summary.fixable > 0 {
        let _ = writeln!(
            out,
            "`weir-tune apply --dry-run` shows the writes that fix {} of them; `weir-tune apply` makes them (root).",
            summary.fixable
        );
    }
    out
}

pub fn plan_table(planned: &[PlannedWrite]) -> String {
    if planned.is_empty() {
        return "Nothing to write: no finding has a fix apply can make.\n".to_string();
    }
    let mut out = String::new();
    for write in planned {
        let current = write.current.as_deref().unwrap_or("unreadable");
        let _ = writeln!(
            out,
            "would write {:?} to {} (now {:?}) for {}",
            write.value,
            write.path.display(),
            current,
            write.check
        );
    }
    out
}

pub fn outcomes_table(outcomes: &[WriteOutcome]) -> String {
    if outcomes.is_empty() {
        return "Nothing to do.\n".to_string();
    }
    let mut out = String::new();
    for outcome in outcomes {
        let path = outcome.path.display();
        let _ = match &outcome.result {
            WriteResult::Written { previous } => writeln!(
                out,
                "wrote   {:?} to {path} (was {previous:?}) for {}",
                outcome.value, outcome.check
            ),
            WriteResult::AlreadySet => writeln!(out, "kept    {path}: already {:?}", outcome.value),
            WriteResult::Failed(reason) => writeln!(out, "FAILED  {path}: {reason}"),
        };
    }
    out
}

fn cut(text: &str, chars_max: usize) -> String {
    if text.chars().count() <= chars_max {
        return text.to_string();
    }
    let kept: String = text.chars().take(chars_max - 1).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Tweak;

    #[test]
    fn the_table_shows_why_and_fix_for_problems_only() {
        let findings = vec![
            Finding::new("mem.thp", Verdict::Ok)
                .found("madvise")
                .expected("madvise"),
            Finding::new("mem.swappiness", Verdict::Warn)
                .found("60")
                .expected("<= 10")
                .why("swap-ins")
                .fix("sysctl -w vm.swappiness=1")
                .tweaks(vec![Tweak::new("/proc/sys/vm/swappiness", "1")]),
        ];
        let table = findings_table(&findings);
        assert!(table.contains("WARN    mem.swappiness"));
        assert!(table.contains("why:   swap-ins"));
        assert!(table.contains("[apply fixes this]"));
        assert_eq!(table.matches("why:").count(), 1);
        assert!(table.contains("1 OK, 1 WARN, 0 FAIL, 0 SKIP."));
        let json: serde_json::Value =
            serde_json::from_str(&findings_json(&findings)).expect("valid JSON");
        assert_eq!(json["summary"]["warn"], 1);
        assert_eq!(json["findings"][1]["verdict"], "WARN");
    }

    #[test]
    fn long_values_are_cut_in_the_table() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
