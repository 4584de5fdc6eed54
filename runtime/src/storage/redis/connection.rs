//! Reaching the server: connecting (its timeouts, and the checks made once connected), sending
//! commands, pipelines and scripts, and telling which [`StorageError`] a Redis error is. Messages
//! name the server by its URL with any password hidden ([`redact_url`]).
//!
//! What is sent is left to the operations' files; the data marker adopted on connecting is
//! `instance`'s, and resending a file's chunks after a reconnect is `blob`'s.

use super::{Keys, RedisConfig, RedisStore};
use crate::storage::{JobId, StorageError};
use redis::aio::ConnectionManagerConfig;
use redis::{RedisError, Script};
use tokio::sync::OnceCell;

impl RedisStore {
    /// Connects to the server named in `config`; fails at once, naming it, if it cannot be
    /// reached.
    pub async fn connect(config: &RedisConfig) -> Result<Self, StorageError> {
        if config.prefix.is_empty() || config.prefix.contains(['{', '}']) {
            return Err(StorageError::Config {
                reason: format!(
                    "invalid key prefix {:?}: it must be non-empty and contain no braces",
                    config.prefix
                ),
                source: None,
            });
        }
        // Messages name the server, never its password.
        let url = redact_url(&config.url);
        let client =
            redis::Client::open(config.url.as_str()).map_err(|e| StorageError::Config {
                reason: format!("invalid Redis URL {url:?}"),
                source: Some(Box::new(e)),
            })?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(2);
        let con = client
            .get_connection_manager_with_config(manager)
            .await
            .map_err(|e| storage_error(&url, e, true))?;
        let store = RedisStore {
            url,
            client,
            con,
            keys: Keys::new(&config.prefix),
            lease_ttl: config.lease_ttl,
            specs: Default::default(),
            instance: Default::default(),
            wake: OnceCell::new(),
            registry: Default::default(),
        };
        store.refuse_eviction().await?;
        store.adopt_instance().await?;
        Ok(store)
    }

    /// Fails unless the server keeps every key: a server that evicts under memory pressure
    /// would silently drop jobs, leases and results.
    async fn refuse_eviction(&self) -> Result<(), StorageError> {
        let info: String = self.query(redis::cmd("INFO").arg("memory")).await?;
        let policy = info
            .lines()
            .find_map(|line| line.strip_prefix("maxmemory_policy:"))
            .map(str::trim)
            .unwrap_or("noeviction");
        if policy == "noeviction" {
            return Ok(());
        }
        Err(StorageError::UnsafeConfig {
            url: self.url.clone(),
            reason: format!(
                "its maxmemory-policy is {policy}, which lets Redis evict keys and so lose jobs \
                 and results; set `maxmemory-policy noeviction` (CONFIG SET maxmemory-policy \
                 noeviction, and in redis.conf so that it survives a restart)"
            ),
        })
    }

    /// A Redis error met after connecting, as a storage error naming this server.
    pub(super) fn error(&self, e: RedisError) -> StorageError {
        storage_error(&self.url, e, false)
    }

    /// Sends one command.
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, StorageError> {
        cmd.query_async(&mut self.con.clone())
            .await
            .map_err(|e| self.error(e))
    }

    /// Sends a pipeline whose replies are not wanted.
    pub(super) async fn query_pipe(&self, pipe: &redis::Pipeline) -> Result<(), StorageError> {
        pipe.query_async::<()>(&mut self.con.clone())
            .await
            .map_err(|e| self.error(e))
    }

    /// Runs a per-job script on the job's keys.
    pub(super) async fn run<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        job: JobId,
        args: &[&[u8]],
    ) -> Result<T, StorageError> {
        self.run_on(script, self.keys.job(job), args).await
    }

    /// Runs a script on the given keys: a job's, or a key of its own.
    pub(super) async fn run_on<T: redis::FromRedisValue, K: redis::ToRedisArgs>(
        &self,
        script: &Script,
        keys: K,
        args: &[&[u8]],
    ) -> Result<T, StorageError> {
        let mut invocation = script.prepare_invoke();
        invocation.key(keys);
        for arg in args {
            invocation.arg(*arg);
        }
        invocation
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(|e| self.error(e))
    }
}

/// A Redis error as a storage error naming the server (`url`, already redacted). The replies
/// its operator can act on (a password missing or refused, memory full, not a Redis server at
/// all) get variants of their own; an I/O failure, or any failure while `connecting`, makes
/// the server unreachable; a reply of a type the request does not expect is corrupt; the rest
/// is a failure of the backend, which may pass.
fn storage_error(url: &str, e: RedisError, connecting: bool) -> StorageError {
    let url = url.to_owned();
    // A pipeline fails as a list of its commands' errors: one refused for memory is enough.
    let has_code = |code: &str| {
        e.clone()
            .into_server_errors()
            .is_some_and(|errors| errors.iter().any(|(_, error)| error.code() == code))
    };
    if has_code("NOAUTH") {
        StorageError::AuthRequired { url }
    } else if has_code("WRONGPASS") || e.kind() == redis::ErrorKind::AuthenticationFailed {
        StorageError::AuthFailed {
            url,
            reason: e.to_string(),
        }
    } else if has_code("OOM") {
        StorageError::OutOfMemory { url }
    } else if connecting && e.kind() == redis::ErrorKind::Parse {
        StorageError::NotRedis { url }
    } else if connecting
        // Past the handshake, a reply cut off mid-way parses as garbage: the connection is
        // replaced, as for the others, and the request may be sent again.
        || e.kind() == redis::ErrorKind::Parse
        || e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
    {
        StorageError::Unreachable {
            url,
            reason: e.to_string(),
        }
    } else if e.kind() == redis::ErrorKind::UnexpectedReturnType {
        // A whole reply of the wrong type: asking again gets the same.
        StorageError::corrupt_because("a reply of a type the request does not expect", e)
    } else {
        StorageError::Backend {
            url,
            source: Box::new(e),
        }
    }
}

