//! `--config FILE` of `run` and `matrix`: the same options as the flags, in TOML.
//!
//! ```toml
//! io_mode = "epoll"      # the flag's long name, `-` or `_` alike
//! level = "rpc"
//! payload = 64           # or "4KiB"
//! rate = 20000
//! client_cpus = "1"      # or [1]
//! json = true
//! ```
//!
//! Each key is turned into its flag and parsed by the same parser as the command line, so
//! values are checked exactly as flags are; flags on the command line override the file
//! (an `io_mode` or `baseline` on the command line also drops the other one from the file).
//! Keys that are not flags of the subcommand are an error naming every one of them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};

/// Why a command line with `--config` could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The command line itself is wrong (clap's error, with its usage text).
    #[error(transparent)]
    Cli(#[from] clap::Error),
    /// The file cannot be read.
    #[error("cannot read the config file {}: {source}; check the path given to --config", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("the config file {} is not valid TOML: {message}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// Keys that are not options of the subcommand.
    #[error(
        "unknown key{s} {keys} in the config file {}; the keys are the long flags of `rpc-bench {command}` \
         ({allowed}); the transport's keys (an RpcEnv's `[transport]` table) are set with `RPC_<KEY>` \
         variables instead (`RPC_SPIN_BEFORE_PARK_US=0`, say), which each run records in \
         `options.transport_env`",
        path.display(),
        s = if keys.contains(',') { "s" } else { "" }
    )]
    UnknownKeys {
        /// The file.
        path: PathBuf,
        /// The unknown keys, quoted and comma-separated.
        keys: String,
        /// The subcommand (`run` or `matrix`).
        command: String,
        /// The keys allowed, comma-separated.
        allowed: String,
    },
    /// A key's value has a type no flag takes (a table, a date).
    #[error("the key `{key}` of the config file {} has a {kind} value; give a string, number, boolean or array", path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The TOML type found.
        kind: &'static str,
    },
    /// A value the flag's parser refuses (the message names the flag).
    #[error("in the config file {}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// clap's message for the flag made of the key.
        message: String,
    },
}

impl ConfigError {
    /// Whether this is clap's own error (help, version or a bad command line), which
    /// [`clap::Error::exit`] prints in clap's format.
    pub fn as_clap(&self) -> Option<&clap::Error> {
        match self {
            Self::Cli(e) => Some(e),
            _ => None,
        }
    }
}

/// Keys that are never read from a file: the file itself, and clap's own.
const NOT_FROM_FILE: [&str; 3] = ["config", "help", "version"];

/// Parses a command line (`args[0]` the program name), applying the `--config` file of
/// `run` or `matrix` (also `rpc-bench --config FILE` for the default matrix) under the
/// flags given.
///
/// # Errors
/// [`ConfigError::Cli`] for a bad command line (or `--help`), the other variants for a
/// file that cannot be read or parsed, has unknown keys, or values its flags refuse.
pub fn parse_cli<I, T>(args: I) -> Result<Cli, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = <Cli as clap::Parser>::try_parse_from(&args)?;
    let (config, sub) = match &cli.command {
        Some(Command::Run(a)) => (a.config.clone(), Some("run")),
        Some(Command::Matrix(a)) => (a.config.clone(), Some("matrix")),
        None => (cli.matrix.config.clone(), None),
        Some(_) => (None, None),
    };
    let Some(path) = config else { return Ok(cli) };
    let command = Cli::command();
    let target = match sub {
        Some(name) => command
            .find_subcommand(name)
            .expect("run and matrix exist")
            .clone(),
        None => command.clone(),
    };
    let given = flags_given(&args);
    let file_args = file_args(&path, &target, &given)?;
    // The file's flags go right after the subcommand, before the command line's own, and
    // later occurrences of a flag override earlier ones.
    let at = if sub.is_some() { 2 } else { 1 };
    let mut merged = args[..at].to_vec();
    merged.extend(file_args);
    merged.extend_from_slice(&args[at..]);
    let matches = command
        .args_override_self(true)
        .try_get_matches_from(&merged)
        .map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            message: e
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .into(),
        })?;
    Ok(Cli::from_arg_matches(&matches)?)
}

/// Long flag names (without `--`, `_` for `-`) that appear on the command line.
fn flags_given(args: &[OsString]) -> Vec<String> {
    args.iter()
        .filter_map(|a| a.to_str()?.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).replace('-', "_"))
        .collect()
}

