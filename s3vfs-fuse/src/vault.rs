//! `s3vfs vault init|passwd` and the vault side of `s3vfs mount --layout vault`: the
//! vault layout of the core ([`s3vfs::vault`], FORMAT.md) on the command line.
//!
//! A vault's passphrase is read before anything else runs (and, for a mount, before it
//! goes to the background), through [`passphrase`](crate::passphrase); it is never
//! logged. Mount flags that mean something only for the plain layout are refused with
//! `--layout vault` rather than ignored ([`plain_only_flags`]).

use crate::passphrase::{self, Passphrase, PassphraseArgs, Prompt, Source};
use crate::{split_target, AccessArgs, ByteSize, ConnectionArgs, Layout, MountArgs};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use s3vfs::config::DataCacheConfig;
use s3vfs::recovery::{RecoveredFile, RecoveryDir};
use s3vfs::store::probe::{self, Verdict};
use s3vfs::store::{Backend, ListRequest};
use s3vfs::vault::{self, ChunkParams, KdfParams, VaultConfig, VaultFs};
use s3vfs::vfs::Vfs;
use s3vfs::FsConfig;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `s3vfs vault …`.
#[derive(Debug, Args)]
pub(crate) struct VaultArgs {
    #[command(subcommand)]
    command: VaultCommand,
}

#[derive(Debug, Subcommand)]
enum VaultCommand {
    /// Make a new vault in an empty BUCKET[/PREFIX]: asks for its passphrase twice.
    Init(InitArgs),
    /// Change a vault's passphrase (rewrites its superblock only; the data stays).
    Passwd(PasswdArgs),
    /// Delete the chunks and inodes no file references any more, once older than --grace
    /// (safe while mounts write: see FORMAT.md, crash ordering 6).
    Gc(GcArgs),
    /// Check a vault: every inode decrypts, every reference resolves, link counts match
    /// (and with --read-data every chunk decrypts to its id). Exits 1 when it finds
    /// problems.
    Fsck(FsckArgs),
}

#[derive(Debug, Args)]
struct GcArgs {
    #[command(flatten)]
    vault: VaultTarget,
    /// Keep unreferenced objects younger than this (a write under way elsewhere may be
    /// about to reference them), e.g. 1h, 90m, 2days; at least 1h.
    #[arg(long, value_name = "DURATION", default_value = "1h",
        value_parser = humantime::parse_duration)]
    grace: std::time::Duration,
    /// Report what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct FsckArgs {
    #[command(flatten)]
    vault: VaultTarget,
    /// Also read every chunk, and check that it decrypts to the content its id names.
    #[arg(long)]
    read_data: bool,
    /// Fix what can be fixed safely: link counts (If-Match, never over another host's
    /// change).
    #[arg(long)]
    repair: bool,
}

/// Where the vault is and how to reach it: every vault command's first flags.
#[derive(Debug, Args)]
struct VaultTarget {
    /// The vault's bucket and prefix.
    #[arg(value_name = "BUCKET[/PREFIX]")]
    target: String,
    #[command(flatten)]
    s3: ConnectionArgs,
    #[command(flatten)]
    access: AccessArgs,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

/// Argon2id costs of a passphrase's key: what each guess costs an attacker who has the
/// bucket, and what each mount costs once.
#[derive(Debug, Args)]
struct KdfArgs {
    /// Memory of the key derivation (K/M/G suffixes; at least 8K). Default 64M for `init`;
    /// `passwd` keeps the vault's costs unless one of these flags is given.
    #[arg(help_heading = "Key derivation (Argon2id)", long, value_name = "BYTES")]
    kdf_memory: Option<ByteSize>,
    /// Passes over that memory (default 3).
    #[arg(help_heading = "Key derivation (Argon2id)", long, value_name = "N")]
    kdf_passes: Option<u32>,
    /// Lanes (parallelism) of the derivation (default 1).
    #[arg(help_heading = "Key derivation (Argon2id)", long, value_name = "N")]
    kdf_lanes: Option<u32>,
}

impl KdfArgs {
    /// Whether any cost was given on the command line.
    fn given(&self) -> bool {
        self.kdf_memory.is_some() || self.kdf_passes.is_some() || self.kdf_lanes.is_some()
    }

