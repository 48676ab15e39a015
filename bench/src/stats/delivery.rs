//! The exactly-once check: every acknowledged message must be consumed once, no more, no
//! less. Producers record acknowledged sequence numbers and consumers record received ones,
//! one bitset per producer (sequences are dense from 0, so a bit per message: 1.25 MB per
//! ten million messages). The runner merges the bitsets of all cores and compares.

use serde::{Deserialize, Serialize};

/// A growable set of dense sequence numbers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeqSet {
    words: Vec<u64>,
}

impl SeqSet {
    /// Inserts `seq`; false if it was already there (a duplicate).
    pub fn insert(&mut self, seq: u64) -> bool {
        let word = (seq / 64) as usize;
        if self.words.len() <= word {
            // Grow geometrically: sequence numbers arrive roughly in order.
            self.words.resize((word + 1).max(self.words.len() * 2), 0);
        }
        let bit = 1u64 << (seq % 64);
        let fresh = self.words[word] & bit == 0;
        self.words[word] |= bit;
        fresh
    }

    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Adds `other` in; returns how many of its members were already here.
    pub fn union_counting_overlap(&mut self, other: &SeqSet) -> u64 {
        if self.words.len() < other.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        let mut overlap = 0;
        for (mine, theirs) in self.words.iter_mut().zip(&other.words) {
            overlap += u64::from((*mine & theirs).count_ones());
            *mine |= theirs;
        }
        overlap
    }

    /// Members of `self` not in `other`.
    pub fn count_missing_from(&self, other: &SeqSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| u64::from((w & !other.words.get(i).copied().unwrap_or(0)).count_ones()))
            .sum()
    }
}

/// Sequence sets indexed by producer id.
#[derive(Clone, Debug, Default)]
pub struct PerProducer {
    pub sets: Vec<SeqSet>,
}

impl PerProducer {
    pub fn with_producers(producers: usize) -> PerProducer {
        PerProducer {
            sets: vec![SeqSet::default(); producers],
        }
    }

    pub fn merge(&mut self, other: &PerProducer) -> u64 {
        if self.sets.len() < other.sets.len() {
            self.sets.resize(other.sets.len(), SeqSet::default());
        }
        self.sets
            .iter_mut()
            .zip(&other.sets)
            .map(|(mine, theirs)| mine.union_counting_overlap(theirs))
            .sum()
    }

    pub fn len(&self) -> u64 {
        self.sets.iter().map(SeqSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.iter().all(SeqSet::is_empty)
    }
}

/// What one consumer saw.
#[derive(Clone, Debug, Default)]
pub struct ConsumedLog {
    pub seqs: PerProducer,
    pub duplicates: u64,
    /// A producer's sequence went backwards within one partition.
    pub out_of_order: u64,
    /// Records from another run (or another tool) in the topic.
    pub foreign: u64,
}

impl ConsumedLog {
    pub fn merge(&mut self, other: &ConsumedLog) {
        self.duplicates += other.duplicates + self.seqs.merge(&other.seqs);
        self.out_of_order += other.out_of_order;
        self.foreign += other.foreign;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// Messages the broker acknowledged (with acks=0: messages written to the socket).
    pub acked: u64,
    /// Distinct messages consumed.
    pub consumed_unique: u64,
    pub duplicates: u64,
    /// Acknowledged but never consumed.
    pub lost: u64,
    /// Consumed although not acknowledged (a failed or timed-out produce that did land).
    pub consumed_unacked: u64,
    pub out_of_order: u64,
    pub foreign: u64,
    /// Whether the check ran at all (it needs consumers).
    pub checked: bool,
    /// Every acknowledged message consumed exactly once.
    pub exactly_once: bool,
}

impl DeliveryReport {
    pub fn compare(acked: &PerProducer, consumed: &ConsumedLog, checked: bool) -> DeliveryReport {
        let lost: u64 = acked
            .sets
            .iter()
            .enumerate()
            .map(|(i, set)| {
                set.count_missing_from(consumed.seqs.sets.get(i).unwrap_or(&SeqSet::default()))
            })
            .sum();
        let consumed_unacked: u64 = consumed
            .seqs
            .sets
            .iter()
            .enumerate()
            .map(|(i, set)| set.count_missing_from(acked.sets.get(i).unwrap_or(&SeqSet::default())))
            .sum();
        DeliveryReport {
            acked: acked.len(),
            consumed_unique: consumed.seqs.len(),
            duplicates: consumed.duplicates,
            lost,
            consumed_unacked,
            out_of_order: consumed.out_of_order,
            foreign: consumed.foreign,
            checked,
            exactly_once: checked
                && lost == 0
                && consumed.duplicates == 0
                && consumed.out_of_order == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(seqs: impl IntoIterator<Item = u64>) -> SeqSet {
        let mut s = SeqSet::default();
        for q in seqs {
            s.insert(q);
        }
        s
    }

    #[test]
    fn insert_reports_duplicates() {
        let mut s = SeqSet::default();
        assert!(s.insert(1000));
        assert!(!s.insert(1000));
        assert!(s.insert(0));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn exact_delivery_passes() {
        let mut acked = PerProducer::with_producers(2);
        acked.sets[0] = set(0..500);
        acked.sets[1] = set(0..300);
        let mut consumer_a = ConsumedLog {
            seqs: PerProducer {
                sets: vec![set(0..250), set(0..300)],
            },
            ..ConsumedLog::default()
        };
        let consumer_b = ConsumedLog {
            seqs: PerProducer {
                sets: vec![set(250..500)],
            },
            ..ConsumedLog::default()
        };
        consumer_a.merge(&consumer_b);
        let report = DeliveryReport::compare(&acked, &consumer_a, true);
        assert_eq!(report.acked, 800);
        assert_eq!(report.consumed_unique, 800);
        assert!(report.exactly_once, "{report:?}");
    }

    #[test]
    fn loss_duplicates_and_extras_are_counted() {
        let mut acked = PerProducer::with_producers(1);
        acked.sets[0] = set(0..100);
        let mut a = ConsumedLog {
            seqs: PerProducer {
                sets: vec![set(0..60)],
            },
            ..ConsumedLog::default()
        };
        let b = ConsumedLog {
            seqs: PerProducer {
                sets: vec![set(50..90).union_then(100)],
            },
            ..ConsumedLog::default()
        };
        a.merge(&b);
        let report = DeliveryReport::compare(&acked, &a, true);
        assert_eq!(report.duplicates, 10); // 50..60 seen by both
        assert_eq!(report.lost, 10); // 90..100
        assert_eq!(report.consumed_unacked, 1); // 100
        assert!(!report.exactly_once);
    }

    #[test]
    fn no_consumers_means_not_checked() {
        let acked = PerProducer::with_producers(1);
        let report = DeliveryReport::compare(&acked, &ConsumedLog::default(), false);
        assert!(!report.exactly_once);
        assert!(!report.checked);
    }

    trait UnionThen {
        fn union_then(self, seq: u64) -> SeqSet;
    }
    impl UnionThen for SeqSet {
        fn union_then(mut self, seq: u64) -> SeqSet {
            self.insert(seq);
            self
        }
    }
}