/// `url` with its password, if it has one, replaced by `***`: for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The last `@` ends the user information: a password with an unescaped `@` is hidden
    // whole, never shown in part.
    let rest = match rest.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => rest.to_owned(),
        },
        None => rest.to_owned(),
    };
    // `redis+unix://` URLs carry the password as a `pass=` query parameter.
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let query: Vec<&str> = query
                .split('&')
                .map(|pair| {
                    if pair.starts_with("pass=") {
                        "pass=***"
                    } else {
                        pair
                    }
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => rest,
    };
    format!("{scheme}://{rest}")
}

#[cfg(test)]
mod tests {
    use super::{redact_url, storage_error};
    use crate::storage::{RedisConfig, RedisStore, StorageError};
    use redis::{ErrorKind, RedisError};

    #[test]
    fn a_url_is_shown_without_its_password() {
        let cases = [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:secret@host:6379", "redis://:***@host:6379"),
            (
                "redis://user:secret@host:6379/2",
                "redis://user:***@host:6379/2",
            ),
            ("redis://user@host", "redis://user@host"),
            ("rediss://:a@b@host", "rediss://:***@host"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=secret",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            ("not a url", "not a url"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[tokio::test]
    async fn a_bad_url_or_prefix_is_a_configuration_error_never_retried() {
        let Err(e) = RedisStore::connect(&RedisConfig::new("not a url")).await else {
            panic!("connected to no server");
        };
        assert!(matches!(e, StorageError::Config { .. }), "{e:?}");
        assert!(!e.is_retryable());
        assert!(
            std::error::Error::source(&e).is_some(),
            "the parser's reason is kept"
        );
        let mut braces = RedisConfig::new("redis://127.0.0.1:1");
        braces.prefix = "a{b}".into();
        let Err(e) = RedisStore::connect(&braces).await else {
            panic!("connected to no server");
        };
        assert!(matches!(e, StorageError::Config { .. }), "{e:?}");
    }

    fn server_error(reply: &str) -> RedisError {
        redis::parse_redis_value(reply.as_bytes())
            .unwrap()
            .extract_error()
            .unwrap_err()
    }

    /// The name of `e`'s variant, for the table below.
    fn variant(e: &StorageError) -> &'static str {
        match e {
            StorageError::AuthRequired { .. } => "AuthRequired",
            StorageError::AuthFailed { .. } => "AuthFailed",
            StorageError::OutOfMemory { .. } => "OutOfMemory",
            StorageError::NotRedis { .. } => "NotRedis",
            StorageError::Unreachable { .. } => "Unreachable",
            StorageError::Corrupt { .. } => "Corrupt",
            StorageError::Backend { .. } => "Backend",
            _ => "another",
        }
    }

    #[test]
    fn a_redis_error_is_classified_by_what_can_be_done_about_it() {
        let url = "redis://host";
        let classify = |e, connecting| storage_error(url, e, connecting);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let cases: [(RedisError, bool, &str); 8] = [
            (
                server_error("-NOAUTH Authentication required.\r\n"),
                false,
                "AuthRequired",
            ),
            (
                server_error("-WRONGPASS invalid password\r\n"),
                false,
                "AuthFailed",
            ),
            (
                server_error("-OOM command not allowed\r\n"),
                false,
                "OutOfMemory",
            ),
            ((ErrorKind::Parse, "garbage").into(), true, "NotRedis"),
            ((ErrorKind::Parse, "cut off").into(), false, "Unreachable"),
            (reset.into(), false, "Unreachable"),
            (
                (ErrorKind::UnexpectedReturnType, "not a number").into(),
                false,
                "Corrupt",
            ),
            (
                server_error("-ERR Error running script\r\n"),
                false,
                "Backend",
            ),
        ];
        for (error, connecting, expected) in cases {
            let shown = error.to_string();
            let e = classify(error, connecting);
            assert_eq!(variant(&e), expected, "{shown} gave {e:?}");
        }
        let backend = classify(server_error("-BUSY a script is running\r\n"), false);
        assert!(backend.is_retryable());
        // The server's words are the source, not repeated in the text.
        let source = std::error::Error::source(&backend).map(|s| s.to_string());
        assert!(source.is_some_and(|s| s.contains("BUSY")));
        assert!(!backend.to_string().contains("BUSY"));
    }
}