    /// The costs these flags give, the defaults for those not given; costs below the
    /// defaults are warned about.
    fn params(&self) -> anyhow::Result<KdfParams> {
        let default = KdfParams::default();
        let memory = self
            .kdf_memory
            .unwrap_or(ByteSize(u64::from(default.m_cost) * 1024));
        let kib = u32::try_from(memory.0 / 1024)
            .ok()
            .filter(|kib| *kib > 0)
            .with_context(|| format!("--kdf-memory {memory} is out of range"))?;
        let params = KdfParams::new(
            kib,
            self.kdf_passes.unwrap_or(default.t_cost),
            self.kdf_lanes.unwrap_or(default.p_cost),
        );
        if params.m_cost < default.m_cost || params.t_cost < default.t_cost {
            tracing::warn!(
                "key derivation costs below the defaults ({} memory, {} passes) make guessing \
                 the passphrase cheaper for whoever can read the bucket",
                ByteSize(u64::from(default.m_cost) * 1024),
                default.t_cost
            );
        }
        Ok(params)
    }
}

#[derive(Debug, Args)]
struct InitArgs {
    #[command(flatten)]
    vault: VaultTarget,
    #[command(flatten)]
    kdf: KdfArgs,
    /// Average size of a data chunk (K/M suffixes; chunks are a quarter to four times
    /// this): smaller finds more duplicate data and makes more objects.
    #[arg(long, value_name = "BYTES", default_value_t = ByteSize(u64::from(ChunkParams::default().avg)))]
    chunk_size: ByteSize,
}

#[derive(Debug, Args)]
struct PasswdArgs {
    #[command(flatten)]
    vault: VaultTarget,
    /// Key derivation costs of the new passphrase (default: the vault's present ones).
    #[command(flatten)]
    kdf: KdfArgs,
    /// Read the new passphrase from the first line of FILE (mode 0600 or 0400). Without
    /// it the new passphrase comes from S3VFS_NEW_PASSPHRASE, else a prompt (twice).
    #[arg(help_heading = "Vault passphrase", long, value_name = "FILE")]
    new_passphrase_file: Option<PathBuf>,
}

/// Runs `s3vfs vault …`.
pub(crate) async fn run(args: VaultArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        VaultCommand::Init(args) => init(args).await,
        VaultCommand::Passwd(args) => passwd(args).await,
        VaultCommand::Gc(args) => gc(args).await,
        VaultCommand::Fsck(args) => fsck(args).await,
    }
}

/// What a maintenance command (`gc`, `fsck`) works on: the vault's bucket, its prefix,
/// its place for messages (`s3://BUCKET/PREFIX`) and the passphrase.
async fn maintained(
    target: &VaultTarget,
) -> anyhow::Result<(Arc<dyn Backend>, String, String, Passphrase)> {
    let (store, prefix, bucket) = connect(target).await?;
    let passphrase = Source::current(&target.passphrase).read(Prompt::Once)?;
    let place = format!("s3://{bucket}/{prefix}");
    Ok((store, prefix, place, passphrase))
}

/// `s3vfs vault gc`.
async fn gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    let (store, prefix, place, passphrase) = maintained(&args.vault).await?;
    let options = vault::GcOptions::default()
        .with_grace(args.grace)
        .with_dry_run(args.dry_run);
    let report = vault::gc(store, &prefix, passphrase.as_bytes(), options)
        .await
        .with_context(|| format!("cannot collect the garbage of the vault at {place}"))?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// `s3vfs vault fsck`: exit 0 when the vault is clean, 1 when problems are left.
