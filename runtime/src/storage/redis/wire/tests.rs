//! The replies of the scripts, well-formed and not, read without a server.

use super::*;
use crate::storage::{JobId, TaskId};

fn strings(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

fn bytes(parts: &[Option<&str>]) -> Vec<Option<Vec<u8>>> {
    parts.iter().map(|p| p.map(|p| p.into())).collect()
}

fn is_corrupt<T: std::fmt::Debug>(read: Result<T, StorageError>) -> bool {
    matches!(read, Err(StorageError::Corrupt { .. }))
}

const TASK: &str = "01JD3Q4G7TZ9N8V2K5X6Y1R0AB";

#[test]
fn a_lease_is_read_from_its_five_fields() {
    let job = JobId::generate();
    let lease = lease(job, &strings(&["7", TASK, "2", "1", "1700000000000"])).unwrap();
    assert_eq!(lease.job, job);
    assert_eq!(lease.task, TASK.parse::<TaskId>().unwrap());
    assert_eq!(
        (lease.value, lease.attempt, lease.alone, lease.deadline),
        (7, 2, true, 1_700_000_000_000)
    );
    let shared = super::lease(job, &strings(&["7", TASK, "2", "0", "1"])).unwrap();
    assert!(!shared.alone);
}

#[test]
fn a_malformed_lease_is_corrupt() {
    let job = JobId::generate();
    for fields in [
        &["7", TASK, "2", "1"][..],
        &["7", TASK, "2", "1", "5", "extra"],
        &["x", TASK, "2", "1", "5"],
        &["7", "not a ulid", "2", "1", "5"],
        &["7", TASK, "-1", "1", "5"],
        &["7", TASK, "2", "1", "soon"],
    ] {
        assert!(is_corrupt(lease(job, &strings(fields))), "{fields:?}");
    }
}

#[test]
fn a_claim_reply_gives_its_leases_and_spec() {
    let job = JobId::generate();
    let reply = strings(&[
        "ok", "{}", "1", TASK, "1", "0", "10", "2", TASK, "3", "1", "20",
    ]);
    let ClaimReply::Leases { spec, leases } = claim_reply(job, &reply).unwrap() else {
        panic!("not leases");
    };
    assert_eq!(spec, "{}");
    assert_eq!(leases.iter().map(|l| l.value).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(leases[1].attempt, 3);
    let reply = strings(&["ok", ""]);
    let ClaimReply::Leases { spec, leases } = claim_reply(job, &reply).unwrap() else {
        panic!("not leases");
    };
    assert_eq!((spec, leases.len()), ("", 0));
}

#[test]
fn a_claim_reply_of_one_word_says_why_there_is_nothing() {
    let job = JobId::generate();
    for word in ["done", "gone"] {
        let reply = strings(&[word]);
        let reply = claim_reply(job, &reply).unwrap();
        assert!(matches!(reply, ClaimReply::Finished), "{word}");
    }
    for word in ["full", "empty", "waiting", "above"] {
        let reply = strings(&[word]);
        let reply = claim_reply(job, &reply).unwrap();
        assert!(matches!(reply, ClaimReply::Nothing), "{word}");
    }
    assert!(matches!(
        claim_reply(job, &[]).unwrap(),
        ClaimReply::Nothing
    ));
    let reply = strings(&["corrupt", "its pending set is damaged"]);
    assert!(matches!(
        claim_reply(job, &reply).unwrap(),
        ClaimReply::Unreadable(Some("its pending set is damaged"))
    ));
}

#[test]
fn a_malformed_claim_reply_is_corrupt() {
    let job = JobId::generate();
    assert!(is_corrupt(claim_reply(job, &strings(&["ok"]))));
    // A lease cut short.
    let reply = strings(&["ok", "", "1", TASK, "1", "0", "10", "2", TASK]);
    assert!(is_corrupt(claim_reply(job, &reply)));
}

#[test]
fn an_interval_set_reads_back_as_written() {
    let set = RangeSet::from_intervals([
        (0, 4),
        (10, 10),
        (crate::range::MAX_VALUE, crate::range::MAX_VALUE),
    ]);
    let text = format_set(&set);
    assert_eq!(text, format!("0 4 10 10 {0} {0}", crate::range::MAX_VALUE));
    assert_eq!(parse_set(&text).unwrap(), set);
    assert_eq!(format_set(&RangeSet::new()), "");
    assert_eq!(parse_set("").unwrap(), RangeSet::new());
}

#[test]
fn a_malformed_interval_set_is_corrupt() {
    let over = format!("0 {}", crate::range::MAX_VALUE + 1);
    for text in ["1", "1 2 3", "a b", "-1 2", "1.5 2", over.as_str()] {
        assert!(is_corrupt(parse_set(text)), "{text:?}");
    }
}

/// A status reply: set aside, the counts of pending, succeeded, failed and quarantined values,
/// missing, submitted at, name, priority, held back, the pages of pending, succeeded, failed and
/// quarantined, then the active values.
fn status_reply(active: &[&str]) -> Vec<String> {
    let mut reply = strings(&[
        "",
        "5",
        "3",
        "1",
        "0",
        "0",
        "1700000000000",
        "job",
        "7",
        "",
        "5 9",
        "0 2",
        "3 3",
        "",
    ]);
    reply.extend(strings(active));
    reply
}

#[test]
fn a_status_reply_gives_each_state_as_ranges() {
    let job = JobId::generate();
    let status = status(job, &status_reply(&["4"])).unwrap();
    assert_eq!(status.id, job);
    assert_eq!(
        (status.name.as_str(), status.priority),
        ("job", Priority(7))
    );
    assert_eq!(status.pending, RangeSet::from_intervals([(5, 9)]));
    assert_eq!(status.active, RangeSet::from_intervals([(4, 4)]));
    assert_eq!(status.succeeded, RangeSet::from_intervals([(0, 2)]));
    assert_eq!(status.failed, RangeSet::from_intervals([(3, 3)]));
    assert!(status.quarantined.is_empty());
    assert_eq!(
        (status.missing_files, status.submitted_at),
        (0, 1_700_000_000_000)
    );
    assert_eq!(status.total(), 10);
    assert_eq!(
        status.counts,
        StateCounts {
            pending: 5,
            active: 1,
            succeeded: 3,
            failed: 1,
            quarantined: 0
        }
    );
    assert!(status.is_whole(TaskState::Pending) && !status.is_done());
    assert_eq!((status.set_aside, status.held_back), (None, None));
}

#[test]
fn a_status_reply_names_why_a_job_is_set_aside_or_held_back() {
    let mut reply = status_reply(&[]);
    reply[0] = "its spec does not parse".into();
    reply[9] = "a stored file is missing".into();
    let status = status(JobId::generate(), &reply).unwrap();
    assert_eq!(status.set_aside.as_deref(), Some("its spec does not parse"));
    assert_eq!(
        status.held_back.as_deref(),
        Some("a stored file is missing")
    );
}

#[test]
fn a_short_status_reply_is_a_job_that_does_not_exist() {
    let job = JobId::generate();
    assert!(matches!(status(job, &[]), Err(StorageError::UnknownJob(j)) if j == job));
    let short = &status_reply(&[])[..13];
    assert!(matches!(
        status(job, short),
        Err(StorageError::UnknownJob(_))
    ));
}

#[test]
fn a_malformed_status_reply_is_corrupt() {
    let job = JobId::generate();
    for (field, bad) in [
        (1, "-1"),
        (2, "some"),
        (5, "many"),
        (6, "-"),
        (8, "256"),
        (10, "1"),
        (12, "x y"),
    ] {
        let mut reply = status_reply(&[]);
        reply[field] = bad.into();
        assert!(is_corrupt(status(job, &reply)), "field {field} = {bad:?}");
    }
    assert!(is_corrupt(status(job, &status_reply(&["x"]))));
}

#[test]
fn a_ranges_reply_is_a_page_or_the_active_values_paged_here() {
    let job = JobId::generate();
    let page = |reply: &[&str]| ranges(job, 4, 2, &strings(reply));
    assert_eq!(
        page(&["page", "3 5 8 8"]).unwrap(),
        RangeSet::from_intervals([(3, 5), (8, 8)])
    );
    assert_eq!(
        page(&["active", "9", "1", "5", "7"]).unwrap(),
        RangeSet::from_intervals([(5, 5), (7, 7)])
    );
    assert!(matches!(page(&[]), Err(StorageError::UnknownJob(j)) if j == job));
    assert!(matches!(
        page(&["corrupt", "its failed set holds \"x\""]),
        Err(StorageError::SetAside { reason, .. }) if reason.contains("failed set")
    ));
    for bad in [&["page", "1"][..], &["active", "x"], &["what"]] {
        assert!(is_corrupt(page(bad)), "{bad:?}");
    }
}

#[test]
fn an_info_reply_of_a_finished_task_gives_its_record() {
    let reply = bytes(&[
        Some("succeeded"),
        Some(&format!("2 1 0 100 200 {TASK} 01JD3Q4G7TZ9N8V2K5X6Y1R0AC")),
        None,
        Some("out"),
        Some("log"),
        None,
        Some("exit 1"),
        Some(r#"{"app":"a","hostname":"h","instance":"01JD3Q4G7TZ9N8V2K5X6Y1R0AC"}"#),
    ]);
    let info = info(JobId::generate(), 3, reply).unwrap();
    assert_eq!((info.value, info.state), (3, Some(TaskState::Succeeded)));
    assert_eq!((info.attempts, info.failures, info.lost), (2, 1, 0));
    assert_eq!((info.started_at, info.finished_at), (Some(100), Some(200)));
    assert_eq!(info.task_id, Some(TASK.parse().unwrap()));
    assert_eq!(info.deadline, None);
    assert_eq!(info.result.as_deref(), Some(&b"out"[..]));
    assert_eq!(info.log.as_deref(), Some(&b"log"[..]));
    assert_eq!(info.last_error.as_deref(), Some("exit 1"));
    assert_eq!(info.worker.map(|w| w.hostname), Some("h".into()));
}

#[test]
fn an_info_reply_of_an_active_task_gives_its_current_attempt() {
    let record = "1 1 0 100 200 - -";
    let lease = format!("{TASK} 2 900 300 01JD3Q4G7TZ9N8V2K5X6Y1R0AC");
    let reply = bytes(&[
        Some("active"),
        Some(record),
        Some(&lease),
        None,
        None,
        Some("half"),
        None,
        None,
    ]);
    let info = info(JobId::generate(), 0, reply).unwrap();
    assert_eq!(info.state, Some(TaskState::Active));
    assert_eq!((info.attempts, info.failures), (2, 1));
    assert_eq!(info.task_id, Some(TASK.parse().unwrap()));
    assert_eq!(
        (info.started_at, info.deadline, info.finished_at),
        (Some(300), Some(900), None)
    );
    assert_eq!(info.progress.as_deref(), Some(&b"half"[..]));
}

#[test]
fn an_info_reply_of_a_task_never_claimed_is_pending() {
    let info = info(JobId::generate(), 0, vec![None; 8]).unwrap();
    assert_eq!(info.state, Some(TaskState::Pending));
    assert_eq!((info.attempts, info.task_id, info.worker), (0, None, None));
}

#[test]
fn an_info_reply_says_when_the_job_is_gone_or_set_aside() {
    let job = JobId::generate();
    assert!(matches!(info(job, 0, vec![]), Err(StorageError::UnknownJob(j)) if j == job));
    let set_aside = info(
        job,
        0,
        bytes(&[Some("corrupt"), Some("its state is damaged")]),
    );
    assert!(matches!(
        set_aside,
        Err(StorageError::SetAside { reason, .. }) if reason == "its state is damaged"
    ));
}

#[test]
fn a_malformed_info_reply_is_corrupt() {
    let job = JobId::generate();
    assert!(is_corrupt(info(job, 0, vec![None; 3])));
    for (field, bad) in [
        (1, "1 2 3"),
        (1, "x 0 0 - - - -"),
        (2, "x"),
        (2, "- x - - -"),
        (7, "{"),
    ] {
        let mut reply = vec![None; 8];
        reply[field] = Some(bad.as_bytes().to_vec());
        assert!(is_corrupt(info(job, 0, reply)), "field {field} = {bad:?}");
    }
}

#[test]
fn each_verdict_has_its_word() {
    let result = Verdict::Success {
        result: b"r".to_vec(),
    };
    assert_eq!(verdict(&result), ("success", &b"r"[..]));
    let error = Verdict::Error { reason: "e".into() };
    assert_eq!(verdict(&error), ("error", &b"e"[..]));
    let fatal = Verdict::Fatal { reason: "f".into() };
    assert_eq!(verdict(&fatal), ("fatal", &b"f"[..]));
    assert_eq!(verdict(&Verdict::Requeue), ("requeue", &b""[..]));
    assert_eq!(verdict(&Verdict::Untried), ("untried", &b""[..]));
}

#[test]
fn a_report_reply_gives_one_ack_per_report() {
    let (done, acks) = report_reply(&strings(&["1", "applied", "stale", "gone"]), 4).unwrap();
    assert!(done);
    assert_eq!(
        acks,
        [
            Ack::Applied,
            Ack::StaleLease,
            Ack::UnknownJob,
            Ack::UnknownJob
        ]
    );
    let (done, acks) = report_reply(&strings(&["0", "applied"]), 1).unwrap();
    assert!(!done);
    assert_eq!(acks, [Ack::Applied]);
    assert!(is_corrupt(report_reply(&[], 1)));
}

#[test]
fn a_heartbeat_reply_is_a_deadline_a_stop_or_a_job_gone() {
    assert_eq!(heartbeat(5), Heartbeat::Continue { deadline: 5 });
    assert_eq!(heartbeat(-1), Heartbeat::Stop);
    assert_eq!(heartbeat(-2), Heartbeat::JobGone);
}

#[test]
fn a_reap_reply_counts_what_it_did() {
    let (reaped, done) = reaped(&[2, 1, 1]).unwrap();
    assert_eq!((reaped.requeued, reaped.quarantined, done), (2, 1, true));
    assert!(!super::reaped(&[0, 0, 0]).unwrap().1);
    assert!(is_corrupt(super::reaped(&[1, 2])));
}

#[test]
fn a_worker_entry_reads_back_as_registered() {
    let worker = WorkerId {
        app: "app".into(),
        hostname: "host".into(),
        instance: ulid::Ulid::new(),
    };
    let ceilings = Limits::MAX;
    let entry = format!("1700 {}", worker_record(&worker, &ceilings).unwrap());
    let read = worker_entry(&entry).unwrap();
    assert_eq!(
        (read.worker, read.ceilings, read.seen_at),
        (worker, ceilings, 1700)
    );
}

#[test]
fn a_malformed_worker_entry_is_corrupt() {
    let worker = WorkerId {
        app: "app".into(),
        hostname: "host".into(),
        instance: ulid::Ulid::new(),
    };
    let record = worker_record(&worker, &Limits::MAX).unwrap();
    let late = format!("soon {record}");
    for entry in ["1700", "1700 {", "1700 {\"worker\":1}", late.as_str()] {
        assert!(is_corrupt(worker_entry(entry)), "{entry:?}");
    }
    // The parser's reason is kept as the source, for the error chain.
    let Err(e) = worker_entry("1700 {") else {
        panic!("read");
    };
    assert!(std::error::Error::source(&e).is_some());
}
