//! The command line of a mount helper: `mount -t fuse.s3vfs BUCKET[/PREFIX] MNT -o OPTS`
//! (and the same fstab line) makes fuse3's `mount.fuse3` run `s3vfs BUCKET[/PREFIX] MNT -o
//! OPTS`. That form is turned into `s3vfs mount BUCKET[/PREFIX] MNT --flag …`: each option
//! is a long flag's name without its dashes (`force-path-style`, `endpoint-url=URL`;
//! underscores may stand for dashes, as in `allow_other`), `ro` is `--read-only`, and what
//! mount(8), fstab or systemd pass for themselves is dropped. With `all-buckets` the
//! source is a placeholder (fstab needs one). A vault is `layout=vault` with
//! `passphrase-file=FILE` (a mount from fstab has no terminal to ask on).

use std::ffi::OsString;

/// Options that mount(8), fstab or systemd use themselves, or that FUSE mounts always
/// have: accepted and ignored.
const IGNORED: &[&str] = &[
    "rw",
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "async",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "lazytime",
    "nolazytime",
];

/// s3fs's names of options s3vfs has under another name, so that an s3fs fstab line keeps
/// working once its type says `fuse.s3vfs`.
const S3FS_NAMES: &[(&str, &str)] = &[
    ("use_path_request_style", "force-path-style"),
    ("url", "endpoint-url"),
    // s3fs calls the region "endpoint".
    ("endpoint", "region"),
    ("allow_other", "allow-other"),
];

/// Options that stand for a flag of another name as a whole, value included (`None`: the
/// default, no flag).
const WHOLE_OPTIONS: &[(&str, Option<&str>)] = &[
    ("ro", Some("--read-only")),
    // s3fs's anonymous access; `=0` is its default.
    ("public_bucket=1", Some("--no-sign-request")),
    ("public_bucket=0", None),
];

/// Prefixes of options that belong to someone else (systemd, mount(8)).
const IGNORED_PREFIXES: &[&str] = &["x-", "comment=", "helper="];

/// The ordinary command line for `args` (the program name first) when they are in the
/// mount-helper form: two words and at least one `-o` list, the first word not a flag (a
/// bucket may be called `demo` or `mount`; no subcommand takes `-o`). `None` when they
/// are not (parsed as they are).
pub(crate) fn translate(args: &[OsString]) -> Option<Vec<OsString>> {
    let words: Vec<&str> = args.iter().map(|a| a.to_str()).collect::<Option<_>>()?;
    if words.get(1)?.starts_with('-') {
        return None;
    }
    let mut positional = Vec::new();
    let mut flags: Vec<String> = Vec::new();
    let mut rest = words[1..].iter();
    let mut saw_options = false;
    while let Some(word) = rest.next() {
        match *word {
            "-o" => {
                saw_options = true;
                flags.extend(options(rest.next()?));
            }
            w if w.starts_with("-o") => {
                saw_options = true;
                flags.extend(options(&w[2..]));
            }
            w => positional.push(w.to_owned()),
        }
    }
    if !saw_options || positional.len() != 2 {
        return None;
    }
    if flags.iter().any(|f| f == "--all-buckets") {
        // fstab needs a source even where there is none: `s3vfs /mnt/s3 fuse.s3vfs all-buckets`.
        positional.remove(0);
    }
    let mut out: Vec<OsString> = vec![args[0].clone(), "mount".into()];
    out.extend(positional.into_iter().map(OsString::from));
    out.extend(flags.into_iter().map(OsString::from));
    Some(out)
}

