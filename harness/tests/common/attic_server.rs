//! An in-test Attic server: no real one can be installed here, so this implements the part
//! of Attic's protocol the harness speaks, the way its server (zhaofengli/attic,
//! server/src/api) does: `GET /_api/v1/cache-config/{cache}` (pull permission),
//! `POST` and `DELETE` of it (create and destroy a cache: Attic checks its create-cache and
//! destroy-cache permissions, this server a push grant on the name or `*`),
//! `POST /_api/v1/get-missing-paths` and `PUT /_api/v1/upload-path` (push permission; the
//! NAR info in `X-Attic-Nar-Info` or as a body preamble of
//! `X-Attic-Nar-Info-Preamble-Size` bytes; the NAR re-hashed and its size checked, a
//! mismatch refused with 400 "Bad NAR Hash or Size"; a NAR it already holds counted as
//! deduplicated; references stored and served as sent, so full paths where Attic's client
//! sends base names give a narinfo Nix refuses, as with the real server), and the Nix
//! binary cache interface `{cache}/nix-cache-info`,
//! `{cache}/{hash}.narinfo`, `{cache}/nar/...`, whose narinfos it signs with the cache's
//! ed25519 key as Attic does. Tokens are bearer (API) or the HTTP Basic password (binary
//! cache). A token without any permission on a cache, or none, gets 401 (Attic hides the
//! cache); one with some permission but not the needed one gets 403; a cache that does
//! not exist is 404 `NoSuchCache` to a token that may see it. Answers are Attic's JSON
//! errors `{code, error, message}`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

const NIX32: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Nix's base-32 encoding of a hash.
pub fn nix32(bytes: &[u8]) -> String {
    let len = (bytes.len() * 8).div_ceil(5);
    (0..len)
        .rev()
        .map(|n| {
            let b = n * 5;
            let (i, j) = (b / 8, b % 8);
            let low = (bytes[i] as u16) >> j;
            let high = bytes.get(i + 1).map_or(0, |&x| (x as u16) << (8 - j));
            NIX32[((low | high) & 0x1f) as usize] as char
        })
        .collect()
}

pub fn from_nix32(text: &str, size: usize) -> Option<Vec<u8>> {
    let mut out = vec![0u8; size];
    for (n, c) in text.bytes().rev().enumerate() {
        let digit = NIX32.iter().position(|&d| d == c)? as u16;
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        out[i] |= (digit << j) as u8;
        if let Some(next) = out.get_mut(i + 1) {
            *next |= (digit >> (8 - j)) as u8;
        }
    }
    Some(out)
}

/// A `sha256:` hash in hex or Nix base-32, as Attic accepts it.
fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let digits = text.strip_prefix("sha256:")?;
    let bytes = match digits.len() {
        64 => (0..32)
            .map(|i| u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?,
        52 => from_nix32(digits, 32)?,
        _ => return None,
    };
    bytes.try_into().ok()
}

/// What a token may do, per cache name (`*` for every cache).
#[derive(Debug, Clone, Default)]
pub struct Grant {
    pub pull: bool,
    pub push: bool,
}

#[derive(Debug, Default)]
pub struct Counts {
    /// upload-path requests, whatever their outcome.
    pub puts: u64,
    /// get-missing-paths requests.
    pub missing_queries: u64,
    /// Every request: `METHOD path -> status`.
    pub log: Vec<String>,
}

struct Cache {
    key_name: String,
    key: SigningKey,
}

struct State {
    root: PathBuf,
    caches: BTreeMap<String, Cache>,
    tokens: BTreeMap<String, BTreeMap<String, Grant>>,
    /// NAR hashes held (Attic deduplicates NARs across caches).
    nars: BTreeSet<String>,
    counts: Counts,
    /// Flip a byte of every uploaded NAR before checking it, as a corrupting network would.
    corrupt_uploads: bool,
}

