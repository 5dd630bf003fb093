//! Attic's own API (`{endpoint}/_api/v1/...`), as its server implements it: cache-config
//! (needs pull; creating and destroying a cache, for `fill` samples' fresh caches, need
//! create-cache and destroy-cache), get-missing-paths and upload-path (need push), with the
//! token as a bearer credential. A refusal becomes an error that names the request, the permission it needs
//! and the fix. The token goes into a header only, never into an error.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::exec::http::{Auth, Body, Client, Method, Request, Response};
use crate::tools::hex;
use crate::tools::nix_log::PathDetails;

/// Each metadata request (cache-config, get-missing-paths) may take this long.
pub const API_TIMEOUT: Duration = Duration::from_secs(60);
/// NAR info JSON this long or longer goes in the body's preamble, not a header (as
/// Attic's own client decides).
pub const PREAMBLE_THRESHOLD: usize = 4 * 1024;
const NAR_INFO_HEADER: &str = "x-attic-nar-info";
const PREAMBLE_SIZE_HEADER: &str = "x-attic-nar-info-preamble-size";

/// The API request an answer belongs to, for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    CacheConfig,
    CreateCache,
    DestroyCache,
    GetMissingPaths,
    UploadPath,
}

impl Call {
    pub fn describe(self) -> &'static str {
        match self {
            Call::CacheConfig => "GET /_api/v1/cache-config",
            Call::CreateCache => "POST /_api/v1/cache-config",
            Call::DestroyCache => "DELETE /_api/v1/cache-config",
            Call::GetMissingPaths => "POST /_api/v1/get-missing-paths",
            Call::UploadPath => "PUT /_api/v1/upload-path",
        }
    }

    /// The permission Attic checks for this request.
    pub fn permission(self) -> &'static str {
        match self {
            Call::CacheConfig => "pull",
            Call::CreateCache => "create-cache",
            Call::DestroyCache => "destroy-cache",
            Call::GetMissingPaths | Call::UploadPath => "push",
        }
    }
}

/// Attic's error answer: `{"code": 403, "error": "AccessError", "message": "..."}`.
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    message: String,
}

/// What a refused request means, for a person: the request, the permission it needs, the
/// server's own words and the fix. Pure.
pub fn refusal(call: Call, answer: &Response, cache: &str, endpoint: &Url) -> String {
    let parsed: Option<ErrorAnswer> = serde_json::from_slice(&answer.body).ok();
    let said = match &parsed {
        Some(e) if e.message.is_empty() => e.error.clone(),
        Some(e) => format!("{}: {}", e.error, e.message.trim()),
        None => {
            let text = answer.text();
            let text = text.trim();
            if text.is_empty() {
                "no reason given".into()
            } else {
                format!("{text:.200}")
            }
        }
    };
    let (what, permission) = (call.describe(), call.permission());
    let read_only = if permission == "push" {
        ", or measure read-only (--no-fill, or fill = false in the profile), which needs pull only"
    } else {
        ""
    };
    match answer.status {
        401 => format!(
            "Attic answered {what} for cache `{cache}` with 401 Unauthorized ({said}): the token may not {permission} there (Attic answers 401 when the token has no permission on the cache at all, and when the cache does not exist)\n  fix: use a token with {permission} permission on `{cache}` (e.g. `atticadm make-token --{permission} {cache}`) and check nix.cache{read_only}"
        ),
        403 => format!(
            "Attic answered {what} for cache `{cache}` with 403 Forbidden ({said}): the token may see the cache but lacks {permission} permission\n  fix: use a token with {permission} permission on `{cache}` (e.g. `atticadm make-token --{permission} {cache}`){read_only}"
        ),
        404 if parsed.as_ref().is_some_and(|e| e.error == "NoSuchCache") => format!(
            "the Attic cache `{cache}` does not exist on {endpoint} ({what} answered 404 {said})\n  fix: check nix.cache (`attic cache info {cache}`), or create the cache"
        ),
        404 => format!(
            "{endpoint} does not serve Attic's API ({what} answered 404: {said})\n  fix: nix.endpoint must be the Attic server's root URL, without the cache name"
        ),
        status => format!("Attic answered {what} for cache `{cache}` with {status} ({said})"),
    }
}

/// The cache's configuration, as `GET cache-config` gives it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CacheConfig {
    /// `name:base64`, the key that signs the cache's narinfos.
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub is_public: Option<bool>,
}

