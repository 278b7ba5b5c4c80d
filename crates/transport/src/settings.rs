//! Reading settings the same way in every layer: the entries of one TOML
//! table as text, and the `PREFIX<KEY>` environment variables that override
//! known keys. `TransportConf`, `rpc::RpcEnvConfig` and the standalone
//! cluster's config all parse through these, each with its own keys and errors.

/// The `(key, value)` entries of table `name` of a TOML document, each value
/// as text: strings as they are, numbers and booleans in their TOML form.
/// `Ok(None)` when the table is absent.
///
/// # Errors
/// The TOML text of the value named `name` when it is not a table.
pub fn toml_table_entries(doc: &toml::Table, name: &str) -> Result<Option<Vec<(String, String)>>, String> {
    let Some(value) = doc.get(name) else {
        return Ok(None);
    };
    let table = value.as_table().ok_or_else(|| value.to_string())?;
    Ok(Some(
        table
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (key.clone(), text)
            })
            .collect(),
    ))
}

/// One environment override: the key it sets, the variable it came from, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvOverride {
    /// The configuration key, lower case (`io_mode`).
    pub key: String,
    /// The variable's name (`RPC_IO_MODE`), for error messages.
    pub variable: String,
    /// The variable's value.
    pub value: String,
}

/// The variables of `vars` named `prefix` + a key of `keys` in upper case, in order;
/// every other variable is ignored.
pub fn env_overrides<I, K, V>(vars: I, prefix: &str, keys: &[&str]) -> Vec<EnvOverride>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    vars.into_iter()
        .filter_map(|(name, value)| {
            let key = name.as_ref().strip_prefix(prefix)?.to_ascii_lowercase();
            keys.contains(&key.as_str()).then(|| EnvOverride {
                key,
                variable: name.as_ref().to_string(),
                value: value.as_ref().to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_entries_as_text() {
        let doc: toml::Table = "[t]\na = \"x\"\nb = 3\nc = true\n[u]\n".parse().unwrap();
        let mut e = toml_table_entries(&doc, "t").unwrap().unwrap();
        e.sort();
        assert_eq!(
            e,
            [
                ("a".into(), "x".into()),
                ("b".into(), "3".into()),
                ("c".into(), "true".into())
            ]
        );
        assert_eq!(toml_table_entries(&doc, "missing").unwrap(), None);
        let doc: toml::Table = "t = 1\n".parse().unwrap();
        assert_eq!(toml_table_entries(&doc, "t").unwrap_err(), "1");
    }

    #[test]
    fn only_known_prefixed_keys() {
        let o = env_overrides(
            [("RPC_IO_MODE", "epoll"), ("RPC_OTHER", "x"), ("PATH", "/bin")],
            "RPC_",
            &["io_mode"],
        );
        assert_eq!(
            o,
            [EnvOverride {
                key: "io_mode".into(),
                variable: "RPC_IO_MODE".into(),
                value: "epoll".into()
            }]
        );
    }
}
