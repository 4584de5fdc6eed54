//! Unit tests of the manifest: paths, digests, a manifest's consistency and JSON form, mounts,
//! and the builder over real temporary directories. Uploading blobs and checking them against a
//! manifest is tested over the storage backends, in `tests/all/storage.rs`.

use super::*;
use std::fs;

const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn path(p: &str) -> ManifestPath {
    ManifestPath::new(p).unwrap()
}

fn entry(content: &[u8]) -> FileEntry {
    FileEntry {
        sha256: Digest::of(content),
        size: content.len() as u64,
    }
}

#[test]
fn digests_are_sha256_in_hex() {
    assert_eq!(Digest::of(b"abc").to_string(), ABC_SHA256);
    assert_eq!(Digest::of(b"").to_string(), EMPTY_SHA256);
    let big = vec![7u8; 200_000];
    assert_eq!(
        Digest::of_reader(&big[..]).unwrap(),
        (Digest::of(&big), 200_000)
    );

    let parsed: Digest = ABC_SHA256.parse().unwrap();
    assert_eq!(parsed, Digest::of(b"abc"));
    assert_eq!(ABC_SHA256.to_uppercase().parse::<Digest>().unwrap(), parsed);
    for bad in [
        "",
        "abc",
        &ABC_SHA256[1..],
        &format!("{ABC_SHA256}0"),
        &ABC_SHA256.replace('a', "g"),
    ] {
        assert!(
            matches!(
                bad.parse::<Digest>(),
                Err(ManifestError::InvalidDigest { .. })
            ),
            "{bad:?}"
        );
    }
    let json = serde_json::to_string(&parsed).unwrap();
    assert_eq!(json, format!("\"{ABC_SHA256}\""));
    assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), parsed);
}

#[test]
fn validates_paths() {
    for good in [
        ".",
        "a",
        "a/b",
        "a.txt",
        ".hidden",
        "a/..b/c.",
        "with space/ü",
    ] {
        assert_eq!(ManifestPath::new(good).unwrap().as_str(), good);
    }
    for bad in [
        "", "/", "/a", "a/", "a//b", "./a", "a/.", "..", "a/../b", "a\\b", "a\0b",
    ] {
        let err = ManifestPath::new(bad).unwrap_err();
        assert!(
            matches!(&err, ManifestError::InvalidPath { path, .. } if path == bad),
            "{bad:?}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("invalid manifest path {bad:?}: "))
        );
    }
    assert_eq!(
        ManifestPath::new("/etc/passwd").unwrap_err().to_string(),
        "invalid manifest path \"/etc/passwd\": it is absolute; manifest paths are relative \
         to the job's root"
    );
    assert!(serde_json::from_str::<ManifestPath>(r#""../x""#).is_err());
}

#[test]
fn path_navigation() {
    let p = path("a/b/c.txt");
    assert_eq!(p.parent(), Some(path("a/b")));
    assert_eq!(path("a").parent(), Some(ManifestPath::root()));
    assert_eq!(ManifestPath::root().parent(), None);
    assert_eq!(p.file_name(), Some("c.txt"));
    assert_eq!(ManifestPath::root().file_name(), None);
    assert_eq!(p.components().collect::<Vec<_>>(), ["a", "b", "c.txt"]);
    assert_eq!(ManifestPath::root().components().count(), 0);
    assert_eq!(p.ancestors().collect::<Vec<_>>(), [path("a/b"), path("a")]);
    assert_eq!(ManifestPath::root().join("x/y").unwrap(), path("x/y"));
    assert_eq!(path("a").join("b").unwrap(), path("a/b"));
    assert!(path("a").join("../b").is_err());
}

#[test]
fn manifests_stay_consistent() {
    let mut m = Manifest::new();
    assert!(matches!(m.validate(), Err(ManifestError::NoFiles)));
    m.insert_file(path("a/b/c.txt"), entry(b"abc")).unwrap();
    m.insert_dir(path("a/empty")).unwrap();
    m.insert_dir(path("a")).unwrap();
    m.validate().unwrap();
    assert!(m.is_dir(&path("a")) && m.is_dir(&path("a/b")) && m.is_dir(&ManifestPath::root()));
    assert!(!m.is_dir(&path("a/b/c.txt")));
    assert_eq!(m.file(&path("a/b/c.txt")), Some(&entry(b"abc")));

    let conflict = |r: Result<(), ManifestError>, at: &str| {
        assert!(
            matches!(&r, Err(ManifestError::FileDirConflict { path }) if path.as_str() == at),
            "{r:?}"
        );
    };
    conflict(m.insert_file(path("a/b"), entry(b"")), "a/b");
    conflict(m.insert_file(path("a/b/c.txt/d"), entry(b"")), "a/b/c.txt");
    conflict(m.insert_dir(path("a/b/c.txt")), "a/b/c.txt");
    conflict(m.insert_dir(path("a/b/c.txt/d")), "a/b/c.txt");
    assert!(matches!(
        m.insert_file(path("a/b/c.txt"), entry(b"x")),
        Err(ManifestError::DuplicatePath { .. })
    ));
    assert!(matches!(
        m.insert_file(ManifestPath::root(), entry(b"x")),
        Err(ManifestError::InvalidPath { .. })
    ));
    // Failed inserts change nothing.
    assert_eq!(m.file_count(), 1);
    assert_eq!(
        m.dirs().map(ManifestPath::as_str).collect::<Vec<_>>(),
        ["a", "a/b", "a/empty"]
    );
}

#[test]
fn json_round_trip_lists_only_empty_dirs() {
    let mut m = Manifest::new();
    m.insert_file(path("task.wasm"), entry(b"abc")).unwrap();
    m.insert_file(path("data/x"), entry(b"")).unwrap();
    m.insert_dir(path("data")).unwrap();
    m.insert_dir(path("out/logs")).unwrap();
    m.insert_dir(path("data-2")).unwrap();
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "files": {
                "data/x": {"sha256": EMPTY_SHA256, "size": 0},
                "task.wasm": {"sha256": ABC_SHA256, "size": 3},
            },
            "dirs": ["data-2", "out/logs"],
        })
    );
    let back: Manifest = serde_json::from_value(json).unwrap();
    assert_eq!(back, m);
    assert!(back.is_dir(&path("out")));

    let only_files = r#"{"files": {"a": {"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "size": 3}}}"#;
    assert_eq!(
        serde_json::from_str::<Manifest>(only_files)
            .unwrap()
            .file_count(),
        1
    );
    let conflicting = format!(
        r#"{{"files": {{"a": {{"sha256": "{ABC_SHA256}", "size": 3}}}}, "dirs": ["a/b"]}}"#
    );
    assert!(serde_json::from_str::<Manifest>(&conflicting).is_err());
    let bad_path = format!(r#"{{"files": {{"/a": {{"sha256": "{ABC_SHA256}", "size": 3}}}}}}"#);
    assert!(serde_json::from_str::<Manifest>(&bad_path).is_err());
}

