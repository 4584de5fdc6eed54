//! Unit tests of the job spec: every problem validation reports, limits at their bounds, the
//! JSON form and its defaults, and priorities.

use super::*;
use crate::limits::LIMITS;
use crate::manifest::{Digest, FileEntry};

fn path(p: &str) -> ManifestPath {
    ManifestPath::new(p).unwrap()
}

fn spec() -> JobSpec {
    let mut manifest = Manifest::new();
    let entry = FileEntry {
        sha256: Digest::of(b"abc"),
        size: 3,
    };
    manifest.insert_file(path("task.wasm"), entry).unwrap();
    manifest.insert_file(path("data/words.txt"), entry).unwrap();
    JobSpec::new(
        "count words",
        manifest,
        path("task.wasm"),
        "0..10".parse().unwrap(),
    )
}

fn problems(spec: &JobSpec) -> Vec<SpecProblem> {
    spec.validate()
        .map(|()| Vec::new())
        .unwrap_or_else(|e| e.problems)
}

#[test]
fn the_default_spec_is_valid() {
    let s = spec();
    assert_eq!(s.validate(), Ok(()));
    assert_eq!(s.workdir, ManifestPath::root());
    assert_eq!(s.priority, Priority::DEFAULT);
    assert_eq!(s.limits.lifetime, Duration::from_secs(600));
    assert_eq!((s.limits.result_cap, s.limits.log_cap), (1 << 20, 64 << 10));
}

#[test]
fn each_problem_is_reported() {
    type Edit = fn(&mut JobSpec);
    let cases: Vec<(Edit, SpecProblem)> = vec![
        (
            |s| s.name = "x".repeat(201),
            SpecProblem::NameTooLong { chars: 201 },
        ),
        (
            |s| s.name = "two\nlines".into(),
            SpecProblem::NameHasControlCharacter,
        ),
        (|s| s.range = RangeSet::new(), SpecProblem::EmptyRange),
        (
            |s| s.script = path("missing.wasm"),
            SpecProblem::ScriptNotInManifest {
                script: path("missing.wasm"),
            },
        ),
        (
            |s| s.script = path("data"),
            SpecProblem::ScriptNotInManifest {
                script: path("data"),
            },
        ),
        (
            |s| s.workdir = path("task.wasm"),
            SpecProblem::WorkdirNotInManifest {
                workdir: path("task.wasm"),
            },
        ),
        (
            |s| s.workdir = path("nowhere"),
            SpecProblem::WorkdirNotInManifest {
                workdir: path("nowhere"),
            },
        ),
        (
            |s| {
                s.metadata.insert("1abc".into(), "v".into());
            },
            SpecProblem::InvalidMetadataKey { key: "1abc".into() },
        ),
        (
            |s| {
                s.metadata.insert("".into(), "v".into());
            },
            SpecProblem::InvalidMetadataKey { key: "".into() },
        ),
        (
            |s| {
                s.metadata.insert("a-b".into(), "v".into());
            },
            SpecProblem::InvalidMetadataKey { key: "a-b".into() },
        ),
        (
            |s| {
                s.metadata.insert("k".into(), "a\0b".into());
            },
            SpecProblem::MetadataValueHasNul { key: "k".into() },
        ),
        (
            |s| s.max_concurrency = Some(0),
            SpecProblem::ZeroMaxConcurrency,
        ),
    ];
    for (edit, expected) in cases {
        let mut s = spec();
        edit(&mut s);
        assert_eq!(problems(&s), [expected]);
    }
}

#[test]
fn every_limit_out_of_range_is_named_with_its_range() {
    let cases = [
        (
            "memory",
            (64 << 10) - 1,
            "the memory limit 63.99 KiB is out of range: it must be from 64 KiB to 4 GiB",
        ),
        (
            "memory",
            (4 << 30) + 1,
            "the memory limit 4 GiB is out of range: it must be from 64 KiB to 4 GiB",
        ),
        (
            "lifetime",
            0,
            "the lifetime 0s is out of range: it must be above 0s and at most 7days",
        ),
        (
            "lifetime",
            7 * 24 * 3600 * 1000 + 1,
            "the lifetime 7days1ms is out of range: it must be above 0s and at most 7days",
        ),
        (
            "table elements",
            0,
            "the table-element limit 0 is out of range: it must be from 1 to 10000000",
        ),
        (
            "result cap",
            0,
            "the result cap 0 B is out of range: it must be from 1 B to 64 MiB",
        ),
        (
            "log cap",
            (64 << 20) + 1,
            "the log cap 64 MiB is out of range: it must be from 1 B to 64 MiB",
        ),
        (
            "scratch size",
            (64 << 30) + 1,
            "the scratch size limit 64 GiB is out of range: it must be at most 64 GiB",
        ),
        (
            "scratch files",
            1_000_001,
            "the scratch file limit 1000001 is out of range: it must be at most 1000000",
        ),
    ];
    for (name, value, message) in cases {
        let limit = LIMITS.iter().find(|l| l.name == name).unwrap();
        let mut s = spec();
        (limit.set)(&mut s.limits, value);
        assert_eq!(
            problems(&s),
            [SpecProblem::Limit(LimitOutOfRange { limit, value })]
        );
        assert_eq!(problems(&s)[0].to_string(), message);
    }
}

