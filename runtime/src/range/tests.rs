//! Unit tests of [`RangeSet`](super::RangeSet): its text and serde forms and its set operations,
//! checked against a plain set of values. Where sets are kept is tested with the storage
//! backends.

use super::*;
use std::collections::BTreeSet;

fn set(text: &str) -> RangeSet {
    text.parse().unwrap()
}

/// The representation invariant: sorted, each interval non-empty, disjoint, non-adjacent,
/// within the cap.
fn check_invariant(s: &RangeSet) {
    let intervals: Vec<(u64, u64)> = s.intervals().collect();
    for &(start, end) in &intervals {
        assert!(start <= end && end <= MAX_VALUE, "{s:?}");
    }
    assert_eq!(
        s.len(),
        intervals.iter().map(|&(a, b)| b - a + 1).sum::<u64>(),
        "the kept count: {s:?}"
    );
    for pair in intervals.windows(2) {
        assert!(
            pair[0].1 + 1 < pair[1].0,
            "not disjoint and non-adjacent: {s:?}"
        );
    }
}

#[test]
fn parses_good_inputs() {
    let cases: &[(&str, &[(u64, u64)])] = &[
        ("7", &[(7, 7)]),
        ("1..=1000", &[(1, 1000)]),
        ("0..10", &[(0, 9)]),
        ("0..1", &[(0, 0)]),
        ("0..10,20..30", &[(0, 9), (20, 29)]),
        ("1..=3,7,10..12", &[(1, 3), (7, 7), (10, 11)]),
        (" 1..=3 , 7 ,\t10..12 ", &[(1, 3), (7, 7), (10, 11)]),
        ("1 ..= 3", &[(1, 3)]),
        ("5..=5", &[(5, 5)]),
        // Overlapping, adjacent and unsorted items merge.
        ("20..30,0..10,5..=25", &[(0, 29)]),
        ("3,1,2", &[(1, 3)]),
        ("1,3", &[(1, 1), (3, 3)]),
        ("0..=9,10", &[(0, 10)]),
        ("9007199254740991", &[(MAX_VALUE, MAX_VALUE)]),
        ("0..9007199254740992", &[(0, MAX_VALUE)]),
        ("007", &[(7, 7)]),
    ];
    for &(input, expected) in cases {
        let parsed: RangeSet = input.parse().unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(
            parsed.intervals().collect::<Vec<_>>(),
            expected,
            "{input:?}"
        );
        check_invariant(&parsed);
    }
}

#[test]
fn rejects_bad_inputs() {
    let invalid = |item: &str| RangeError::Invalid { item: item.into() };
    let cases = [
        ("", RangeError::Empty),
        ("   ", RangeError::Empty),
        ("abc", invalid("abc")),
        ("1..=x", invalid("1..=x")),
        ("-5", invalid("-5")),
        ("+5", invalid("+5")),
        ("1.5", invalid("1.5")),
        ("1...3", invalid("1...3")),
        ("5..", invalid("5..")),
        ("..5", invalid("..5")),
        ("1..=2..=3", invalid("1..=2..=3")),
        ("1 2", invalid("1 2")),
        (
            "1,,2",
            RangeError::EmptyItem {
                input: "1,,2".into(),
            },
        ),
        ("1,", RangeError::EmptyItem { input: "1,".into() }),
        (
            "10..5",
            RangeError::Reversed {
                item: "10..5".into(),
            },
        ),
        (
            "10..=5",
            RangeError::Reversed {
                item: "10..=5".into(),
            },
        ),
        (
            "1,10..=5",
            RangeError::Reversed {
                item: "10..=5".into(),
            },
        ),
        (
            "5..5",
            RangeError::EmptySpan {
                item: "5..5".into(),
            },
        ),
        (
            "9007199254740992",
            RangeError::TooLarge {
                item: "9007199254740992".into(),
            },
        ),
        (
            "0..=9007199254740992",
            RangeError::TooLarge {
                item: "0..=9007199254740992".into(),
            },
        ),
        (
            "0..9007199254740993",
            RangeError::TooLarge {
                item: "0..9007199254740993".into(),
            },
        ),
        (
            "99999999999999999999999",
            RangeError::TooLarge {
                item: "99999999999999999999999".into(),
            },
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(input.parse::<RangeSet>(), Err(expected), "{input:?}");
    }
}

#[test]
fn error_messages_quote_the_item() {
    let err = "1,abc".parse::<RangeSet>().unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"invalid range item "abc": expected a value like 7, a span like 1..=100 or 0..10"#
    );
}