async fn fsck(args: FsckArgs) -> anyhow::Result<ExitCode> {
    let (store, prefix, place, passphrase) = maintained(&args.vault).await?;
    let options = vault::FsckOptions::default()
        .with_read_data(args.read_data)
        .with_repair(args.repair);
    let report = vault::fsck(store, &prefix, passphrase.as_bytes(), options)
        .await
        .with_context(|| format!("cannot check the vault at {place}"))?;
    println!("{report}");
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The vaults `s3vfs recover` stores kept entries into: each opened once (the
/// passphrase read once, from the usual sources) by its bucket and prefix.
pub(crate) struct Recovering<'a> {
    args: &'a PassphraseArgs,
    passphrase: Option<Passphrase>,
    opened: std::collections::BTreeMap<(String, String), VaultFs>,
}

impl<'a> Recovering<'a> {
    /// No vault opened yet; `args` says where the passphrase comes from.
    pub(crate) fn new(args: &'a PassphraseArgs) -> Self {
        Self {
            args,
            passphrase: None,
            opened: std::collections::BTreeMap::new(),
        }
    }

    /// Stores `entry`, kept by a vault mount, into its vault in `store` (the vault's
    /// prefix is its inode key's, less `i/…`), only over the version it was made on.
    pub(crate) async fn reupload(
        &mut self,
        store: Arc<dyn Backend>,
        recovery: &RecoveryDir,
        entry: &RecoveredFile,
    ) -> anyhow::Result<()> {
        let key = &entry.manifest.key;
        let prefix = key
            .rfind("i/")
            .map(|at| key[..at].to_owned())
            .with_context(|| format!("{}: {key} is not a vault inode's key", entry.id))?;
        let bucket = store.bucket().unwrap_or_default();
        let place = (bucket, prefix);
        if !self.opened.contains_key(&place) {
            if self.passphrase.is_none() {
                self.passphrase = Some(Source::current(self.args).read(Prompt::Once)?);
            }
            let passphrase = self.passphrase.as_ref().map_or(&[][..], |p| p.as_bytes());
            let fs = VaultFs::open(store, &place.1, passphrase, VaultConfig::default())
                .await
                .with_context(|| {
                    format!("cannot open the vault at s3://{}/{}", place.0, place.1)
                })?;
            self.opened.insert(place.clone(), fs);
        }
        let fs = self
            .opened
            .get(&place)
            .context("the vault just opened is gone")?;
        fs.reupload_recovered(recovery, entry).await?;
        Ok(())
    }
}

/// The vault's bucket (a connected client) and its normalized prefix (`""` or ending in
/// `/`), from `s3vfs vault …`'s target and connection flags.
async fn connect(target: &VaultTarget) -> anyhow::Result<(Arc<dyn Backend>, String, String)> {
    let (bucket, prefix) = split_target(&target.target)?;
    let store = target.s3.connect(&target.access, &bucket).await?;
    Ok((store, vault_prefix(&prefix), bucket))
}

/// The key prefix a vault at `prefix` uses: no leading `/`, one trailing `/`.
fn vault_prefix(prefix: &str) -> String {
    FsConfig::default().with_prefix(prefix).prefix
}

/// `s3vfs vault init`.
async fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let kdf = args.kdf.params()?;
    let avg = u32::try_from(args.chunk_size.0)
        .with_context(|| format!("--chunk-size {} is out of range", args.chunk_size))?;
    let chunking = ChunkParams::with_avg(avg);
    // Before the passphrase is asked, so that a wrong target fails at once.
    let (store, prefix, bucket) = connect(&args.vault).await?;
    let place = format!("s3://{bucket}/{prefix}");
    refuse_non_empty(&store, &prefix, &place).await?;
    let passphrase = Source::current(&args.vault.passphrase).read(Prompt::Confirmed)?;
    let config = VaultConfig::default().with_kdf(kdf).with_chunking(chunking);
    VaultFs::init(store, &prefix, passphrase.as_bytes(), config)
        .await
        .with_context(|| format!("cannot make a vault at {place}"))?;
    println!(
        "Made a vault at {place} (Argon2id: {} memory, {} passes, {} lanes; chunks of {} on average).",
        ByteSize(u64::from(kdf.m_cost) * 1024),
        kdf.t_cost,
        kdf.p_cost,
        ByteSize(u64::from(chunking.avg))
    );
    let target = format!("{bucket}/{prefix}");
    println!(
        "Mount it with: s3vfs mount --layout vault {} MOUNTPOINT",
        target.trim_end_matches('/')
    );
    println!("Without its passphrase nothing in it can be read: there is no way to recover it.");
    Ok(ExitCode::SUCCESS)
}

/// Refuses a prefix that holds any object: a vault there already, or files of another
/// kind that the vault would hide (and whose listing would mix with its objects).
async fn refuse_non_empty(
    store: &Arc<dyn Backend>,
    prefix: &str,
    place: &str,
) -> anyhow::Result<()> {
    let request = ListRequest {
        prefix: prefix.to_owned(),
        max_keys: Some(1),
        ..ListRequest::default()
    };
    let page = store
        .list(request)
        .await
        .with_context(|| format!("cannot list {place}"))?;
    if let Some(object) = page.objects.first() {
        bail!(
            "{place} is not empty (it holds {}): a vault is made only in an empty prefix; is \
             there a vault already? Choose another prefix",
            object.key.as_str()
        );
    }
    Ok(())
}

