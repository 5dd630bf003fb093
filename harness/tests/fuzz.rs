//! Property-based fuzzing of everything the harness reads from users: repo.toml manifests,
//! bench.toml profiles and results files. Every input, random bytes or a mutation of a
//! committed example, must give a value or an error, never a panic; and a manifest built
//! from hostile paths and attributes is accepted only when nothing in it could reach a
//! tool as an option or name a path outside its source. CI runs the default
//! number of cases; `PROPTEST_CASES=100000 cargo test --release --test fuzz` runs longer.

use std::path::{Path, PathBuf};

use flywheel_bench::plan::{manifest, profile};
use flywheel_bench::results;
use proptest::prelude::*;
use proptest::test_runner::Config;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every committed repo.toml.
fn manifest_seeds() -> Vec<String> {
    let mut seeds: Vec<String> = std::fs::read_dir(repo_root().join("bench-repos"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("repo.toml"))
        .filter(|p| p.is_file())
        .map(|p| read(&p))
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 5, "the bench repos' manifests are the seeds");
    seeds
}

/// bench.toml with its commented example profile switched on, and every other backend.
fn profile_seeds() -> Vec<String> {
    let committed = read(&repo_root().join("bench.toml"));
    let uncommented: String = committed
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let others = r#"
[profiles.stores]
samples = 3
warmups = 0
lanes = ["host", "vm", "gpu"]
[profiles.stores.nix]
backend = "s3"
url = "s3://bucket?region=eu-west-1"
public_key = "k:AAAA"
secret_key_file = "/run/secrets/k"
[profiles.stores.bazel]
backend = "disk"
path = "/var/cache/bazel"
[profiles.web]
[profiles.web.nix]
backend = "http"
url = "https://cache.example.com"
public_key = "k:AAAA"
[profiles.web.bazel]
backend = "http"
url = "https://bazel.example.com:8080"
headers_env = "HEADERS"
[profiles.local.nix]
backend = "file"
path = "/srv/cache"
public_key = "k:AAAA"
[profiles.attic.nix]
backend = "attic"
endpoint = "https://attic.example.com"
cache = "main"
public_key = "main:AAAA"
token_file = "/run/secrets/attic"
"#;
    vec![committed, uncommented, others.to_string()]
}

/// The committed results files: evidence and test fixtures.
fn results_seeds() -> Vec<String> {
    let mut seeds = Vec::new();
    for dir in ["results/evidence", "harness/tests/fixtures/results"] {
        for entry in std::fs::read_dir(repo_root().join(dir)).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "json") {
                seeds.push(read(&entry.path()));
            }
        }
    }
    seeds.sort();
    seeds.dedup();
    assert!(seeds.len() >= 3, "the committed results are the seeds");
    seeds
}

/// Tokens that tend to break parsers and the code behind them.
const TOKENS: &[&str] = &[
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "'",
    "\"\"\"",
    "#",
    "\n",
    "\\",
    "\0",
    "nan",
    "inf",
    "-inf",
    "NaN",
    "-1",
    "0",
    "1e400",
    "-1e400",
    "1e-400",
    "18446744073709551616",
    "-9223372036854775809",
    "9223372036854775807",
    "true",
    "null",
    "[]",
    "{}",
    "é",
    "\u{202e}",
    "--upload-pack=touch /tmp/x",
    "ext::sh -c x",
    "..",
    "/",
    "\n[profiles.x]\n",
    "\n[source]\n",
    "\n[nix]\n",
    "\n[bazel]\n",
    "\n[parameters]\n",
    "\"schema_version\": 1",
    "\"samples\": []",
    "\"wall_s\": -1",
];

#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Duplicate { at: usize, len: usize },
    Insert { at: usize, token: usize },
    Replace { at: usize, len: usize, token: usize },
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let at = any::<usize>();
    let len = 0usize..64;
    let token = 0..TOKENS.len();
    let edit = prop_oneof![
        (at, len.clone()).prop_map(|(at, len)| Edit::Delete { at, len }),
        (at, len.clone()).prop_map(|(at, len)| Edit::Duplicate { at, len }),
        (at, token.clone()).prop_map(|(at, token)| Edit::Insert { at, token }),
        (at, len, token).prop_map(|(at, len, token)| Edit::Replace { at, len, token }),
    ];
    prop::collection::vec(edit, 1..6)
}