pub struct AtticServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl AtticServer {
    /// A server on a free loopback port, keeping its caches under `root`, with one private
    /// cache `main`.
    pub fn start(root: &Path) -> AtticServer {
        let server =
            Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind a loopback port"));
        let addr = server.server_addr().to_ip().expect("an IP address");
        let state = Arc::new(Mutex::new(State {
            root: root.to_path_buf(),
            caches: BTreeMap::new(),
            tokens: BTreeMap::new(),
            nars: BTreeSet::new(),
            counts: Counts::default(),
            corrupt_uploads: false,
        }));
        let (s, st) = (server.clone(), state.clone());
        let thread = std::thread::spawn(move || {
            for request in s.incoming_requests() {
                handle(&st, request);
            }
        });
        let attic = AtticServer {
            addr,
            state,
            server,
            thread: Some(thread),
        };
        attic.create_cache("main");
        attic
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn create_cache(&self, name: &str) {
        add_cache(&mut self.state.lock().unwrap(), name);
    }

    /// The caches the server has now.
    pub fn cache_names(&self) -> Vec<String> {
        self.state.lock().unwrap().caches.keys().cloned().collect()
    }

    /// `name:base64`, as cache-config answers it.
    pub fn public_key(&self, cache: &str) -> String {
        let state = self.state.lock().unwrap();
        let c = &state.caches[cache];
        format!(
            "{}:{}",
            c.key_name,
            base64::engine::general_purpose::STANDARD.encode(c.key.verifying_key().as_bytes())
        )
    }

    /// A new token with these grants, e.g. `[("main", Grant { pull: true, push: false })]`.
    pub fn token(&self, grants: &[(&str, Grant)]) -> String {
        let mut state = self.state.lock().unwrap();
        let token = format!(
            "attic-test-token-{}-{}",
            state.tokens.len(),
            std::process::id()
        );
        state.tokens.insert(
            token.clone(),
            grants
                .iter()
                .map(|(c, g)| (c.to_string(), g.clone()))
                .collect(),
        );
        token
    }

    pub fn corrupt_uploads(&self, on: bool) {
        self.state.lock().unwrap().corrupt_uploads = on;
    }

    pub fn counts<R>(&self, read: impl FnOnce(&Counts) -> R) -> R {
        read(&self.state.lock().unwrap().counts)
    }

    /// Store paths whose narinfo the cache serves.
    pub fn narinfo_files(&self, cache: &str) -> Vec<PathBuf> {
        let dir = self.state.lock().unwrap().root.join(cache);
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "narinfo"))
            .collect();
        files.sort();
        files
    }
}

impl Drop for AtticServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Answer = (u16, Vec<u8>, &'static str);

fn add_cache(state: &mut State, name: &str) {
    let seed: [u8; 32] = Sha256::digest(name.as_bytes()).into();
    std::fs::create_dir_all(state.root.join(name).join("nar")).unwrap();
    state.caches.insert(
        name.to_string(),
        Cache {
            key_name: format!("{name}-attic-test"),
            key: SigningKey::from_bytes(&seed),
        },
    );
}

/// Creating or destroying a cache: a push grant on its name (or `*`), else 401.
fn may_manage(state: &State, token: Option<&str>, cache: &str) -> bool {
    token
        .and_then(|t| state.tokens.get(t))
        .and_then(|g| g.get(cache).or_else(|| g.get("*")))
        .is_some_and(|g| g.push)
}

fn json_error(code: u16, error: &str, message: &str) -> Answer {
    let body = serde_json::json!({"code": code, "error": error, "message": message});
    (code, body.to_string().into_bytes(), "application/json")
}

fn json(value: serde_json::Value) -> Answer {
    (200, value.to_string().into_bytes(), "application/json")
}

fn handle(state: &Mutex<State>, mut request: tiny_http::Request) {
    let method = request.method().to_string();
    let url = request.url().to_string();
    let header = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_string())
    };
    let token = header("Authorization").and_then(|value| {
        let (scheme, rest) = value.split_once(' ')?;
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => Some(rest.to_string()),
            "basic" => {
                let pair = base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .ok()?;
                let pair = String::from_utf8(pair).ok()?;
                Some(pair.split_once(':')?.1.to_string())
            }
            _ => None,
        }
    });
    let nar_info_header = header("X-Attic-Nar-Info");
    let preamble_size = header("X-Attic-Nar-Info-Preamble-Size");
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    let answer = {
        let mut state = state.lock().unwrap();
        let answer = route(
            &mut state,
            &method,
            &url,
            token.as_deref(),
            nar_info_header,
            preamble_size,
            body,
        );
        state
            .counts
            .log
            .push(format!("{method} {url} -> {}", answer.0));
        answer
    };
    let (status, bytes, content_type) = answer;
    let response = tiny_http::Response::new(
        status.into(),
        vec![tiny_http::Header::from_bytes("Content-Type", content_type).unwrap()],
        Cursor::new(bytes.clone()),
        Some(bytes.len()),
        None,
    );
    let _ = request.respond(response);
}