/// `s3vfs vault passwd`.
async fn passwd(args: PasswdArgs) -> anyhow::Result<ExitCode> {
    let given = if args.kdf.given() {
        Some(args.kdf.params()?)
    } else {
        None
    };
    let (store, prefix, bucket) = connect(&args.vault).await?;
    let kdf = match given {
        Some(kdf) => kdf,
        None => vault::kdf_params(Arc::clone(&store), &prefix)
            .await
            .with_context(|| format!("cannot read the vault at s3://{bucket}/{prefix}"))?,
    };
    let old = Source::current(&args.vault.passphrase).read(Prompt::Once)?;
    let new = Source {
        var: passphrase::NEW_PASSPHRASE_VAR,
        file_flag: "--new-passphrase-file",
        file: args.new_passphrase_file.as_deref(),
        prompt: "New vault passphrase",
    }
    .read(Prompt::Confirmed)?;
    let place = format!("s3://{bucket}/{prefix}");
    vault::change_passphrase(store, &prefix, old.as_bytes(), new.as_bytes(), kdf)
        .await
        .with_context(|| format!("cannot change the passphrase of the vault at {place}"))?;
    println!("Changed the passphrase of the vault at {place}; the old one no longer opens it.");
    Ok(ExitCode::SUCCESS)
}

/// The mount flags that are given (not at their defaults) and mean nothing for a vault:
/// they shape the plain layout's objects, uploads, staging files or data cache, which a
/// vault does not have, or they ask for a bucket-less mount.
fn plain_only_flags(args: &MountArgs) -> Vec<&'static str> {
    let plain = FsConfig::default();
    let cache = DataCacheConfig::default();
    #[cfg(feature = "object-store")]
    let object_store = args.object_store_url.is_some();
    #[cfg(not(feature = "object-store"))]
    let object_store = false;
    [
        ("--all-buckets", args.all_buckets),
        ("--object-store-url", object_store),
        ("--no-delete", args.no_delete),
        ("--no-overwrite", args.no_overwrite),
        ("--last-writer-wins", args.last_writer_wins),
        ("--storage-class", args.storage_class.is_some()),
        ("--sse", args.sse.is_some()),
        ("--part-size", args.part_size.0 != plain.write_part_size),
        (
            "--max-file-size",
            args.max_file_size.0 != plain.max_file_size,
        ),
        ("--staging-dir", args.staging_dir.is_some()),
        ("--staging-cap", args.staging_cap.0 != plain.staging_cap),
        (
            "--memory-budget",
            args.memory_budget.0 != plain.memory_budget,
        ),
        ("--cache-memory", args.cache_memory.is_some()),
        ("--cache-dir", args.cache_dir.is_some()),
        (
            "--cache-block-size",
            args.cache_block_size.0 != cache.block_size,
        ),
        ("--file-mode", args.file_mode != plain.file_mode),
        ("--dir-mode", args.dir_mode != plain.dir_mode),
        (
            "--negative-metadata-ttl",
            args.negative_metadata_ttl.is_some(),
        ),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect()
}

/// What a vault mount needs besides the plain mount's plan, made in the foreground
/// (before the mount goes to the background): its configuration and passphrase.
#[derive(Debug)]
pub(crate) struct VaultMount {
    config: VaultConfig,
    passphrase: Passphrase,
}

impl VaultMount {
    /// For `--layout vault`: the configuration ([`mount_config`]) and the passphrase
    /// (asked on the terminal if it comes from nowhere else). For `--layout plain`:
    /// `None`, and the vault-only flags are refused.
    pub(crate) fn prepare(args: &MountArgs) -> anyhow::Result<Option<Self>> {
        match args.layout {
            Layout::Plain => {
                let vault_only = [
                    (
                        "--passphrase-file",
                        args.passphrase.passphrase_file.is_some(),
                    ),
                    ("--max-dirty", args.max_dirty.is_some()),
                ];
                if let Some((flag, _)) = vault_only.iter().find(|(_, given)| *given) {
                    bail!("{flag} is for the vault layout only (--layout vault)");
                }
                Ok(None)
            }
            Layout::Vault => Ok(Some(Self {
                config: mount_config(args)?,
                passphrase: Source::current(&args.passphrase).read(Prompt::Once)?,
            })),
        }
    }

    /// Opens the vault at `prefix` of `store`; `place` names it in errors. A server
    /// without conditional writes is refused when `check_server`: a vault relies on
    /// them to never lose one writer's change to another's.
    pub(crate) async fn open(
        self,
        store: Arc<dyn Backend>,
        prefix: &str,
        place: &str,
        check_server: bool,
    ) -> anyhow::Result<Arc<dyn Vfs>> {
        let prefix = vault_prefix(prefix);
        if check_server {
            let check = probe::conditional_writes(&store, &prefix).await;
            if check.verdict == Verdict::Lacks {
                bail!(
                    "cannot mount the vault at {place}: the server does not honour conditional \
                     writes, which a vault needs ({})",
                    check.detail
                );
            }
        }
        let fs = VaultFs::open(store, &prefix, self.passphrase.as_bytes(), self.config)
            .await
            .with_context(|| format!("cannot open the vault at {place}"))?;
        Ok(Arc::new(fs))
    }
}