/// `text` with `edits` applied, at positions folded onto its char boundaries.
fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut s = text.to_string();
    let boundary = |s: &str, at: usize| {
        let mut at = at % (s.len() + 1);
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        at
    };
    for edit in edits {
        match *edit {
            Edit::Delete { at, len } => {
                let a = boundary(&s, at);
                let b = boundary(&s, a + len.min(s.len() - a));
                s.replace_range(a..b, "");
            }
            Edit::Duplicate { at, len } => {
                let a = boundary(&s, at);
                let b = boundary(&s, a + len.min(s.len() - a));
                let copy = s[a..b].to_string();
                s.insert_str(b, &copy);
            }
            Edit::Insert { at, token } => {
                let a = boundary(&s, at);
                s.insert_str(a, TOKENS[token]);
            }
            Edit::Replace { at, len, token } => {
                let a = boundary(&s, at);
                let b = boundary(&s, a + len.min(s.len() - a));
                s.replace_range(a..b, TOKENS[token]);
            }
        }
    }
    s
}

/// A replacement value for a node of a parsed example: extreme numbers, odd strings,
/// empty containers.
#[derive(Debug, Clone)]
enum Leaf {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    EmptyArray,
    EmptyTable,
    Remove,
}

fn leaves() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(i64::MIN),
            Just(i64::MAX),
            any::<i64>()
        ]
        .prop_map(Leaf::Int),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
            any::<f64>()
        ]
        .prop_map(Leaf::Float),
        any::<bool>().prop_map(Leaf::Bool),
        prop_oneof![
            (0..TOKENS.len()).prop_map(|t| TOKENS[t].to_string()),
            ".{0,40}",
        ]
        .prop_map(Leaf::Str),
        Just(Leaf::EmptyArray),
        Just(Leaf::EmptyTable),
        Just(Leaf::Remove),
    ]
}

/// Replaces (or removes) the `index`-th node, in pre-order, of a TOML document.
fn mutate_toml(text: &str, index: usize, leaf: &Leaf) -> Option<String> {
    fn walk(value: &mut toml::Value, target: &mut usize, leaf: &Leaf) -> bool {
        let children: Vec<&mut toml::Value> = match value {
            toml::Value::Table(t) => {
                if *target < t.len() && matches!(leaf, Leaf::Remove) {
                    let key = t.keys().nth(*target).cloned();
                    if let Some(key) = key {
                        t.remove(&key);
                        return true;
                    }
                }
                t.iter_mut().map(|(_, v)| v).collect()
            }
            toml::Value::Array(a) => a.iter_mut().collect(),
            _ => Vec::new(),
        };
        for child in children {
            if *target == 0 {
                *child = match leaf {
                    Leaf::Int(i) => toml::Value::Integer(*i),
                    Leaf::Float(f) => toml::Value::Float(*f),
                    Leaf::Bool(b) => toml::Value::Boolean(*b),
                    Leaf::Str(s) => toml::Value::String(s.clone()),
                    Leaf::EmptyArray => toml::Value::Array(Vec::new()),
                    Leaf::EmptyTable | Leaf::Remove => toml::Value::Table(Default::default()),
                };
                return true;
            }
            *target -= 1;
            if walk(child, target, leaf) {
                return true;
            }
        }
        false
    }
    let mut doc: toml::Value = toml::from_str(text).ok()?;
    let mut target = index;
    walk(&mut doc, &mut target, leaf);
    toml::to_string(&doc).ok()
}

/// The same for a JSON document (results files).
fn mutate_json(text: &str, index: usize, leaf: &Leaf) -> Option<String> {
    use serde_json::Value;
    fn walk(value: &mut Value, target: &mut usize, leaf: &Leaf) -> bool {
        if let (Value::Object(o), Leaf::Remove) = (&mut *value, leaf) {
            if *target < o.len() {
                if let Some(key) = o.keys().nth(*target).cloned() {
                    o.remove(&key);
                    return true;
                }
            }
        }
        let children: Vec<&mut Value> = match value {
            Value::Object(o) => o.values_mut().collect(),
            Value::Array(a) => a.iter_mut().collect(),
            _ => Vec::new(),
        };
        for child in children {
            if *target == 0 {
                *child = match leaf {
                    Leaf::Int(i) => Value::from(*i),
                    // JSON has no NaN or infinity: those become null, also worth a try.
                    Leaf::Float(f) => Value::from(*f),
                    Leaf::Bool(b) => Value::Bool(*b),
                    Leaf::Str(s) => Value::String(s.clone()),
                    Leaf::EmptyArray => Value::Array(Vec::new()),
                    Leaf::EmptyTable | Leaf::Remove => Value::Object(Default::default()),
                };
                return true;
            }
            *target -= 1;
            if walk(child, target, leaf) {
                return true;
            }
        }
        false
    }
    let mut doc: Value = serde_json::from_str(text).ok()?;
    let mut target = index;
    walk(&mut doc, &mut target, leaf);
    serde_json::to_string(&doc).ok()
}

