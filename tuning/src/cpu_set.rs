//! Sets of CPU numbers in the kernel's two spellings: lists (`0-3,8`, as in
//! `smp_affinity_list` and `isolated`) and hex masks (`ff,00000001`, as in `rps_cpus`).
//! Parsing is bounded: a list naming a CPU above [`CPU_ID_MAX`] is rejected, not allocated.

use std::collections::BTreeSet;

/// Linux's largest `NR_CPUS` is 8192; anything above is not a CPU number.
pub const CPU_ID_MAX: usize = 8191;

pub type CpuSet = BTreeSet<usize>;

/// `0-3,8` → {0,1,2,3,8}. An empty string is the empty set (as `isolated` is by default).
pub fn parse_list(text: &str) -> Option<CpuSet> {
    let mut cpus = CpuSet::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let cpu: usize = part.trim().parse().ok()?;
                (cpu, cpu)
            }
        };
        if first > last || last > CPU_ID_MAX {
            return None;
        }
        cpus.extend(first..=last);
    }
    Some(cpus)
}

/// {0,1,2,3,8} → `0-3,8`.
pub fn format_list(cpus: &CpuSet) -> String {
    let mut parts = Vec::new();
    let mut iter = cpus.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        parts.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
    }
    parts.join(",")
}

/// `ff,00000001` → {0, 32..=39}: comma-separated 32-bit words, most significant first.
pub fn parse_mask(text: &str) -> Option<CpuSet> {
    let mut cpus = CpuSet::new();
    let words: Vec<&str> = text.trim().split(',').collect();
    if words.len() * 32 > CPU_ID_MAX + 1 {
        return None;
    }
    for (index_from_low, word) in words.iter().rev().enumerate() {
        let bits = u32::from_str_radix(word, 16).ok()?;
        for bit in 0..32 {
            if bits & (1 << bit) != 0 {
                cpus.insert(index_from_low * 32 + bit);
            }
        }
    }
    Some(cpus)
}

/// {0, 33} → `00000002,00000001`; the kernel accepts masks shorter than its own width.
pub fn format_mask(cpus: &CpuSet) -> String {
    let words = cpus.iter().next_back().map_or(1, |&max| max / 32 + 1);
    let mut out = Vec::with_capacity(words);
    for word in (0..words).rev() {
        let bits = cpus
            .iter()
            .filter(|&&cpu| cpu / 32 == word)
            .fold(0u32, |acc, &cpu| acc | (1 << (cpu % 32)));
        out.push(if word == words - 1 {
            format!("{bits:x}")
        } else {
            format!("{bits:08x}")
        });
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cpus: &[usize]) -> CpuSet {
        cpus.iter().copied().collect()
    }

    #[test]
    fn lists_round_trip() {
        assert_eq!(parse_list("0-3,8"), Some(set(&[0, 1, 2, 3, 8])));
        assert_eq!(parse_list(""), Some(set(&[])));
        assert_eq!(parse_list("5\n"), Some(set(&[5])));
        assert_eq!(format_list(&set(&[0, 1, 2, 3, 8, 10, 11])), "0-3,8,10-11");
        assert_eq!(format_list(&set(&[])), "");
    }

    #[test]
    fn bad_lists_are_rejected() {
        assert_eq!(parse_list("3-1"), None);
        assert_eq!(parse_list("a"), None);
        assert_eq!(parse_list("0-100000000"), None);
    }

    #[test]
    fn masks_round_trip() {
        assert_eq!(parse_mask("0"), Some(set(&[])));
        assert_eq!(parse_mask("3"), Some(set(&[0, 1])));
        assert_eq!(
            parse_mask("ff,00000001"),
            Some(set(&[0, 32, 33, 34, 35, 36, 37, 38, 39]))
        );
        assert_eq!(format_mask(&set(&[0, 1])), "3");
        assert_eq!(format_mask(&set(&[0, 33])), "2,00000001");
        assert_eq!(format_mask(&set(&[])), "0");
        assert_eq!(
            parse_mask(&format_mask(&set(&[1, 40, 70]))),
            Some(set(&[1, 40, 70]))
        );
    }

    #[test]
    fn bad_masks_are_rejected() {
        assert_eq!(parse_mask("xyz"), None);
        assert_eq!(parse_mask(&"ffffffff,".repeat(300)), None);
    }
}
