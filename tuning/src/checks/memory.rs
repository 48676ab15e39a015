//! Memory settings that stall a shard: transparent huge pages (compaction on fault),
//! swappiness (a swapped-out shard) and the dirty page limits (writers throttled in the
//! kernel while the page cache flushes).

use super::{selected_choice, skip_reason, CheckContext};
use crate::finding::{Finding, Tweak, Verdict};
use crate::host::sysctl_path;

pub const SWAPPINESS_MAX: u64 = 10;
pub const SWAPPINESS_APPLIED: u64 = 1;
pub const DIRTY_RATIO_MAX: u64 = 20;
pub const DIRTY_BACKGROUND_RATIO_MAX: u64 = 10;

const THP_DIR: &str = "/sys/kernel/mm/transparent_hugepage";

pub fn check(ctx: &CheckContext) -> Vec<Finding> {
    vec![
        transparent_huge_pages(ctx, "enabled", "mem.thp"),
        transparent_huge_pages(ctx, "defrag", "mem.thp_defrag"),
        swappiness(ctx),
        dirty(ctx),
    ]
}

fn transparent_huge_pages(ctx: &CheckContext, file: &str, id: &str) -> Finding {
    let path = format!("{THP_DIR}/{file}");
    let text = match ctx.host.read_value(&path) {
        Ok(text) => text,
        Err(error) => return Finding::skip(id, skip_reason(&error)),
    };
    let current = selected_choice(&text).to_string();
    let finding = Finding::new(id, Verdict::Ok)
        .found(&current)
        .expected("madvise or never (not always)");
    if current != "always" {
        return finding;
    }
    let why = if file == "enabled" {
        "every anonymous allocation may fault in a huge page, and khugepaged compacts memory behind the shards' backs: multi-ms stalls"
    } else {
        "a page fault that finds no free huge page compacts memory synchronously, stalling the shard that faulted"
    };
    finding
        .verdict(Verdict::Warn)
        .why(why)
        .fix(format!("echo madvise > {path} (transparent_hugepage=madvise on the kernel command line to keep it)"))
        .tweaks(vec![Tweak::new(path, "madvise")])
}

fn swappiness(ctx: &CheckContext) -> Finding {
    const ID: &str = "mem.swappiness";
    let value = match ctx.host.sysctl("vm.swappiness") {
        Ok(value) => value,
        Err(error) => return Finding::skip(ID, skip_reason(&error)),
    };
    let finding = Finding::new(ID, Verdict::Ok)
        .found(&value)
        .expected(format!("<= {SWAPPINESS_MAX}, or no swap"));
    // Without swap the setting changes nothing: report that rather than ask for a change.
    let swap_total_kb = ctx
        .host
        .read("/proc/meminfo")
        .ok()
        .and_then(|meminfo| meminfo_kb(&meminfo, "SwapTotal"));
    if swap_total_kb == Some(0) {
        return finding.found(format!("{value} (no swap configured)"));
    }
    if value.parse::<u64>().is_ok_and(|n| n <= SWAPPINESS_MAX) {
        return finding;
    }
    finding
        .verdict(Verdict::Warn)
        .why("the kernel prefers swapping out idle anonymous memory (an idle shard's state, the metadata) to dropping page cache: the next request pays a swap-in")
        .fix(format!("sysctl -w vm.swappiness={SWAPPINESS_APPLIED}"))
        .tweaks(vec![Tweak::new(sysctl_path("vm.swappiness"), SWAPPINESS_APPLIED.to_string())])
}

fn dirty(ctx: &CheckContext) -> Finding {
    const ID: &str = "mem.dirty";
    let read = |name: &str| ctx.host.sysctl(name).map(|v| v.parse::<u64>().unwrap_or(0));
    let (ratio, background, bytes, background_bytes) = match (
        read("vm.dirty_ratio"),
        read("vm.dirty_background_ratio"),
        read("vm.dirty_bytes"),
        read("vm.dirty_background_bytes"),
    ) {
        (Ok(ratio), Ok(background), bytes, background_bytes) => (
            ratio,
            background,
            bytes.unwrap_or(0),
            background_bytes.unwrap_or(0),
        ),
        (Err(error), _, _, _) | (_, Err(error), _, _) => {
            return Finding::skip(ID, skip_reason(&error))
        }
    };
    let found = if bytes > 0 || background_bytes > 0 {
        format!(
            "dirty_bytes {bytes}, dirty_background_bytes {background_bytes} (override the ratios)"
        )
    } else {
        format!("dirty_ratio {ratio}, dirty_background_ratio {background}")
    };
    let finding = Finding::new(ID, Verdict::Ok).found(found).expected(format!(
        "dirty_ratio <= {DIRTY_RATIO_MAX}, dirty_background_ratio <= {DIRTY_BACKGROUND_RATIO_MAX}"
    ));
    // The *_bytes forms were chosen deliberately by someone; leave them be.
    if bytes > 0
        || background_bytes > 0
        || (ratio <= DIRTY_RATIO_MAX && background <= DIRTY_BACKGROUND_RATIO_MAX)
    {
        return finding;
    }
    finding
        .verdict(Verdict::Warn)
        .why("a high dirty limit lets gigabytes of page cache pile up; when it is hit every writer, a shard included, is throttled inside write() and flushes take seconds")
        .fix(format!(
            "sysctl -w vm.dirty_ratio={DIRTY_RATIO_MAX} vm.dirty_background_ratio={DIRTY_BACKGROUND_RATIO_MAX}"
        ))
        .tweaks(vec![
            Tweak::new(sysctl_path("vm.dirty_ratio"), DIRTY_RATIO_MAX.to_string()),
            Tweak::new(sysctl_path("vm.dirty_background_ratio"), DIRTY_BACKGROUND_RATIO_MAX.to_string()),
        ])
}

/// `SwapTotal:  8388604 kB` → 8388604.
fn meminfo_kb(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        (name == key).then(|| rest.split_whitespace().next()?.parse().ok())?
    })
}