/// The flags (`--key value`) the file at `path` stands for, for `target`'s arguments,
/// leaving out those `given` on the command line.
fn file_args(path: &Path, target: &clap::Command, given: &[String]) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Toml {
        path: path.into(),
        message: e.to_string().trim().to_string(),
    })?;
    let allowed: Vec<(String, &clap::Arg)> = target
        .get_arguments()
        .filter_map(|a| Some((a.get_long()?.replace('-', "_"), a)))
        .filter(|(name, _)| !NOT_FROM_FILE.contains(&name.as_str()))
        .collect();
    let unknown: Vec<String> = table
        .keys()
        .filter(|k| !allowed.iter().any(|(name, _)| *name == k.replace('-', "_")))
        .map(|k| format!("`{k}`"))
        .collect();
    if !unknown.is_empty() {
        return Err(ConfigError::UnknownKeys {
            path: path.into(),
            keys: unknown.join(", "),
            command: target.get_name().to_string(),
            allowed: allowed
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let system_given = given.iter().any(|g| g == "io_mode" || g == "baseline");
    let mut out = Vec::new();
    for (key, value) in &table {
        let name = key.replace('-', "_");
        let skip_system = system_given && (name == "io_mode" || name == "baseline");
        if given.contains(&name) || skip_system {
            continue;
        }
        let (_, arg) = allowed.iter().find(|(n, _)| *n == name).expect("checked above");
        let flag = format!("--{}", arg.get_long().expect("allowed args have a long name"));
        let bad = |kind| ConfigError::BadValue {
            path: path.into(),
            key: key.clone(),
            kind,
        };
        let text = match value {
            toml::Value::Boolean(b) if !arg.get_action().takes_values() => {
                if *b {
                    out.push(flag.into());
                }
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    toml::Value::Integer(i) => Ok(i.to_string()),
                    toml::Value::Float(f) => Ok(f.to_string()),
                    _ => Err(bad("nested array or table")),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            toml::Value::Table(_) => return Err(bad("table")),
            toml::Value::Datetime(_) => return Err(bad("date")),
        };
        out.push(format!("{flag}={text}").into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use transport::IoMode;

    use super::*;
    use crate::workload::System;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn run_spec(args: &[&str]) -> Result<crate::run::RunSpec, ConfigError> {
        let cli = parse_cli(std::iter::once("rpc-bench").chain(args.iter().copied()))?;
        match cli.command {
            Some(Command::Run(a)) => Ok(a.spec()),
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn the_file_sets_options_and_flags_override_it() {
        let f = file(
            "io_mode = \"epoll\"\nlevel = \"rpc\"\npayload = \"4KiB\"\nrate = 20000\nconns = 2\n\
             duration = 0.5\nclient-cpus = [0]\nserver_threads = 2\njson = true\n",
        );
        let path = f.path().to_str().unwrap();
        let s = run_spec(&["run", "--config", path]).unwrap();
        assert_eq!(s.system, System::Transport(IoMode::Epoll));
        assert_eq!(
            (s.level, s.workload.payload, s.workload.conns),
            (crate::run::Level::Rpc, 4096, 2)
        );
        assert_eq!(
            (s.workload.rate, s.workload.inflight),
            (Some(20_000), crate::workload::OPEN_LOOP_CAP)
        );
        assert_eq!((s.duration_s, s.server_threads), (0.5, 2));
        assert_eq!(s.client_cpus.map(|c| c.cpus()), Some(vec![0]));
        // Flags win, in either spelling, before or after --config.
        let s = run_spec(&[
            "run",
            "--payload",
            "64",
            "--config",
            path,
            "--rate=100",
            "--baseline",
            "raw-tokio",
        ])
        .unwrap();
        assert_eq!((s.workload.payload, s.workload.rate), (64, Some(100)));
        assert_eq!(s.system, System::RawTokio, "--baseline drops the file's io_mode");
        let cli = parse_cli(["rpc-bench", "run", "--config", path]).unwrap();
        let Some(Command::Run(a)) = cli.command else {
            panic!()
        };
        assert!(a.json);
        // The matrix takes its own flags' keys; no subcommand is the matrix too.
        let m = file("repeat = 5\nsystems = [\"epoll\", \"raw-tokio\"]\nlevels = \"transport\"\n");
        let cli = parse_cli([
            "rpc-bench",
            "--config",
            m.path().to_str().unwrap(),
            "--repeat",
            "2",
        ])
        .unwrap();
        let spec = cli.matrix.spec();
        assert_eq!((spec.repeat, spec.systems.len(), spec.levels.len()), (2, 2, 1));
    }

    #[test]
    fn a_transport_table_is_refused_with_the_variables_to_use_instead() {
        let f = file("[transport]\nspin_before_park_us = 0\n");
        let msg = run_spec(&["run", "--config", f.path().to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`transport`") && msg.contains("RPC_SPIN_BEFORE_PARK_US=0"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_them() {
        let f = file("payload = 64\npayloads = 3\n[server]\nthreads = 2\n");
        let e = run_spec(&["run", "--config", f.path().to_str().unwrap()]).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ConfigError::UnknownKeys { .. }), "{msg}");
        assert!(
            msg.contains("`payloads`, `server`") && msg.contains("unknown keys"),
            "{msg}"
        );
        assert!(
            msg.contains("payload, response") && !msg.contains("config,"),
            "{msg}"
        );
        let f = file("inflight = 0\n");
        let msg = run_spec(&["run", "--config", f.path().to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--inflight") && msg.contains("`0`"), "{msg}");
        let f = file("payload = \n");
        let e = run_spec(&["run", "--config", f.path().to_str().unwrap()]).unwrap_err();
        assert!(matches!(e, ConfigError::Toml { .. }), "{e}");
        let e = run_spec(&["run", "--config", "/nonexistent/rpc-bench.toml"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot read the config file /nonexistent/rpc-bench.toml"),
            "{e}"
        );
        let f = file("repeat = 3\n");
        let e = run_spec(&["run", "--config", f.path().to_str().unwrap()]).unwrap_err();
        assert!(
            e.to_string().contains("`repeat`") && e.to_string().contains("rpc-bench run"),
            "{e}"
        );
        assert!(
            parse_cli(["rpc-bench", "run", "--bogus"])
                .unwrap_err()
                .as_clap()
                .is_some()
        );
    }
}