/// The vault's configuration for `s3vfs mount --layout vault`: the mount flags that apply
/// (metadata TTL, owner of new files, upload concurrency, `--max-dirty`); the plain
/// layout's flags are refused.
fn mount_config(args: &MountArgs) -> anyhow::Result<VaultConfig> {
    let refused = plain_only_flags(args);
    if !refused.is_empty() {
        bail!(
            "--layout vault does not take {}: {} for the plain layout only",
            refused.join(", "),
            if refused.len() == 1 {
                "it is"
            } else {
                "they are"
            }
        );
    }
    let defaults = VaultConfig::default();
    let (uid, gid) = (
        args.uid.unwrap_or(defaults.uid),
        args.gid.unwrap_or(defaults.gid),
    );
    let mut config = defaults
        .with_metadata_ttl(args.metadata_ttl)
        .with_owner(uid, gid);
    if let Some(bytes) = args.max_dirty {
        config = config.with_max_dirty(bytes.0);
    }
    config.upload_concurrency = args.upload_concurrency;
    if let Some(dir) = &args.recovery_dir {
        let dir = std::path::absolute(dir)
            .with_context(|| format!("invalid recovery directory {dir:?}"))?;
        // Checked (and created, 0700) now, not when a file first needs it.
        RecoveryDir::open(&dir).with_context(|| format!("recovery directory {}", dir.display()))?;
        config = config.with_recovery_dir(Some(dir));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;

    fn mount_args(extra: &[&str]) -> MountArgs {
        let mut line = vec!["s3vfs", "mount", "--layout", "vault", "b/v", "/mnt"];
        line.extend_from_slice(extra);
        let Command::Mount(args) = Cli::try_parse_from(line).unwrap().command else {
            panic!("not a mount command");
        };
        *args
    }

    #[test]
    fn mount_flags_reach_the_vault_config() {
        let config = mount_config(&mount_args(&[])).unwrap();
        assert_eq!(config.metadata_ttl, FsConfig::default().metadata_ttl);
        let config = mount_config(&mount_args(&[
            "--metadata-ttl",
            "7",
            "--uid",
            "12",
            "--gid",
            "34",
            "--upload-concurrency",
            "3",
            "--max-dirty",
            "8M",
        ]))
        .unwrap();
        assert_eq!(config.metadata_ttl, std::time::Duration::from_secs(7));
        assert_eq!((config.uid, config.gid), (12, 34));
        assert_eq!(config.upload_concurrency, 3);
        assert_eq!(config.max_dirty, 8 << 20);
    }

    #[test]
    fn plain_layout_flags_are_refused_with_a_vault() {
        for extra in [
            &["--no-overwrite"][..],
            &["--part-size", "16M"],
            &["--cache-memory", "64M"],
            &["--file-mode", "0600"],
            &["--sse", "AES256"],
        ] {
            let err = mount_config(&mount_args(extra)).unwrap_err().to_string();
            assert!(
                err.contains(extra[0]) && err.contains("plain layout"),
                "{err}"
            );
        }
        // Flags of the mount, the connection and the adapter apply to both.
        let args = mount_args(&["--read-only", "--no-xattr", "--allow-delete"]);
        assert!(mount_config(&args).is_ok());
    }

    #[test]
    fn vault_commands_take_the_connection_flags() {
        let cli = Cli::try_parse_from([
            "s3vfs",
            "vault",
            "init",
            "b/p",
            "--endpoint-url",
            "http://127.0.0.1:9",
            "--force-path-style",
            "--requester-pays",
            "--kdf-memory",
            "1M",
            "--kdf-passes",
            "1",
            "--chunk-size",
            "64K",
        ])
        .unwrap();
        let Command::Vault(VaultArgs {
            command: VaultCommand::Init(args),
        }) = cli.command
        else {
            panic!("not vault init");
        };
        let config = args.vault.access.apply(args.vault.s3.store_config("b"));
        assert!(config.requester_pays && config.force_path_style);
        assert_eq!(args.kdf.params().unwrap(), KdfParams::new(1024, 1, 1));
        assert_eq!(args.chunk_size.0, 64 << 10);
        assert!(
            Cli::try_parse_from(["s3vfs", "vault", "passwd", "b", "--passphrase-file", "f"])
                .is_ok()
        );
        assert_eq!(vault_prefix("/a/b/"), "a/b/");
        assert_eq!(vault_prefix(""), "");
    }
}
