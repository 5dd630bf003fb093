//! The one narinfo client: a Nix binary cache's `nix-cache-info` and narinfos, asked over
//! http(s) with the cache's credentials (HTTP Basic, as Nix sends them through netrc: an
//! Attic token as a password, or the user and password a cache URL carried) or read from a `file://` folder. Coverage asks it what a cache
//! holds; miss explanations ask it what a cache answers for what a build did not substitute.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::boundary::public_url;
use crate::exec::http::{Auth, Client, Method, Request};
use crate::plan::cache::NixCache;
use crate::plan::config::Login;

/// One narinfo or nix-cache-info request may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The value of a narinfo's `key:` line (`NarSize`, `References`), trimmed.
pub fn narinfo_field<'a>(narinfo: &'a str, key: &str) -> Option<&'a str> {
    narinfo.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// A Nix binary cache as the harness itself reads it.
pub enum NarinfoSource {
    Http {
        base: Url,
        /// Sent as HTTP Basic credentials.
        login: Option<Login>,
    },
    /// A `file://` cache.
    Folder(PathBuf),
}

/// A cache's answer for one document: its HTTP status (200 or 404 for a folder) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl NarinfoSource {
    /// How to read `cache`, or why the harness cannot (s3:// needs the AWS SDK).
    pub fn of(cache: &NixCache) -> Result<NarinfoSource, String> {
        NarinfoSource::at(&cache.url, cache.login.clone())
    }

    /// The cache at `url`, read with `login` if any.
    pub fn at(url: &Url, login: Option<Login>) -> Result<NarinfoSource, String> {
        match url.scheme() {
            "http" | "https" => Ok(NarinfoSource::Http {
                base: url.clone(),
                login,
            }),
            "file" => url
                .to_file_path()
                .map(NarinfoSource::Folder)
                .map_err(|()| format!("{url} does not name a local folder")),
            other => Err(format!(
                "the harness reads http(s):// and file:// caches, not {other}:// ({url}); s3:// needs the AWS SDK\n  fix: name the bucket's https:// address instead"
            )),
        }
    }

    /// The cache's address without credentials, or its folder.
    pub fn describe(&self) -> String {
        match self {
            NarinfoSource::Http { base, .. } => public_url(base),
            NarinfoSource::Folder(dir) => dir.display().to_string(),
        }
    }

    /// `name` (`nix-cache-info`, `<hash>.narinfo`) from the cache.
    pub fn get(&self, client: &Client, name: &str) -> Result<Reply, String> {
        match self {
            NarinfoSource::Folder(dir) => {
                let path = dir.join(name);
                match std::fs::read_to_string(&path) {
                    Ok(body) => Ok(Reply { status: 200, body }),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Reply {
                        status: 404,
                        body: String::new(),
                    }),
                    Err(e) => Err(format!("reading {}: {e}", path.display())),
                }
            }
            NarinfoSource::Http { base, login } => {
                let text = format!("{}/{name}", base.as_str().trim_end_matches('/'));
                let url = Url::parse(&text).map_err(|e| format!("{text}: {e}"))?;
                let mut request = Request::new(Method::Get, &url, REQUEST_TIMEOUT);
                if let Some(login) = login {
                    request = request.auth(Auth::Basic {
                        user: &login.user,
                        password: login.password.expose(),
                    });
                }
                let answer = client.send(request).map_err(|e| e.to_string())?;
                Ok(Reply {
                    status: answer.status,
                    body: answer.text(),
                })
            }
        }
    }

    /// The narinfo of `store_path`, or why it could not be asked.
    pub fn narinfo(&self, client: &Client, store_path: &str) -> Result<Reply, String> {
        let name =
            narinfo_name(store_path).ok_or_else(|| format!("{store_path} is not a store path"))?;
        self.get(client, &name)
    }

    /// Checks that the cache's `nix-cache-info` can be read with these credentials.
    pub fn check(&self, client: &Client) -> Result<(), String> {
        let answer = self.get(client, "nix-cache-info")?;
        match (answer.status, self) {
            (200, _) => Ok(()),
            (_, NarinfoSource::Folder(dir)) => Err(format!(
                "{} is missing",
                dir.join("nix-cache-info").display()
            )),
            (status, NarinfoSource::Http { .. }) => {
                let what = match status {
                    401 | 403 => " (the token may not pull, or there is no token)",
                    _ => "",
                };
                Err(format!(
                    "GET {}/nix-cache-info answered {status}{what}",
                    self.describe().trim_end_matches('/')
                ))
            }
        }
    }
}

/// `<hash>.narinfo`, the name of a store path's narinfo on a cache.
pub fn narinfo_name(store_path: &str) -> Option<String> {
    let base = store_path.rsplit('/').next()?;
    let (hash, _) = base.split_once('-')?;
    Some(format!("{hash}.narinfo"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::CacheBackend;

    #[test]
    fn reads_a_folder_cache_and_names_its_narinfos() {
        let dir = tempfile::tempdir().unwrap();
        let cache = NixCache::upstream(Url::from_file_path(dir.path()).unwrap(), "k:1".into());
        let source = NarinfoSource::of(&cache).unwrap();
        let client = Client::new(&Default::default()).unwrap();
        let err = source.check(&client).unwrap_err();
        assert!(err.contains("nix-cache-info is missing"), "{err}");
        std::fs::write(dir.path().join("nix-cache-info"), "StoreDir: /nix/store\n").unwrap();
        source.check(&client).unwrap();
        std::fs::write(dir.path().join("abcd.narinfo"), "References: \n").unwrap();
        assert_eq!(
            source.narinfo(&client, "/nix/store/abcd-x").unwrap(),
            Reply {
                status: 200,
                body: "References: \n".into()
            }
        );
        assert_eq!(
            source.narinfo(&client, "/nix/store/0000-y").unwrap().status,
            404
        );
        assert!(source.narinfo(&client, "nonsense").is_err());
        let s3 = NixCache {
            backend: CacheBackend::S3,
            ..NixCache::upstream(Url::parse("s3://b").unwrap(), "k:1".into())
        };
        assert!(NarinfoSource::of(&s3).err().unwrap().contains("s3://"));
        assert_eq!(
            narinfo_name("/nix/store/abc-x").as_deref(),
            Some("abc.narinfo")
        );
    }

    #[test]
    fn asks_an_http_cache_with_the_token_as_nix_sends_it() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let body = "StorePath: /nix/store/abcd-x\n";
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(reply.as_bytes()).unwrap();
            String::from_utf8_lossy(&seen).into_owned()
        });
        let cache = NixCache {
            backend: CacheBackend::Attic,
            login: Some(Login {
                user: crate::plan::cache::ATTIC_LOGIN.into(),
                password: crate::plan::config::Secret::new("t0k"),
            }),
            ..NixCache::upstream(
                Url::parse(&format!("http://{addr}/main")).unwrap(),
                "k:1".into(),
            )
        };
        let source = NarinfoSource::of(&cache).unwrap();
        let client = Client::new(&Default::default()).unwrap();
        let reply = source.narinfo(&client, "/nix/store/abcd-x").unwrap();
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "StorePath: /nix/store/abcd-x\n")
        );
        let request = server.join().unwrap().to_ascii_lowercase();
        assert!(request.starts_with("get /main/abcd.narinfo "), "{request}");
        // `flywheel-bench:t0k`, as netrc makes Nix send it.
        assert!(
            request.contains("authorization: basic zmx5d2hlzwwtymvuy2g6ddbr"),
            "{request}"
        );
        assert!(!source.describe().contains("t0k"));
    }
}