/// Checks `permission` on `cache` as Attic does: 401 when the token may not even see the
/// cache (or there is no token), 404 for a missing cache it may see, 403 otherwise.
fn authorise(state: &State, token: Option<&str>, cache: &str, push: bool) -> Result<(), Answer> {
    let grants = token.and_then(|t| state.tokens.get(t));
    let grant = grants.and_then(|g| g.get(cache).or_else(|| g.get("*")));
    let Some(grant) = grant.filter(|g| g.pull || g.push) else {
        return Err(json_error(401, "Unauthorized", "Unauthorized."));
    };
    if !state.caches.contains_key(cache) {
        return Err(json_error(
            404,
            "NoSuchCache",
            "The requested cache does not exist.",
        ));
    }
    if (push && !grant.push) || (!push && !grant.pull) {
        return Err(json_error(
            403,
            "AccessError",
            "Access error: User does not have permission to complete this action.",
        ));
    }
    Ok(())
}

fn route(
    state: &mut State,
    method: &str,
    url: &str,
    token: Option<&str>,
    nar_info_header: Option<String>,
    preamble_size: Option<String>,
    body: Vec<u8>,
) -> Answer {
    let path = url.split('?').next().unwrap_or(url);
    match (method, path) {
        ("GET", p) if p.starts_with("/_api/v1/cache-config/") => {
            let cache = &p["/_api/v1/cache-config/".len()..];
            if let Err(e) = authorise(state, token, cache, false) {
                return e;
            }
            let c = &state.caches[cache];
            json(serde_json::json!({
                "public_key": format!("{}:{}", c.key_name, base64::engine::general_purpose::STANDARD.encode(c.key.verifying_key().as_bytes())),
                "is_public": false,
                "store_dir": "/nix/store",
                "priority": 41,
                "upstream_cache_key_names": [],
            }))
        }
        ("POST", p) if p.starts_with("/_api/v1/cache-config/") => {
            let cache = &p["/_api/v1/cache-config/".len()..];
            if !may_manage(state, token, cache) {
                return json_error(401, "Unauthorized", "Unauthorized.");
            }
            if state.caches.contains_key(cache) {
                return json_error(400, "CacheAlreadyExists", "The cache already exists.");
            }
            add_cache(state, cache);
            json(serde_json::json!({}))
        }
        ("DELETE", p) if p.starts_with("/_api/v1/cache-config/") => {
            let cache = &p["/_api/v1/cache-config/".len()..];
            if !may_manage(state, token, cache) {
                return json_error(401, "Unauthorized", "Unauthorized.");
            }
            if state.caches.remove(cache).is_none() {
                return json_error(404, "NoSuchCache", "The requested cache does not exist.");
            }
            // Attic keeps the NARs (deduplicated across caches) until garbage collection.
            let _ = std::fs::remove_dir_all(state.root.join(cache));
            json(serde_json::json!({}))
        }
        ("POST", "/_api/v1/get-missing-paths") => {
            state.counts.missing_queries += 1;
            let Ok(ask) = serde_json::from_slice::<serde_json::Value>(&body) else {
                return json_error(400, "RequestError", "General request error: bad JSON");
            };
            let cache = ask["cache"].as_str().unwrap_or_default().to_string();
            if let Err(e) = authorise(state, token, &cache, true) {
                return e;
            }
            let missing: Vec<&str> = ask["store_path_hashes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|h| h.as_str())
                .filter(|h| {
                    !state
                        .root
                        .join(&cache)
                        .join(format!("{h}.narinfo"))
                        .exists()
                })
                .collect();
            json(serde_json::json!({ "missing_paths": missing }))
        }
        ("PUT", "/_api/v1/upload-path") => {
            state.counts.puts += 1;
            upload(state, token, nar_info_header, preamble_size, body)
        }
        ("GET", p) => serve_cache(state, token, p),
        _ => json_error(404, "NotFound", "The URL you requested was not found."),
    }
}

fn upload(
    state: &mut State,
    token: Option<&str>,
    nar_info_header: Option<String>,
    preamble_size: Option<String>,
    body: Vec<u8>,
) -> Answer {
    let bad = |m: &str| json_error(400, "RequestError", &format!("General request error: {m}"));
    let (info_bytes, mut nar) = match (preamble_size, nar_info_header) {
        (Some(size), _) => {
            let Ok(size) = size.parse::<usize>() else {
                return bad("X-Attic-Nar-Info-Preamble-Size must be a valid unsigned integer");
            };
            if size > body.len() {
                return bad("Upload info doesn't match specified size");
            }
            let mut body = body;
            let nar = body.split_off(size);
            (body, nar)
        }
        (None, Some(header)) => (header.into_bytes(), body),
        (None, None) => return bad("X-Attic-Nar-Info must be set"),
    };
    let Ok(info) = serde_json::from_slice::<serde_json::Value>(&info_bytes) else {
        return bad("the NAR info is not JSON");
    };
    let cache = info["cache"].as_str().unwrap_or_default().to_string();
    if let Err(e) = authorise(state, token, &cache, true) {
        return e;
    }
    let (Some(store_path), Some(hash_part), Some(claimed), Some(nar_size)) = (
        info["store_path"].as_str(),
        info["store_path_hash"].as_str(),
        info["nar_hash"].as_str().and_then(parse_hash),
        info["nar_size"].as_u64(),
    ) else {
        return bad("the NAR info lacks a field or has a bad hash");
    };
    if !store_path.starts_with(&format!("/nix/store/{hash_part}-")) {
        return bad("store_path does not match store_path_hash");
    }
    if state.corrupt_uploads {
        if let Some(byte) = nar.get_mut(0) {
            *byte ^= 0xff;
        }
    }
    let actual: [u8; 32] = Sha256::digest(&nar).into();
    if actual != claimed || nar.len() as u64 != nar_size {
        return bad("Bad NAR Hash or Size");
    }
    let hash32 = nix32(&actual);
    let dir = state.root.join(&cache);
    let nar_file = dir.join("nar").join(format!("{hash32}.nar"));
    let deduplicated = !state.nars.insert(hash32.clone());
    std::fs::write(&nar_file, &nar).unwrap();
    // Stored and served as sent, as Attic does: base names make a valid narinfo.
    let references: Vec<&str> = info["references"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .collect();
    let full: Vec<String> = references
        .iter()
        .map(|r| format!("/nix/store/{r}"))
        .collect();
    let narinfo_hash = format!("sha256:{hash32}");
    let fingerprint = format!(
        "1;{store_path};{narinfo_hash};{nar_size};{}",
        full.join(",")
    );
    let key = &state.caches[&cache];
    let sig = base64::engine::general_purpose::STANDARD
        .encode(key.key.sign(fingerprint.as_bytes()).to_bytes());
    let mut narinfo = format!(
        "StorePath: {store_path}\nURL: nar/{hash32}.nar\nCompression: none\nFileHash: {narinfo_hash}\nFileSize: {nar_size}\nNarHash: {narinfo_hash}\nNarSize: {nar_size}\nReferences: {}\n",
        references.join(" ")
    );
    if let Some(deriver) = info["deriver"].as_str() {
        narinfo.push_str(&format!("Deriver: {deriver}\n"));
    }
    narinfo.push_str(&format!("Sig: {}:{sig}\n", key.key_name));
    if let Some(ca) = info["ca"].as_str() {
        narinfo.push_str(&format!("CA: {ca}\n"));
    }
    std::fs::write(dir.join(format!("{hash_part}.narinfo")), narinfo).unwrap();
    json(serde_json::json!({
        "kind": if deduplicated { "Deduplicated" } else { "Uploaded" },
        "file_size": nar.len(),
        "frac_deduplicated": if deduplicated { 1.0 } else { 0.0 },
    }))
}

fn serve_cache(state: &State, token: Option<&str>, path: &str) -> Answer {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (cache, rest) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if let Err(e) = authorise(state, token, cache, false) {
        return e;
    }
    if rest == "nix-cache-info" {
        return (
            200,
            b"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 41\n".to_vec(),
            "text/x-nix-cache-info",
        );
    }
    let file = state.root.join(cache).join(rest);
    let served = (rest.ends_with(".narinfo") || rest.starts_with("nar/"))
        && !rest.contains("..")
        && file.is_file();
    match std::fs::read(&file) {
        Ok(bytes) if served => (200, bytes, "application/octet-stream"),
        _ => json_error(404, "NoSuchObject", "The requested object does not exist."),
    }
}