#[test]
fn display_is_canonical_and_round_trips() {
    let cases = [
        ("7", "7"),
        ("0..10", "0..=9"),
        ("3,1,2", "1..=3"),
        ("1,2", "1..=2"),
        ("20..30, 0..10", "0..=9,20..=29"),
        ("1..=3,7,10..12", "1..=3,7,10..=11"),
    ];
    for (input, shown) in cases {
        let parsed = set(input);
        assert_eq!(parsed.to_string(), shown);
        assert_eq!(set(shown), parsed);
    }
    assert_eq!(RangeSet::new().to_string(), "(none)");
}

#[test]
fn serde_uses_the_text_form() {
    let s = set("0..10,20");
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(json, r#""0..=9,20""#);
    assert_eq!(serde_json::from_str::<RangeSet>(&json).unwrap(), s);

    assert_eq!(serde_json::to_string(&RangeSet::new()).unwrap(), r#""""#);
    assert_eq!(
        serde_json::from_str::<RangeSet>(r#""""#).unwrap(),
        RangeSet::new()
    );
    assert!(serde_json::from_str::<RangeSet>(r#""5..1""#).is_err());
    assert!(serde_json::from_str::<RangeSet>("5").is_err());
}

#[test]
fn a_huge_span_is_one_interval() {
    let mut s = RangeSet::from_interval(0, 9_999_999);
    assert_eq!(s.len(), 10_000_000);
    assert_eq!(s.interval_count(), 1);
    assert!(s.contains(9_999_999) && !s.contains(10_000_000));
    let batch = s.take_first(4);
    assert_eq!(batch, set("0..4"));
    assert_eq!(s.interval_count(), 1);
    assert_eq!(s.len(), 9_999_996);

    let full = RangeSet::from_interval(0, MAX_VALUE);
    assert_eq!(full.len(), MAX_VALUE + 1);
    assert_eq!(full.to_string().parse::<RangeSet>().unwrap(), full);
}

#[test]
fn basic_operations() {
    let mut s = RangeSet::new();
    assert!(s.is_empty() && s.first().is_none());
    assert!(s.insert(5));
    assert!(!s.insert(5));
    assert!(s.insert(4) && s.insert(6));
    assert_eq!(s.intervals().collect::<Vec<_>>(), [(4, 6)]);
    assert!(s.remove(5));
    assert!(!s.remove(5));
    assert_eq!(s.intervals().collect::<Vec<_>>(), [(4, 4), (6, 6)]);
    assert_eq!((s.first(), s.last()), (Some(4), Some(6)));
    assert_eq!(s.values().collect::<Vec<_>>(), [4, 6]);
    assert_eq!(s.values().next_back(), Some(6));

    assert!(RangeSet::from_interval(5, 4).is_empty());
    let mut t = set("0..=10");
    t.remove_interval(3, 2);
    t.insert_interval(30, 20);
    assert_eq!(t, set("0..=10"));
    t.remove_interval(0, u64::MAX);
    assert!(t.is_empty());

    assert_eq!(
        RangeSet::from_intervals([(10, 20), (0, 3), (4, 5), (9, 8), (15, 30)]),
        set("0..=5,10..=30")
    );
    assert_eq!((1..=5).chain([9]).collect::<RangeSet>(), set("1..=5,9"));
    assert_eq!(set("1..=10").take_first(0), RangeSet::new());
    let mut small = set("1,3");
    assert_eq!(small.take_first(10), set("1,3"));
    assert!(small.is_empty());
}

#[test]
#[should_panic(expected = "above MAX_VALUE")]
fn inserting_above_the_cap_panics() {
    RangeSet::new().insert(MAX_VALUE + 1);
}

/// xorshift64*: deterministic, so a failure reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const DOMAIN: u64 = 120;

/// A random set over a small domain, so that operations overlap and touch often, with its
/// model.
fn random_set(rng: &mut Rng) -> (RangeSet, BTreeSet<u64>) {
    let mut s = RangeSet::new();
    let mut m = BTreeSet::new();
    for _ in 0..rng.below(6) {
        let start = rng.below(DOMAIN);
        let end = (start + rng.below(20)).min(DOMAIN - 1);
        s.insert_interval(start, end);
        m.extend(start..=end);
    }
    (s, m)
}

fn model_of(s: &RangeSet) -> BTreeSet<u64> {
    s.values().collect()
}

#[test]
fn random_operations_match_a_btreeset() {
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut s = RangeSet::new();
        let mut m = BTreeSet::new();
        for step in 0..200 {
            let op = rng.below(9);
            let ctx = format!("seed {seed} step {step} op {op}");
            match op {
                0 => {
                    let v = rng.below(DOMAIN);
                    assert_eq!(s.insert(v), m.insert(v), "{ctx}");
                }
                1 => {
                    let v = rng.below(DOMAIN);
                    assert_eq!(s.remove(v), m.remove(&v), "{ctx}");
                }
                2 => {
                    let a = rng.below(DOMAIN);
                    let b = rng.below(DOMAIN);
                    s.insert_interval(a, b);
                    m.extend(a..=b);
                }
                3 => {
                    let a = rng.below(DOMAIN);
                    let b = rng.below(DOMAIN);
                    s.remove_interval(a, b);
                    m.retain(|v| !(a..=b).contains(v));
                }
                4 => {
                    let (o, om) = random_set(&mut rng);
                    s = s.union(&o);
                    m = m.union(&om).copied().collect();
                }
                5 => {
                    let (o, om) = random_set(&mut rng);
                    s = s.difference(&o);
                    m = m.difference(&om).copied().collect();
                }
                6 => {
                    let (o, om) = random_set(&mut rng);
                    // Keep the set from shrinking to nothing on every intersection.
                    let o = o.union(&RangeSet::from_interval(0, DOMAIN / 2));
                    let om: BTreeSet<u64> = om.into_iter().chain(0..=DOMAIN / 2).collect();
                    s = s.intersection(&o);
                    m = m.intersection(&om).copied().collect();
                }
                7 => {
                    let n = rng.below(15);
                    let taken = s.take_first(n);
                    let expected: BTreeSet<u64> = m.iter().copied().take(n as usize).collect();
                    m.retain(|v| !expected.contains(v));
                    check_invariant(&taken);
                    assert_eq!(model_of(&taken), expected, "{ctx}");
                }
                _ => {
                    let (o, om) = random_set(&mut rng);
                    assert_eq!(o.union(&s), s.union(&o), "{ctx}");
                    assert_eq!(o.intersection(&s), s.intersection(&o), "{ctx}");
                    assert_eq!(model_of(&o.difference(&s)), &om - &m, "{ctx}");
                }
            }
            check_invariant(&s);
            assert_eq!(model_of(&s), m, "{ctx}");
            assert_eq!(s.len(), m.len() as u64, "{ctx}");
            assert_eq!(s.first(), m.first().copied(), "{ctx}");
            assert_eq!(s.last(), m.last().copied(), "{ctx}");
            for _ in 0..4 {
                let v = rng.below(DOMAIN + 2);
                assert_eq!(s.contains(v), m.contains(&v), "{ctx} contains {v}");
            }
            if !s.is_empty() {
                assert_eq!(set(&s.to_string()), s, "{ctx}");
            }
            let (from, limit) = (rng.below(DOMAIN + 2), rng.below(4) as usize);
            let page: Vec<(u64, u64)> = s.page(from, limit).intervals().collect();
            let expected: Vec<(u64, u64)> = s
                .intervals()
                .filter(|&(_, e)| e >= from)
                .take(limit)
                .collect();
            assert_eq!(page, expected, "{ctx} page from {from}, {limit}");
        }
    }
}

#[test]
fn operations_at_the_cap() {
    let mut s = RangeSet::from_interval(MAX_VALUE - 2, MAX_VALUE);
    assert!(s.remove(MAX_VALUE));
    assert!(s.insert(MAX_VALUE));
    assert_eq!(s.interval_count(), 1);
    let all = RangeSet::from_interval(0, MAX_VALUE);
    assert_eq!(
        all.difference(&s),
        RangeSet::from_interval(0, MAX_VALUE - 3)
    );
    assert_eq!(all.intersection(&s), s);
    assert_eq!(s.union(&all), all);
}
