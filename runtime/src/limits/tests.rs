//! Unit tests of the limits table: defaults and maxima valid, the ceilings check and its
//! message, each row reading back what it sets, the stored order and the JSON field names.

use super::*;

#[test]
fn the_default_ceilings_admit_every_valid_limit_at_its_maximum() {
    assert_eq!(Limits::MAX.out_of_range(), []);
    assert_eq!(Limits::DEFAULT.out_of_range(), []);
    assert_eq!(Limits::MAX.within(&Limits::MAX), Ok(()));
    assert_eq!(Limits::DEFAULT.within(&Limits::MAX), Ok(()));
}

#[test]
fn every_limit_over_its_ceiling_is_named_with_the_option_that_raises_it() {
    let ceilings = Limits {
        memory: 64 << 20,
        lifetime: Duration::from_secs(60),
        ..Limits::MAX
    };
    let mut asked = Limits {
        memory: 64 << 20,
        lifetime: Duration::from_secs(60),
        ..Limits::DEFAULT
    };
    assert_eq!(
        asked.within(&ceilings),
        Ok(()),
        "limits equal to a ceiling fit"
    );

    asked.memory = 128 << 20;
    asked.lifetime = Duration::from_secs(120);
    let over = asked.within(&ceilings).unwrap_err();
    let limits: Vec<_> = over.excesses.iter().map(|e| e.limit).collect();
    assert_eq!(limits, ["memory", "lifetime"]);
    let text = over.to_string();
    assert!(
        text.contains("memory 128 MiB is above the workers' ceiling of 64 MiB"),
        "{text}"
    );
    assert!(text.contains("`wasmjob worker --max-memory ...`"), "{text}");
    assert!(text.contains("lifetime 2m is above"), "{text}");
}

#[test]
fn each_limit_reads_back_what_it_sets() {
    for limit in &LIMITS {
        let mut limits = Limits::DEFAULT;
        let value = (limit.get)(&Limits::MAX);
        (limit.set)(&mut limits, value);
        assert_eq!((limit.get)(&limits), value, "{}", limit.name);
        let others = LIMITS.iter().filter(|other| other.name != limit.name);
        for other in others {
            assert_eq!(
                (other.get)(&limits),
                (other.get)(&Limits::DEFAULT),
                "setting {} changed {}",
                limit.name,
                other.name
            );
        }
    }
}

#[test]
fn the_counts_are_in_the_stored_order() {
    assert_eq!(
        Limits::DEFAULT.to_counts(),
        "268435456 600000 10000 1048576 65536 67108864 1000"
    );
}

#[test]
fn a_lifetime_under_a_millisecond_is_not_zero() {
    let limits = Limits {
        lifetime: Duration::from_nanos(1),
        ..Limits::DEFAULT
    };
    assert_eq!(limits.out_of_range(), []);
    let limits = Limits {
        lifetime: Limits::MAX.lifetime + Duration::from_nanos(1),
        ..Limits::DEFAULT
    };
    assert_eq!(limits.out_of_range()[0].limit.name, "lifetime");
}

#[test]
fn json_names_the_fields_as_a_spec_always_has() {
    let json = serde_json::to_value(Limits::DEFAULT).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "memory_limit": 268435456u64,
            "lifetime": "10m",
            "table_elements": 10000,
            "result_cap": 1048576,
            "log_cap": 65536,
            "scratch_bytes": 67108864u64,
            "scratch_files": 1000,
        })
    );
    let partial = serde_json::json!({ "memory_limit": 1024, "lifetime": "5s" });
    let limits: Limits = serde_json::from_value(partial).unwrap();
    assert_eq!(limits.memory, 1024);
    assert_eq!(limits.lifetime, Duration::from_secs(5));
    assert_eq!(limits.log_cap, Limits::DEFAULT.log_cap);
}