#[test]
fn parses_mounts() {
    let cases = [
        ("examples/wordcount/data", "examples/wordcount/data", "data"),
        (
            "examples/wordcount/data/",
            "examples/wordcount/data/",
            "data",
        ),
        ("task.wasm", "task.wasm", "task.wasm"),
        ("build/out.wasm:task.wasm", "build/out.wasm", "task.wasm"),
        ("data:inputs/2024", "data", "inputs/2024"),
        ("data:.", "data", "."),
        ("a:b:c", "a:b", "c"),
        ("/tmp/x:/y", "/tmp/x:/y", "y"),
        ("C:\\data", "C:\\data", "C:\\data"),
    ];
    for (arg, host, at) in cases {
        match parse_mount(arg) {
            Ok(mount) => {
                assert_eq!(mount.host, PathBuf::from(host), "{arg}");
                assert_eq!(mount.at.as_str(), at, "{arg}");
            }
            // Only a backslash name is expected to fail, as an invalid manifest path.
            Err(ManifestError::InvalidPath { path, .. }) if at.contains('\\') => {
                assert_eq!(path, at);
            }
            Err(e) => panic!("{arg}: {e}"),
        }
    }
    assert!(matches!(
        parse_mount("."),
        Err(ManifestError::NoName { .. })
    ));
    assert!(matches!(
        parse_mount("/"),
        Err(ManifestError::NoName { .. })
    ));
    assert!(matches!(
        parse_mount("x:../y"),
        Err(ManifestError::InvalidPath { .. })
    ));
    assert_eq!("a:b".parse::<Mount>().unwrap().at, path("b"));
}

/// A tree to build from:
///
/// ```text
/// module.wasm      "abc"
/// data/a.txt       "abc"
/// data/sub/b.txt   ""
/// data/empty/
/// ```
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("module.wasm"), "abc").unwrap();
    fs::create_dir_all(root.join("data/sub")).unwrap();
    fs::create_dir_all(root.join("data/empty")).unwrap();
    fs::write(root.join("data/a.txt"), "abc").unwrap();
    fs::write(root.join("data/sub/b.txt"), "").unwrap();
    dir
}

#[test]
fn builds_from_files_and_nested_dirs() {
    let dir = tree();
    let root = dir.path();
    let local = ManifestBuilder::new()
        .add_file(root.join("module.wasm"), path("task.wasm"))
        .add_dir(root.join("data"), path("data"))
        .build()
        .unwrap();
    let m = &local.manifest;
    let files: Vec<_> = m
        .files()
        .map(|(p, e)| (p.as_str(), e.sha256.to_string(), e.size))
        .collect();
    assert_eq!(
        files,
        [
            ("data/a.txt", ABC_SHA256.to_owned(), 3),
            ("data/sub/b.txt", EMPTY_SHA256.to_owned(), 0),
            ("task.wasm", ABC_SHA256.to_owned(), 3),
        ]
    );
    assert!(m.is_dir(&path("data/empty")) && m.is_dir(&path("data/sub")));
    assert_eq!(m.total_size(), 6);
    assert_eq!(m.digests().len(), 2);
    assert_eq!(
        local.sources[&path("data/sub/b.txt")],
        root.join("data/sub/b.txt")
    );
    assert_eq!(local.sources.len(), 3);
    assert_eq!(local.blobs().len(), 2);

    // The root as the mount point puts the directory's contents at the top.
    let at_root = ManifestBuilder::new()
        .add_dir(root.join("data"), ManifestPath::root())
        .build()
        .unwrap();
    assert!(at_root.manifest.file(&path("sub/b.txt")).is_some());
}