/// The flags of one `-o` list.
fn options(list: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for option in list.split(',').filter(|o| !o.is_empty()) {
        if IGNORED.contains(&option) || IGNORED_PREFIXES.iter().any(|p| option.starts_with(p)) {
            continue;
        }
        if let Some((_, flag)) = WHOLE_OPTIONS.iter().find(|(o, _)| *o == option) {
            flags.extend(flag.map(str::to_owned));
            continue;
        }
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (option, None),
        };
        let name = S3FS_NAMES
            .iter()
            .find(|(s3fs, _)| *s3fs == name)
            .map_or_else(|| name.replace('_', "-"), |(_, ours)| (*ours).to_owned());
        flags.push(format!("--{name}"));
        flags.extend(value.map(str::to_owned));
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &[&str]) -> Option<Vec<String>> {
        let args: Vec<OsString> = line.iter().map(OsString::from).collect();
        translate(&args).map(|v| v.into_iter().map(|a| a.into_string().unwrap()).collect())
    }

    #[test]
    fn the_helper_form_becomes_a_mount_command() {
        assert_eq!(
            run(&[
                "s3vfs",
                "bucket/prefix",
                "/mnt/data",
                "-o",
                "rw,nodev,nosuid,_netdev,nofail,x-systemd.automount,endpoint-url=http://127.0.0.1:9000,force-path-style,allow_other,metadata-ttl=5"
            ])
            .unwrap(),
            [
                "s3vfs",
                "mount",
                "bucket/prefix",
                "/mnt/data",
                "--endpoint-url",
                "http://127.0.0.1:9000",
                "--force-path-style",
                "--allow-other",
                "--metadata-ttl",
                "5"
            ]
        );
        assert_eq!(
            run(&["s3vfs", "s3vfs", "/m", "-o", "all-buckets"]).unwrap(),
            ["s3vfs", "mount", "/m", "--all-buckets"],
            "the source of an all-buckets line is a placeholder"
        );
        assert_eq!(
            run(&["s3vfs", "b", "/m", "-oro", "-o", "region=eu-west-1"]).unwrap(),
            [
                "s3vfs",
                "mount",
                "b",
                "/m",
                "--read-only",
                "--region",
                "eu-west-1"
            ]
        );
    }

    #[test]
    fn a_vault_is_mounted_with_its_layout_and_passphrase_file() {
        assert_eq!(
            run(&[
                "s3vfs",
                "bucket/home",
                "/home/me",
                "-o",
                "rw,_netdev,layout=vault,passphrase-file=/etc/s3vfs/home.key"
            ])
            .unwrap(),
            [
                "s3vfs",
                "mount",
                "bucket/home",
                "/home/me",
                "--layout",
                "vault",
                "--passphrase-file",
                "/etc/s3vfs/home.key"
            ]
        );
    }

    #[test]
    fn s3fs_option_names_are_understood() {
        assert_eq!(
            run(&[
                "s3vfs",
                "b",
                "/m",
                "-o",
                "use_path_request_style,url=http://127.0.0.1:9000,endpoint=eu-west-1,allow_other,public_bucket=1,requester_pays"
            ])
            .unwrap(),
            [
                "s3vfs",
                "mount",
                "b",
                "/m",
                "--force-path-style",
                "--endpoint-url",
                "http://127.0.0.1:9000",
                "--region",
                "eu-west-1",
                "--allow-other",
                "--no-sign-request",
                "--requester-pays"
            ]
        );
    }

    #[test]
    fn ordinary_command_lines_are_left_alone() {
        assert_eq!(run(&["s3vfs", "mount", "b", "/m", "-o", "x"]), None);
        assert_eq!(
            run(&["s3vfs", "demo", "/m", "-o", "ro"]).unwrap(),
            ["s3vfs", "mount", "demo", "/m", "--read-only"],
            "a bucket named like a subcommand"
        );
        assert_eq!(run(&["s3vfs", "--help"]), None);
        assert_eq!(
            run(&["s3vfs", "b", "/m"]),
            None,
            "no -o: not the helper form"
        );
        assert_eq!(run(&["s3vfs", "b", "-o", "ro"]), None, "one positional");
        assert_eq!(run(&["s3vfs"]), None);
    }
}
