//! `s3vfs cp` and `s3vfs sync` as an operator runs them: the real binary and the real S3
//! client against the testkit's HTTP endpoint serving two in-memory buckets.

use s3vfs::store::{Capabilities, PutOptions};
use s3vfs_testkit::server::{S3Server, ServerCredentials};
use s3vfs_testkit::MemBuckets;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

const MIB: usize = 1024 * 1024;

struct Endpoint {
    buckets: MemBuckets,
    server: S3Server,
    _runtime: tokio::runtime::Runtime,
}

fn endpoint() -> Endpoint {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let buckets = MemBuckets::new();
    for name in ["videos", "archive"] {
        buckets.create_bucket_with(name, Capabilities::default());
    }
    let server = runtime
        .block_on(S3Server::start(
            Arc::new(buckets.clone()),
            ServerCredentials::test(),
        ))
        .unwrap();
    Endpoint {
        buckets,
        server,
        _runtime: runtime,
    }
}

impl Endpoint {
    fn s3vfs(&self, args: &[&str]) -> Command {
        let credentials = ServerCredentials::test();
        let mut command = Command::new(env!("CARGO_BIN_EXE_s3vfs"));
        command
            .args(args)
            .args(["--endpoint-url", &self.server.endpoint_url()])
            .args([
                "--force-path-style",
                "--region",
                "us-east-1",
                "--no-progress",
            ])
            .env("AWS_ACCESS_KEY_ID", &credentials.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &credentials.secret_access_key)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.s3vfs(args).output().unwrap()
    }
}

fn report_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

#[test]
fn cp_copies_one_object_a_prefix_and_a_manifest_server_side_with_a_report() {
    let e = endpoint();
    let videos = e.buckets.get("videos").unwrap();
    let archive = e.buckets.get("archive").unwrap();
    let options = PutOptions {
        user_metadata: BTreeMap::from([("mode".to_owned(), "33188".to_owned())]),
        content_type: Some("video/mp4".to_owned()),
        ..PutOptions::default()
    };
    let big = data(12 * MIB + 3, 1);
    videos.insert_with("in/big.mp4", big.clone(), options.clone());
    videos.insert("in/a b.txt", "small");
    videos.insert("in/sub/c.txt", "cee");
    let journals = tempfile::tempdir().unwrap();
    let journal = journals.path().to_str().unwrap();

    // One object, in parts (a 5 MiB multipart threshold), to a prefix: keeps its name.
    let out = e.run(&[
        "cp",
        "s3://videos/in/big.mp4",
        "s3://archive/one/",
        "--multipart-threshold-mib",
        "5",
        "--copy-part-size-mib",
        "5",
        "--report",
        "-",
        "--journal-dir",
        journal,
    ]);
    assert!(out.status.success(), "{out:?}");
    let lines = report_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["source"], "s3://videos/in/big.mp4");
    assert_eq!(line["destination"], "s3://archive/one/big.mp4");
    assert_eq!(line["result"], "copied");
    assert_eq!(line["method"], "part-copy");
    assert_eq!(line["parts"], 3);
    assert_eq!(line["bytes"], big.len() as u64);
    assert_eq!(line["bytes_through_client"], 0);
    assert_eq!(line["verified"], "size-and-etag");
    assert_eq!(archive.get_bytes("one/big.mp4").unwrap(), big);
    assert_eq!(
        archive.meta("one/big.mp4").unwrap().user_metadata,
        options.user_metadata
    );
    assert_eq!(std::fs::read_dir(journals.path()).unwrap().count(), 0);

    // A prefix, recursively.
    let out = e.run(&[
        "cp",
        "--recursive",
        "s3://videos/in",
        "s3://archive/all",
        "--report",
        "-",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(report_lines(&out).len(), 3);
    assert_eq!(archive.get_bytes("all/a b.txt").unwrap(), "small");
    assert_eq!(archive.get_bytes("all/sub/c.txt").unwrap(), "cee");

    // A manifest (S3 Batch Operations CSV, keys URL-encoded), with a bad line and a
    // missing object: the others are copied, the exit code says some failed.
    let manifest = journals.path().join("jobs.csv");
    std::fs::write(
        &manifest,
        "videos,in/a%20b.txt\nnot a job\nvideos,in/missing\nvideos,in/sub/c.txt\n",
    )
    .unwrap();
    let out = e.run(&[
        "cp",
        "--manifest",
        manifest.to_str().unwrap(),
        "s3://archive/m/",
        "--report",
        "-",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = report_lines(&out);
    let results: Vec<&str> = lines
        .iter()
        .map(|l| l["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|r| **r == "copied").count(),
        2,
        "{lines:?}"
    );
    assert_eq!(
        results.iter().filter(|r| **r == "failed").count(),
        2,
        "{lines:?}"
    );
    assert_eq!(archive.get_bytes("m/in/a b.txt").unwrap(), "small");

    // Jobs on standard input, as another system would feed them.
    let mut child = e
        .s3vfs(&["cp", "--stdin", "s3://archive/fed/", "--report", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"{\"source\":\"s3://videos/in/sub/c.txt\",\"destination\":\"s3://archive/fed/c\"}\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(archive.get_bytes("fed/c").unwrap(), "cee");

    // Could not start: a URL that is not s3://.
    let out = e.run(&["cp", "/tmp/x", "s3://archive/x"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn sync_copies_what_differs_and_deletes_only_when_asked_and_not_in_a_dry_run() {
    let e = endpoint();
    let videos = e.buckets.get("videos").unwrap();
    let archive = e.buckets.get("archive").unwrap();
    videos.insert("src/same", "same");
    videos.insert("src/changed", "new!");
    videos.insert("src/new", "n");
    archive.insert("dst/same", "same");
    archive.insert("dst/changed", "old!");
    archive.insert("dst/extra", "x");

    let out = e.run(&[
        "sync",
        "s3://videos/src",
        "s3://archive/dst",
        "--delete",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("(dry run) copy s3://videos/src/changed -> s3://archive/dst/changed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(dry run) copy s3://videos/src/new -> s3://archive/dst/new"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(dry run) delete s3://archive/dst/extra"),
        "{stdout}"
    );
    assert_eq!(
        archive.get_bytes("dst/changed").unwrap(),
        "old!",
        "a dry run changes nothing"
    );
    assert!(archive.get_bytes("dst/extra").is_some());

    let out = e.run(&[
        "sync",
        "s3://videos/src",
        "s3://archive/dst",
        "--report",
        "-",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(archive.get_bytes("dst/changed").unwrap(), "new!");
    assert_eq!(archive.get_bytes("dst/new").unwrap(), "n");
    assert!(
        archive.get_bytes("dst/extra").is_some(),
        "no --delete: kept"
    );
    let skipped = report_lines(&out)
        .iter()
        .filter(|l| l["result"] == "skipped")
        .count();
    assert_eq!(skipped, 1);

    let out = e.run(&[
        "sync",
        "s3://videos/src",
        "s3://archive/dst",
        "--delete",
        "--report",
        "-",
    ]);
    assert!(out.status.success(), "{out:?}");
    let results: Vec<String> = report_lines(&out)
        .iter()
        .map(|l| l["result"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        results.iter().filter(|r| *r == "skipped").count(),
        3,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|r| *r == "deleted").count(),
        1,
        "{results:?}"
    );
    assert!(archive.get_bytes("dst/extra").is_none());
}