/// The NAR info of one upload, as `X-Attic-Nar-Info` carries it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UploadInfo {
    pub cache: String,
    pub store_path_hash: String,
    pub store_path: String,
    /// Base names (`<hash>-<name>`), as Attic's own client sends them: its server puts them
    /// as they are into the narinfo's `References:` line, where Nix refuses full paths.
    pub references: Vec<String>,
    pub system: Option<String>,
    /// The derivation's base name.
    pub deriver: Option<String>,
    pub sigs: Vec<String>,
    pub ca: Option<String>,
    /// `sha256:` and 64 hex digits.
    pub nar_hash: String,
    pub nar_size: u64,
}

impl UploadInfo {
    /// The upload of `path` as `nix path-info --json` described it. Pure.
    pub fn new(cache: &str, path: &PathDetails) -> Result<UploadInfo, String> {
        Ok(UploadInfo {
            cache: cache.to_string(),
            store_path_hash: store_path_hash(&path.path)?,
            store_path: path.path.clone(),
            references: path.references.iter().map(|r| base_name(r)).collect(),
            system: None,
            deriver: path.deriver.as_deref().map(base_name),
            sigs: path.signatures.clone(),
            ca: path.ca.clone(),
            nar_hash: nar_hash_hex(&path.nar_hash)?,
            nar_size: path.nar_size.ok_or_else(|| {
                format!("`nix path-info --json` gave no narSize for {}", path.path)
            })?,
        })
    }

    /// The headers and the body preamble that carry this NAR info: a header when short,
    /// a preamble of the body (with its size in a header) from 4 KiB on.
    pub fn encode(&self) -> (Vec<(&'static str, String)>, Vec<u8>) {
        let json = serde_json::to_string(self).expect("NAR info serialises");
        if json.len() >= PREAMBLE_THRESHOLD {
            (
                vec![(PREAMBLE_SIZE_HEADER, json.len().to_string())],
                json.into_bytes(),
            )
        } else {
            (vec![(NAR_INFO_HEADER, json)], Vec::new())
        }
    }
}

/// `/nix/store/<hash>-<name>` -> `<hash>-<name>`.
fn base_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// The hash part of a store path: `/nix/store/<32 chars>-name`.
pub fn store_path_hash(path: &str) -> Result<String, String> {
    let base = path.rsplit('/').next().unwrap_or(path);
    match base.split_once('-') {
        Some((hash, _)) if hash.len() == 32 && hash.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Ok(hash.to_string())
        }
        _ => Err(format!("{path} is not a store path (no 32-character hash)")),
    }
}

/// A NAR hash as Attic takes it (`sha256:` and hex), from what `nix path-info` prints (SRI
/// `sha256-<base64>`); `sha256:` hashes (hex or Nix's base32) pass as they are.
pub fn nar_hash_hex(hash: &str) -> Result<String, String> {
    if let Some(typed) = hash.strip_prefix("sha256:") {
        if typed.len() == 64 || typed.len() == 52 {
            return Ok(hash.to_string());
        }
    }
    let bytes = hash
        .strip_prefix("sha256-")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .filter(|b| b.len() == 32)
        .ok_or_else(|| format!("the NAR hash {hash:?} is not SHA-256 in SRI form"))?;
    Ok(format!("sha256:{}", hex(&bytes)))
}

/// What Attic said about one upload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UploadAnswer {
    /// `Uploaded` or `Deduplicated`.
    #[serde(default)]
    pub kind: Option<String>,
    /// The stored (compressed) size.
    #[serde(default)]
    pub file_size: Option<u64>,
    /// The share of the NAR that was already stored, 0 to 1.
    #[serde(default)]
    pub frac_deduplicated: Option<f64>,
}

/// One Attic server and cache, reached with one token.
pub struct AtticApi<'a> {
    pub client: &'a Client,
    pub endpoint: &'a Url,
    pub cache: &'a str,
    pub token: &'a str,
}