#[test]
fn detects_duplicates_and_conflicts() {
    let dir = tree();
    let root = dir.path();
    let err = ManifestBuilder::new()
        .add_file(root.join("module.wasm"), path("a.txt"))
        .add_file(root.join("data/a.txt"), path("a.txt"))
        .build()
        .unwrap_err();
    assert!(matches!(&err, ManifestError::DuplicatePath { path } if path.as_str() == "a.txt"));
    assert_eq!(
        err.to_string(),
        "\"a.txt\" appears twice in the manifest: give one of them another name"
    );

    // The same directory twice at one path: its files collide.
    let err = ManifestBuilder::new()
        .add_dir(root.join("data"), path("d"))
        .add_dir(root.join("data"), path("d"))
        .build()
        .unwrap_err();
    assert!(matches!(&err, ManifestError::DuplicatePath { path } if path.as_str() == "d/a.txt"));

    // Directories merge when their files do not collide.
    let merged = ManifestBuilder::new()
        .add_dir(root.join("data/sub"), path("d"))
        .add_file(root.join("module.wasm"), path("d/module.wasm"))
        .build()
        .unwrap();
    assert_eq!(merged.manifest.file_count(), 2);

    // A file where a directory is, and a directory where a file is.
    let err = ManifestBuilder::new()
        .add_dir(root.join("data"), path("x"))
        .add_file(root.join("module.wasm"), path("x/sub"))
        .build()
        .unwrap_err();
    assert!(matches!(&err, ManifestError::FileDirConflict { path } if path.as_str() == "x/sub"));
    let err = ManifestBuilder::new()
        .add_file(root.join("module.wasm"), path("x"))
        .add_dir(root.join("data"), path("x/y"))
        .build()
        .unwrap_err();
    assert!(matches!(&err, ManifestError::FileDirConflict { path } if path.as_str() == "x"));
}

#[test]
fn refuses_empty_manifests_and_wrong_kinds() {
    let dir = tree();
    let root = dir.path();
    assert!(matches!(
        ManifestBuilder::new().build(),
        Err(ManifestError::NoFiles)
    ));
    let only_empty_dir = ManifestBuilder::new()
        .add_dir(root.join("data/empty"), path("empty"))
        .build();
    assert!(matches!(only_empty_dir, Err(ManifestError::NoFiles)));

    let err = ManifestBuilder::new()
        .add_file(root.join("data"), path("data"))
        .build()
        .unwrap_err();
    assert!(matches!(err, ManifestError::NotAFile { .. }));
    let err = ManifestBuilder::new()
        .add_dir(root.join("module.wasm"), path("m"))
        .build()
        .unwrap_err();
    assert!(matches!(err, ManifestError::NotADirectory { .. }));
    let err = ManifestBuilder::new()
        .add_file(root.join("missing"), path("m"))
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, ManifestError::Io { error, .. } if error.kind() == io::ErrorKind::NotFound)
    );
    assert!(err.to_string().starts_with("cannot read "), "{err}");
}

#[cfg(unix)]
#[test]
fn follows_symlinks_and_refuses_bad_ones() {
    use std::os::unix::fs::symlink;

    let dir = tree();
    let root = dir.path();
    symlink(root.join("module.wasm"), root.join("data/link.wasm")).unwrap();
    symlink(root.join("data/sub"), root.join("data/sublink")).unwrap();
    let local = ManifestBuilder::new()
        .add_dir(root.join("data"), path("data"))
        .build()
        .unwrap();
    let m = &local.manifest;
    assert_eq!(
        m.file(&path("data/link.wasm")).unwrap().sha256.to_string(),
        ABC_SHA256
    );
    assert!(m.file(&path("data/sublink/b.txt")).is_some());

    symlink(root.join("nowhere"), root.join("data/sub/broken")).unwrap();
    let err = ManifestBuilder::new()
        .add_dir(root.join("data"), path("data"))
        .build()
        .unwrap_err();
    assert!(matches!(err, ManifestError::BrokenSymlink { .. }), "{err}");
    fs::remove_file(root.join("data/sub/broken")).unwrap();

    symlink(root.join("data"), root.join("data/sub/up")).unwrap();
    let err = ManifestBuilder::new()
        .add_dir(root.join("data"), path("data"))
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, ManifestError::SymlinkLoop { host } if host.ends_with("data/sub/up")),
        "{err}"
    );
}