fn parse_manifest(text: &str) {
    // The folder exists, so `path = "."` sources resolve.
    let _ = manifest::parse(text, &repo_root().join("bench-repos/fixture-cc/repo.toml"));
}

fn parse_profile(text: &str, name: &str) {
    let _ = profile::parse(text, Path::new("bench.toml"), name);
}

fn load_results(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    std::fs::write(&path, bytes).unwrap();
    if let Err(e) = results::load(&path) {
        assert!(
            e.to_string().contains("results.json"),
            "errors name the file: {e}"
        );
    }
}

const PROFILE_NAMES: &[&str] = &[
    "embedded", "flywheel", "stores", "web", "local", "attic", "x",
];

fn config(cases: u32) -> Config {
    // PROPTEST_CASES, when set, wins over the per-test default.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn manifests_from_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_manifest(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn manifests_from_mutated_examples(seed in any::<prop::sample::Index>(), edits in edits()) {
        let seeds = manifest_seeds();
        parse_manifest(&mutate(seed.get::<String>(&seeds), &edits));
    }

    #[test]
    fn manifests_with_a_node_replaced(seed in any::<prop::sample::Index>(), node in 0usize..40, leaf in leaves()) {
        let seeds = manifest_seeds();
        if let Some(text) = mutate_toml(seed.get::<String>(&seeds), node, &leaf) {
            parse_manifest(&text);
        }
    }

    #[test]
    fn profiles_from_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512), name in 0..PROFILE_NAMES.len()) {
        parse_profile(&String::from_utf8_lossy(&bytes), PROFILE_NAMES[name]);
    }

    #[test]
    fn profiles_from_mutated_examples(seed in any::<prop::sample::Index>(), edits in edits(), name in 0..PROFILE_NAMES.len()) {
        let seeds = profile_seeds();
        parse_profile(&mutate(seed.get::<String>(&seeds), &edits), PROFILE_NAMES[name]);
    }

    #[test]
    fn profiles_with_a_node_replaced(seed in any::<prop::sample::Index>(), node in 0usize..60, leaf in leaves(), name in 0..PROFILE_NAMES.len()) {
        let seeds = profile_seeds();
        if let Some(text) = mutate_toml(seed.get::<String>(&seeds), node, &leaf) {
            parse_profile(&text, PROFILE_NAMES[name]);
        }
    }
}

proptest! {
    // Loading derives statistics (bootstrap intervals) from every case: fewer, costlier cases.
    #![proptest_config(config(512))]

    #[test]
    fn results_from_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        load_results(&bytes);
    }

    #[test]
    fn results_from_mutated_examples(seed in any::<prop::sample::Index>(), edits in edits()) {
        let seeds = results_seeds();
        load_results(mutate(seed.get::<String>(&seeds), &edits).as_bytes());
    }

    #[test]
    fn results_with_a_node_replaced(seed in any::<prop::sample::Index>(), node in 0usize..4000, leaf in leaves()) {
        let seeds = results_seeds();
        if let Some(text) = mutate_json(seed.get::<String>(&seeds), node, &leaf) {
            load_results(text.as_bytes());
        }
    }
}

/// Pieces of the paths, attributes and targets a hostile manifest could name.
const PATH_PIECES: &[&str] = &[
    "..",
    ".",
    "/",
    "-",
    "--",
    "--store",
    "--disk_cache=/tmp/x",
    "#",
    ".#",
    "\"",
    "\\\"",
    "'",
    " ",
    "\t",
    "\n",
    "$",
    "@",
    ":",
    "//",
    "...",
    "a",
    "default.nix",
    "size.bzl",
    "out",
    "inside",
    "real.nix",
    "x86_64-linux",
    "é",
    "\u{202e}",
    "~",
    "*",
    "=",
    "\\",
];

/// A string of 1 to 6 pieces.
fn hostile_text() -> impl Strategy<Value = String> {
    prop::collection::vec(0..PATH_PIECES.len(), 1..6)
        .prop_map(|pieces| pieces.iter().map(|&p| PATH_PIECES[p]).collect())
}