impl AtticApi<'_> {
    fn url(&self, path: &str) -> Result<Url, String> {
        let text = format!(
            "{}/_api/v1/{path}",
            self.endpoint.as_str().trim_end_matches('/')
        );
        Url::parse(&text).map_err(|e| format!("{text} is not a URL ({e})"))
    }

    /// Sends `request` for `call`; a status other than 2xx is a refusal.
    fn send(&self, call: Call, request: Request<'_>) -> Result<Response, String> {
        let answer = self
            .client
            .send(request.auth(Auth::Bearer(self.token)))
            .map_err(|e| e.to_string())?;
        if (200..300).contains(&answer.status) {
            Ok(answer)
        } else {
            Err(refusal(call, &answer, self.cache, self.endpoint))
        }
    }

    pub fn cache_config(&self) -> Result<CacheConfig, String> {
        let url = self.url(&format!("cache-config/{}", self.cache))?;
        let answer = self.send(
            Call::CacheConfig,
            Request::new(Method::Get, &url, API_TIMEOUT),
        )?;
        serde_json::from_slice(&answer.body).map_err(|e| {
            format!("{url} did not answer a cache configuration ({e}): is it an Attic server?")
        })
    }

    /// Creates the (new, private, empty) cache this API speaks to, with a key of its own.
    pub fn create_cache(&self) -> Result<(), String> {
        let url = self.url(&format!("cache-config/{}", self.cache))?;
        let body = serde_json::to_vec(&serde_json::json!({
            "keypair": "Generate",
            "is_public": false,
            "store_dir": "/nix/store",
            "priority": 41,
            "upstream_cache_key_names": [],
        }))
        .expect("the request serialises");
        self.send(
            Call::CreateCache,
            Request::new(Method::Post, &url, API_TIMEOUT).body(Body::Json(body)),
        )
        .map(drop)
    }

    /// Destroys the cache this API speaks to.
    pub fn destroy_cache(&self) -> Result<(), String> {
        let url = self.url(&format!("cache-config/{}", self.cache))?;
        self.send(
            Call::DestroyCache,
            Request::new(Method::Delete, &url, API_TIMEOUT),
        )
        .map(drop)
    }

    /// The hashes of `store_path_hashes` that the cache lacks.
    pub fn missing_paths(&self, store_path_hashes: &[String]) -> Result<Vec<String>, String> {
        #[derive(Serialize)]
        struct Ask<'a> {
            cache: &'a str,
            store_path_hashes: &'a [String],
        }
        #[derive(Deserialize)]
        struct Missing {
            missing_paths: Vec<String>,
        }
        let url = self.url("get-missing-paths")?;
        let body = serde_json::to_vec(&Ask {
            cache: self.cache,
            store_path_hashes,
        })
        .expect("the request serialises");
        let answer = self.send(
            Call::GetMissingPaths,
            Request::new(Method::Post, &url, API_TIMEOUT).body(Body::Json(body)),
        )?;
        serde_json::from_slice::<Missing>(&answer.body)
            .map(|m| m.missing_paths)
            .map_err(|e| format!("{url} answered something other than missing paths ({e})"))
    }

    /// Uploads the NAR in `nar` with its NAR info; the request may take `timeout`.
    pub fn upload(
        &self,
        info: &UploadInfo,
        nar: &Path,
        timeout: Duration,
    ) -> Result<UploadAnswer, String> {
        let url = self.url("upload-path")?;
        let (headers, prefix) = info.encode();
        let mut request = Request::new(Method::Put, &url, timeout).body(Body::File {
            prefix,
            file: nar.to_path_buf(),
        });
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let answer = self.send(Call::UploadPath, request)?;
        // Older servers answer without a body: count it as uploaded.
        Ok(
            serde_json::from_slice(&answer.body).unwrap_or(UploadAnswer {
                kind: None,
                file_size: None,
                frac_deduplicated: None,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Response {
        Response {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    fn endpoint() -> Url {
        Url::parse("https://attic.example.com/").unwrap()
    }

    #[test]
    fn refusals_name_the_permission_and_the_fix() {
        let e = refusal(
            Call::GetMissingPaths,
            &answer(
                403,
                r#"{"code":403,"error":"AccessError","message":"Access error: PermissionDenied"}"#,
            ),
            "main",
            &endpoint(),
        );
        assert!(
            e.contains("403 Forbidden") && e.contains("lacks push permission"),
            "{e}"
        );
        assert!(
            e.contains("AccessError: Access error: PermissionDenied"),
            "{e}"
        );
        assert!(
            e.contains("--no-fill"),
            "a pull-only token can still measure: {e}"
        );
        let e = refusal(
            Call::CacheConfig,
            &answer(
                401,
                r#"{"code":401,"error":"Unauthorized","message":"Unauthorized."}"#,
            ),
            "main",
            &endpoint(),
        );
        assert!(
            e.contains("may not pull") && e.contains("--pull main"),
            "{e}"
        );
        assert!(!e.contains("--no-fill"), "reading needs pull: {e}");
        let e = refusal(
            Call::CacheConfig,
            &answer(
                404,
                r#"{"code":404,"error":"NoSuchCache","message":"The requested cache does not exist."}"#,
            ),
            "nope",
            &endpoint(),
        );
        assert!(
            e.contains("the Attic cache `nope` does not exist on https://attic.example.com/"),
            "{e}"
        );
        let e = refusal(
            Call::UploadPath,
            &answer(404, "Not Found"),
            "main",
            &endpoint(),
        );
        assert!(
            e.contains("does not serve Attic's API") && e.contains("without the cache name"),
            "{e}"
        );
        let e = refusal(
            Call::UploadPath,
            &answer(
                400,
                r#"{"code":400,"error":"RequestError","message":"General request error: Bad NAR Hash or Size"}"#,
            ),
            "main",
            &endpoint(),
        );
        assert!(
            e.ends_with("with 400 (RequestError: General request error: Bad NAR Hash or Size)"),
            "{e}"
        );
        assert!(
            refusal(Call::UploadPath, &answer(502, ""), "m", &endpoint())
                .contains("no reason given")
        );
    }

    fn details() -> PathDetails {
        // From the recorded `nix path-info --json -r` (tests/fixtures/nix/closure).
        let text = crate::tools::fixture("nix/closure/path-info-r.json");
        crate::tools::nix_log::parse_path_details(&text)
            .unwrap()
            .into_iter()
            .find(|d| d.path.ends_with("-refs-app"))
            .unwrap()
    }

    #[test]
    fn nar_info_from_path_info() {
        let info = UploadInfo::new("main", &details()).unwrap();
        assert_eq!(info.store_path_hash, "azc43fg06314dxn6ia2l9aanzl32bb6v");
        // sha256sum of `nix store dump-path` of that path (recorded under 2.26.3).
        assert_eq!(
            info.nar_hash,
            "sha256:3addca41c5f55f4cd52c9c0dbace8744b226af2b3fa0da7c3be53b4aec5fa55e"
        );
        assert_eq!(info.nar_size, 336);
        assert_eq!(
            info.deriver.as_deref(),
            Some("gxpy704209cr5i2s1f457v09b4sp2i76-refs-app.drv")
        );
        assert_eq!(
            info.references,
            ["127s998hz07z025zwaqjlkqxxbvwwyyc-refs-lib"]
        );
        assert_eq!(info.sigs.len(), 1);
        let (headers, prefix) = info.encode();
        assert!(prefix.is_empty());
        assert_eq!(headers[0].0, "x-attic-nar-info");
        let json: serde_json::Value = serde_json::from_str(&headers[0].1).unwrap();
        assert_eq!(json["cache"], "main");
        assert_eq!(json["system"], serde_json::Value::Null);
        assert_eq!(json["ca"], serde_json::Value::Null);

        // Many references: the NAR info moves into the body.
        let mut big = details();
        big.references = (0..100)
            .map(|i| format!("/nix/store/{:032}-dependency-{i}", i))
            .collect();
        let (headers, prefix) = UploadInfo::new("main", &big).unwrap().encode();
        assert!(prefix.len() >= PREAMBLE_THRESHOLD);
        assert_eq!(
            headers,
            [("x-attic-nar-info-preamble-size", prefix.len().to_string())]
        );
    }

    #[test]
    fn hashes_and_paths_are_checked() {
        assert_eq!(
            nar_hash_hex("sha256:0000000000000000000000000000000000000000000000000000").unwrap(),
            "sha256:0000000000000000000000000000000000000000000000000000"
        );
        assert!(nar_hash_hex("sha512-AAAA").unwrap_err().contains("SRI"));
        assert!(nar_hash_hex("sha256-AAAA").is_err(), "too short");
        assert!(store_path_hash("/nix/store/short-x").is_err());
        let mut no_size = details();
        no_size.nar_size = None;
        assert!(UploadInfo::new("main", &no_size)
            .unwrap_err()
            .contains("narSize"));
    }
}
