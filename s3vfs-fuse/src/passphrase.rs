//! Where a vault's passphrase comes from: a variable of the environment, else the first
//! line of a file only its owner can read, else a prompt on the terminal without echo.
//!
//! A passphrase lives in a [`Passphrase`], which wipes its bytes when dropped and never
//! shows them in `Debug`; nothing here logs one or puts one in an error message.

use anyhow::{bail, Context};
use clap::Args;
use std::ffi::OsString;
use std::fmt;
use std::io::IsTerminal;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The variable holding the passphrase.
pub(crate) const PASSPHRASE_VAR: &str = "S3VFS_PASSPHRASE";

/// The variable holding the new passphrase of `s3vfs vault passwd`.
pub(crate) const NEW_PASSPHRASE_VAR: &str = "S3VFS_NEW_PASSPHRASE";

/// Permission bits that let someone other than the owner read a passphrase file.
const READABLE_BY_OTHERS: u32 = 0o044;

/// A vault passphrase: wiped from memory on drop, never printed.
pub(crate) struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// `bytes` as a passphrase; an empty one is refused (`what` names it in the error).
    fn new(bytes: Zeroizing<Vec<u8>>, what: &str) -> anyhow::Result<Self> {
        if bytes.is_empty() {
            bail!("the passphrase from {what} is empty");
        }
        Ok(Self(bytes))
    }

    /// The passphrase's bytes, for the vault's key derivation.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// `--passphrase-file`: shared by every command that opens a vault.
#[derive(Debug, Args)]
pub(crate) struct PassphraseArgs {
    /// Read the vault's passphrase from the first line of FILE (its trailing newline
    /// dropped), which only its owner may read (mode 0600 or 0400). Without it the
    /// passphrase comes from S3VFS_PASSPHRASE, else a prompt on the terminal.
    #[arg(help_heading = "Vault passphrase", long, value_name = "FILE")]
    pub(crate) passphrase_file: Option<PathBuf>,
}

/// How many times a prompt asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prompt {
    /// Once: opening an existing vault.
    Once,
    /// Twice, both answers compared: choosing a passphrase.
    Confirmed,
}

/// One passphrase's sources: a variable, a file flag, and the words of its prompt.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Source<'a> {
    /// The environment variable tried first.
    pub(crate) var: &'static str,
    /// The file flag's name, for messages.
    pub(crate) file_flag: &'static str,
    /// The file that flag gave, if any.
    pub(crate) file: Option<&'a Path>,
    /// The prompt, e.g. `Vault passphrase`.
    pub(crate) prompt: &'static str,
}

impl<'a> Source<'a> {
    /// The passphrase of `S3VFS_PASSPHRASE` / `--passphrase-file` / the prompt.
    pub(crate) fn current(args: &'a PassphraseArgs) -> Self {
        Self {
            var: PASSPHRASE_VAR,
            file_flag: "--passphrase-file",
            file: args.passphrase_file.as_deref(),
            prompt: "Vault passphrase",
        }
    }

    /// Reads the passphrase: from the variable, else the file, else the terminal (asked
    /// `prompt` times). Setting both the variable and the file is refused, so that a
    /// forgotten variable never silently wins over the file named on the command line.
    pub(crate) fn read(&self, prompt: Prompt) -> anyhow::Result<Passphrase> {
        let from_env = std::env::var_os(self.var);
        match (from_env, self.file) {
            (Some(_), Some(_)) => bail!(
                "both {} and {} give a passphrase: unset one of them",
                self.var,
                self.file_flag
            ),
            (Some(value), None) => {
                Passphrase::new(Zeroizing::new(OsString::into_vec(value)), self.var)
            }
            (None, Some(path)) => read_file(path),
            (None, None) => self.ask(prompt),
        }
    }

    /// Asks on the terminal, without echo.
    fn ask(&self, prompt: Prompt) -> anyhow::Result<Passphrase> {
        if !std::io::stdin().is_terminal() {
            bail!(
                "no passphrase: set {}, give {} FILE, or run on a terminal to be asked",
                self.var,
                self.file_flag
            );
        }
        let ask = |text: &str| {
            rpassword::prompt_password(format!("{text}: "))
                .map(|answer| Zeroizing::new(answer.into_bytes()))
                .context("cannot read the passphrase from the terminal")
        };
        let first = ask(self.prompt)?;
        if prompt == Prompt::Confirmed {
            let again = ask(&format!("{} (again)", self.prompt))?;
            if first != again {
                bail!("the two passphrases differ; nothing was changed");
            }
        }
        Passphrase::new(first, "the terminal")
    }
}

/// The first line of `path`, which must be readable by its owner only.
fn read_file(path: &Path) -> anyhow::Result<Passphrase> {
    let what = || format!("passphrase file {}", path.display());
    let mode = std::fs::metadata(path)
        .with_context(what)?
        .permissions()
        .mode();
    if mode & READABLE_BY_OTHERS != 0 {
        bail!(
            "{} is readable by other users (mode {:o}): `chmod 600` it first",
            what(),
            mode & 0o777
        );
    }
    let contents = Zeroizing::new(std::fs::read(path).with_context(what)?);
    let line = contents.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Passphrase::new(Zeroizing::new(line.to_vec()), &what())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn file_with(dir: &tempfile::TempDir, contents: &[u8], mode: u32) -> PathBuf {
        let path = dir.path().join("passphrase");
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_file_gives_its_first_line_without_the_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(&dir, b"correct horse\r\nsecond line\n", 0o600);
        assert_eq!(read_file(&path).unwrap().as_bytes(), b"correct horse");
        let path = file_with(&dir, b"no newline", 0o400);
        assert_eq!(read_file(&path).unwrap().as_bytes(), b"no newline");
    }

    #[test]
    fn a_file_others_can_read_or_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(&dir, b"secret\n", 0o644);
        let err = read_file(&path).unwrap_err().to_string();
        assert!(err.contains("readable by other users"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let path = file_with(&dir, b"\nsecret\n", 0o600);
        assert!(read_file(&path).unwrap_err().to_string().contains("empty"));
        assert!(read_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn debug_hides_the_passphrase() {
        let passphrase = Passphrase::new(Zeroizing::new(b"hunter2".to_vec()), "test").unwrap();
        assert!(!format!("{passphrase:?}").contains("hunter2"));
    }
}