/// A source folder with a link out of it (`out -> /etc`) and one inside (`inside ->
/// real.nix`), for manifests to name.
fn hostile_source() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("real.nix"), "{}").unwrap();
    std::fs::write(dir.path().join("default.nix"), "{}").unwrap();
    std::os::unix::fs::symlink("/etc", dir.path().join("out")).unwrap();
    std::os::unix::fs::symlink("real.nix", dir.path().join("inside")).unwrap();
    dir
}

/// What must hold of any manifest the parser accepts: nothing that reaches Nix or Bazel
/// as an argument starts with `-`, and every path it names stays inside the source.
fn assert_confined(repo: &manifest::RepoManifest, source: &Path) {
    let inside = |rel: &Path| {
        assert!(
            rel.is_relative() && !rel.components().any(|c| c.as_os_str() == ".."),
            "{}",
            rel.display()
        );
        if let Ok(real) = std::fs::canonicalize(source.join(rel)) {
            assert!(
                real.starts_with(std::fs::canonicalize(source).unwrap()),
                "{} leads to {}",
                rel.display(),
                real.display()
            );
        }
    };
    match &repo.nix {
        Some(manifest::NixTargets::File { file, attrs }) => {
            inside(file);
            assert!(attrs.iter().all(|a| !a.starts_with('-')), "{attrs:?}");
        }
        Some(manifest::NixTargets::Flake { installables }) => {
            assert!(
                installables.iter().all(|i| i == "." || i.starts_with(".#")),
                "{installables:?}"
            );
        }
        None => {}
    }
    if let Some(bazel) = &repo.bazel {
        assert!(
            bazel.targets.iter().all(|t| !t.starts_with('-')),
            "{:?}",
            bazel.targets
        );
        if let Some(file) = &bazel.parameters_file {
            inside(file);
            assert!(
                !std::fs::symlink_metadata(source.join(file))
                    .is_ok_and(|m| m.file_type().is_symlink()),
                "the parameters file is a link"
            );
        }
    }
    assert!(repo.parameters.keys().all(|k| !k.starts_with('-')));
    if let manifest::Source::Path(dir) = &repo.source {
        assert!(
            std::fs::canonicalize(dir)
                .unwrap()
                .starts_with(std::fs::canonicalize(source).unwrap()),
            "{}",
            dir.display()
        );
    }
}

fn toml_str(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn manifests_naming_hostile_paths_and_attributes(
        file in hostile_text(),
        attrs in prop::collection::vec(hostile_text(), 0..3),
        installable in hostile_text(),
        target in hostile_text(),
        parameters_file in hostile_text(),
        source_path in hostile_text(),
        program in hostile_text(),
        parameter in hostile_text(),
        flake in any::<bool>(),
    ) {
        let source = hostile_source();
        let list = |items: &[String]| format!("[{}]", items.iter().map(|i| toml_str(i)).collect::<Vec<_>>().join(", "));
        let nix = if flake {
            format!("flake = {}", list(&[installable]))
        } else {
            format!("file = {}\nattrs = {}", toml_str(&file), list(&attrs))
        };
        let text = format!(
            "name = \"h\"\ndescription = \"d\"\n[source]\npath = {}\n[parameters]\n{} = 1\n[nix]\n{nix}\n[bazel]\ntargets = {}\nparameters_file = {}\n[check]\ncommand = [{}]\n",
            toml_str(&source_path),
            toml_str(&parameter),
            list(&[target]),
            toml_str(&parameters_file),
            toml_str(&program),
        );
        if let Ok(repo) = manifest::parse(&text, &source.path().join("repo.toml")) {
            assert_confined(&repo, source.path());
        }
    }
}

#[test]
fn the_seeds_parse_unmutated() {
    for seed in manifest_seeds() {
        manifest::parse(&seed, &repo_root().join("bench-repos/fixture-cc/repo.toml")).unwrap();
    }
    let [committed, uncommented, others] = <[String; 3]>::try_from(profile_seeds()).unwrap();
    for (seed, names) in [
        (committed, &["embedded"][..]),
        (uncommented, &["embedded", "flywheel"]),
        (others, &["stores", "web", "local", "attic"]),
    ] {
        for name in names {
            profile::parse(&seed, Path::new("bench.toml"), name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    for seed in results_seeds() {
        let path = dir.path().join("r.json");
        std::fs::write(&path, seed).unwrap();
        results::load(&path).unwrap();
    }
}
