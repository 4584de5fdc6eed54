//! Unit tests of the scratch quota's counting against a real directory. The checked WASI calls
//! are tested through guests, in the executor's tests and the adversarial suite.

use super::Quota;

/// Files changed behind the quota's back show which refusals walked the directory.
#[test]
fn a_refusal_walks_the_directory_only_after_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let mut quota = Quota::new(dir.path(), 1 << 20, 2);
    for name in ["a", "b"] {
        assert!(quota.allow_entry());
        std::fs::write(path(name), "").unwrap();
        quota.created(true);
    }
    assert!(!quota.allow_entry());
    std::fs::remove_file(path("a")).unwrap();
    assert!(!quota.allow_entry(), "nothing counted changed: no walk");
    quota.removed();
    assert!(
        quota.allow_entry(),
        "a counted removal gives its entry back"
    );
    // Opening `b` again with O_CREAT counts as a creation that may not be one.
    quota.created(false);
    assert!(quota.allow_entry(), "a walk finds one entry, not two");

    std::fs::write(path("b"), vec![1; 1 << 20]).unwrap();
    quota.wrote(1 << 20);
    assert!(
        !quota.allow_bytes(1 << 19),
        "a walk finds the file's blocks"
    );
    std::fs::write(path("b"), "").unwrap();
    assert!(
        !quota.allow_bytes(1 << 19),
        "nothing counted changed: no walk"
    );
    quota.resized();
    assert!(
        quota.allow_bytes(1 << 19),
        "a walk finds the truncated file"
    );
}