#[test]
fn limits_are_inclusive() {
    let mut s = spec();
    s.name = "é".repeat(MAX_NAME_CHARS);
    s.metadata
        .insert("_Ok_9".into(), "any value, even\nnewlines".into());
    s.workdir = path("data");
    s.max_concurrency = Some(1);
    s.limits = Limits::MAX;
    assert_eq!(s.validate(), Ok(()));
    for limit in &LIMITS {
        (limit.set)(&mut s.limits, limit.min);
    }
    assert_eq!(s.validate(), Ok(()));
    s.limits.lifetime = Duration::from_nanos(1);
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn several_problems_are_reported_together() {
    let mut s = spec();
    s.range = RangeSet::new();
    s.script = path("nope.wasm");
    s.limits.lifetime = Duration::ZERO;
    s.limits.log_cap = 0;
    let err = s.validate().unwrap_err();
    assert_eq!(
        err.problems,
        [
            SpecProblem::EmptyRange,
            SpecProblem::ScriptNotInManifest {
                script: path("nope.wasm")
            },
            SpecProblem::Limit(LimitOutOfRange {
                limit: &LIMITS[1],
                value: 0
            }),
            SpecProblem::Limit(LimitOutOfRange {
                limit: &LIMITS[4],
                value: 0
            }),
        ]
    );
    assert_eq!(
        err.to_string(),
        "invalid job spec:\n\
         \x20 - the range is empty: give at least one task value, e.g. 0..10\n\
         \x20 - the script \"nope.wasm\" is not a file of the manifest\n\
         \x20 - the lifetime 0s is out of range: it must be above 0s and at most 7days\n\
         \x20 - the log cap 0 B is out of range: it must be from 1 B to 64 MiB"
    );
}

#[test]
fn priorities_parse_and_display() {
    let cases = [
        ("0", Priority(0)),
        ("255", Priority(255)),
        ("17", Priority(17)),
        (" 17 ", Priority(17)),
        ("lowest", Priority::LOWEST),
        ("Background", Priority::BACKGROUND),
        ("DEFAULT", Priority::DEFAULT),
        ("high", Priority::HIGH),
        ("maximum", Priority::MAXIMUM),
        ("128", Priority::DEFAULT),
    ];
    for (input, expected) in cases {
        assert_eq!(input.parse(), Ok(expected), "{input:?}");
    }
    for bad in ["", "256", "-1", "+5", "urgent", "1.5"] {
        assert_eq!(
            bad.parse::<Priority>(),
            Err(PriorityError { input: bad.into() })
        );
    }
    assert_eq!(
        "urgent".parse::<Priority>().unwrap_err().to_string(),
        "invalid priority \"urgent\": expected a number from 0 to 255 or one of lowest, \
         background, default, high, maximum"
    );

    assert_eq!(Priority(192).to_string(), "high");
    assert_eq!(Priority(100).to_string(), "100");
    for n in 0..=255 {
        let p = Priority(n);
        assert_eq!(p.to_string().parse(), Ok(p));
    }
    assert!(Priority::HIGH > Priority::DEFAULT && Priority::DEFAULT > Priority::LOWEST);
    assert_eq!(Priority::default(), Priority::DEFAULT);
    assert_eq!(serde_json::to_string(&Priority::HIGH).unwrap(), "192");
    assert_eq!(
        serde_json::from_str::<Priority>("64").unwrap(),
        Priority::BACKGROUND
    );
}

#[test]
fn json_round_trip() {
    let mut s = spec();
    s.metadata.insert("lang".into(), "en".into());
    s.workdir = path("data");
    s.priority = Priority::HIGH;
    s.limits.lifetime = Duration::from_secs(90);
    s.max_concurrency = Some(8);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["lifetime"], "1m30s");
    assert_eq!(json["memory_limit"], 256 << 20);
    assert_eq!(json["range"], "0..=9");
    assert_eq!(json["priority"], 192);
    assert_eq!(json["max_concurrency"], 8);
    assert_eq!(serde_json::from_value::<JobSpec>(json).unwrap(), s);
}

#[test]
fn json_defaults_fill_missing_policy_fields() {
    let json = serde_json::json!({
        "name": "count words",
        "manifest": serde_json::to_value(&spec().manifest).unwrap(),
        "script": "task.wasm",
        "range": "0..10",
    });
    assert_eq!(serde_json::from_value::<JobSpec>(json).unwrap(), spec());
}
