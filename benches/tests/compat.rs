//! The compatibility suite against the testkit's in-memory S3 (over HTTP): every row of
//! both surfaces (library and FUSE mount) must be "ok". Needs /dev/fuse, like the other
//! mount tests.

use std::process::Command;

#[test]
fn every_operation_passes_against_the_in_memory_server() {
    let output = Command::new(env!("CARGO_BIN_EXE_s3vfs-compat"))
        // Small sizes, but more entries than one LIST page holds.
        .args(["--stream-mib", "8", "--list-entries", "1100"])
        .env_remove("S3VFS_COMPAT_ENDPOINT")
        .env_remove("S3VFS_COMPAT_STREAM_MIB")
        .env_remove("S3VFS_COMPAT_LIST_ENTRIES")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("s3vfs-compat runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| operation"))
        .collect();
    assert_eq!(rows.len(), 17, "{stdout}");
    for row in rows {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
        assert_eq!(cells.len(), 3, "{row}");
        assert!(
            cells[1..].iter().all(|c| c.trim().starts_with("ok")),
            "{row}"
        );
    }
}
