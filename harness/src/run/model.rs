//! `flywheel-bench model`: the effects around `plan::model`: reading the coverage or shape
//! file, and writing the model's files, each atomically, into the output folder and
//! nowhere else.

use std::path::{Path, PathBuf};

use crate::error::{exit_code, Error, IoContext, Result};
use crate::plan::model::{
    generate, read_shape, repo_name, shape_of_store_paths, Model, ModelOptions, ShapeInput,
};
use crate::stats::numbers;

/// A coverage or shape file is never larger than this.
const MAX_INPUT_BYTES: u64 = 256 << 20;
/// The first line of a model's repo.toml: a folder holding it may be written over.
const MARK: &str = "# Written by `flywheel-bench model`";

/// What `model` was asked.
pub struct Request {
    pub input: PathBuf,
    pub output: PathBuf,
    pub repo: Option<String>,
    pub name: Option<String>,
    pub scale: f64,
    pub compressible: f64,
    pub max_mb: u64,
}

/// The model `request` asks for, from its input file; nothing is written.
fn make(request: &Request) -> Result<(Model, ModelOptions)> {
    let file = request.input.display().to_string();
    let text = crate::boundary::read_text(&request.input, MAX_INPUT_BYTES).map_err(|why| {
        Error::Usage(format!(
            "{file} {why}\n  fix: pass a coverage file (`flywheel-bench coverage --output`) or a shape file"
        ))
    })?;
    let input = match read_shape(&text, &file, request.repo.as_deref()) {
        Ok(input) => input,
        Err(why) => store_paths(&text, &file)
            .filter(|_| request.repo.is_none())
            .ok_or_else(|| Error::Usage(format!("{file} {why}")))?,
    };
    let options = ModelOptions {
        name: request.name.clone().unwrap_or(input.default_name),
        scale: request.scale,
        compressible: request.compressible,
        max_bytes: request.max_mb.saturating_mul(1 << 20),
        origin: input.origin,
    };
    let model =
        generate(&input.shape, &options).map_err(|why| Error::Usage(format!("{file}: {why}")))?;
    Ok((model, options))
}

/// The shape of `nix path-info --json -r` output (any Nix version's form), if `text` is one:
/// what a team can record from its cache without the harness (`--store URL`).
fn store_paths(text: &str, file: &str) -> Option<ShapeInput> {
    let details = crate::tools::nix_log::parse_path_details(text).ok()?;
    let stem = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let paths = details
        .into_iter()
        .map(|d| (d.path, d.nar_size, d.references))
        .collect();
    Some(ShapeInput {
        shape: shape_of_store_paths(paths, format!("`nix path-info --json -r` in {file}")),
        origin: format!("the store paths of `nix path-info --json -r` in {file}"),
        default_name: repo_name(&format!("model-{stem}")),
    })
}

/// Reads the shape, makes the model and writes it; prints what was written.
pub fn run(request: &Request) -> Result<i32> {
    let (model, options) = make(request)?;
    check_folder(&request.output)?;
    std::fs::create_dir_all(&request.output)
        .context(|| format!("creating {}", request.output.display()))?;
    // The manifest last: a folder left half-written by an interruption is no bench repo.
    let (manifest, rest): (Vec<_>, Vec<_>) =
        model.files.iter().partition(|f| f.name == "repo.toml");
    for f in rest.iter().chain(&manifest) {
        crate::results::writer::write_atomic(&request.output.join(f.name), f.contents.as_bytes())?;
    }
    println!(
        "model {}: {} paths, {} references, {} of NARs (scale {} of {}), in {}",
        options.name,
        model.paths,
        model.references,
        numbers::bytes(model.nar_bytes),
        options.scale,
        numbers::bytes(model.original_nar_bytes),
        request.output.display()
    );
    for note in &model.notes {
        println!("  note: {note}");
    }
    println!(
        "  bench it: flywheel-bench run --repo {} --system nix",
        request.output.display()
    );
    Ok(exit_code::OK)
}

/// The output must be a folder (or nothing yet) that is empty or holds an earlier model:
/// never a link, a file, or someone's other files.
fn check_folder(dir: &Path) -> Result<()> {
    let refuse = |why: String| {
        Error::Usage(format!(
            "-o {}: {why}\n  fix: name a new or empty folder (or one an earlier `model` wrote)",
            dir.display()
        ))
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refuse(format!("cannot be checked: {e}"))),
    };
    if !meta.is_dir() {
        return Err(refuse(format!(
            "is {}, not a folder",
            crate::boundary::kind_of(&meta)
        )));
    }
    let mut entries = std::fs::read_dir(dir).context(|| format!("listing {}", dir.display()))?;
    if entries.next().is_none() {
        return Ok(());
    }
    let manifest = dir.join("repo.toml");
    let is_model =
        crate::boundary::read_text(&manifest, 1 << 20).is_ok_and(|text| text.starts_with(MARK));
    if is_model {
        Ok(())
    } else {
        Err(refuse("holds files, and no model's repo.toml".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::coverage::{store_path_name, ClosureShape};

    fn request(input: &Path, output: &Path) -> Request {
        Request {
            input: input.to_path_buf(),
            output: output.to_path_buf(),
            repo: None,
            name: None,
            scale: 1.0,
            compressible: 0.0,
            max_mb: 100,
        }
    }

    const SHAPE: &str = r#"{"roots": ["/nix/store/00000000000000000000000000000000-app"],
      "paths": [
        {"name": "app", "path": "/nix/store/00000000000000000000000000000000-app", "nar_size": 4096,
         "references": ["/nix/store/11111111111111111111111111111111-lib"], "source": "team"},
        {"name": "lib", "path": "/nix/store/11111111111111111111111111111111-lib", "nar_size": 9000}]}"#;

    #[test]
    fn writes_a_bench_repo_into_the_folder_only_and_over_an_earlier_model() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("shape.json");
        std::fs::write(&input, SHAPE).unwrap();
        let out = tmp.path().join("out");
        assert_eq!(run(&request(&input, &out)).unwrap(), 0);
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "datagen.c",
                "default.nix",
                "nodes.json",
                "repo.toml",
                "shape.json"
            ]
        );
        let manifest = crate::plan::manifest::load(&out.join("repo.toml")).unwrap();
        assert_eq!(manifest.name, "model-shape");
        let mut outside: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        outside.sort();
        assert_eq!(outside, ["out", "shape.json"], "nothing beside the folder");
        // Again over itself, with another name.
        let again = Request {
            name: Some("mine".into()),
            ..request(&input, &out)
        };
        run(&again).unwrap();
        assert_eq!(
            crate::plan::manifest::load(&out.join("repo.toml"))
                .unwrap()
                .name,
            "mine"
        );
    }

    #[test]
    fn the_committed_model_is_what_model_makes_of_the_committed_coverage() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/evidence/model");
        // As results/evidence/model/README.md says it was made.
        let request = Request {
            input: dir.join("coverage-fixture-c-dag-realistic.json"),
            output: dir.join("realistic"),
            repo: None,
            name: Some("model-realistic".into()),
            scale: 0.5,
            compressible: 0.33,
            max_mb: 2048,
        };
        let (model, _) = make(&request).unwrap();
        assert_eq!((model.paths, model.references), (301, 300));
        for f in &model.files {
            let committed =
                std::fs::read_to_string(request.output.join(f.name)).unwrap_or_default();
            assert!(
                committed == f.contents,
                "results/evidence/model/realistic/{} is stale: rerun the `model` command of results/evidence/model/README.md",
                f.name
            );
        }
    }

    #[test]
    fn nix_path_info_of_a_closure_is_a_shape() {
        // Recorded with Nix 2.26.3 (the object form): refs-app -> refs-lib -> {data, note}.
        let input = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/nix-2.26.3/path-info-closure-r.json");
        let tmp = tempfile::tempdir().unwrap();
        let (model, options) = make(&request(&input, tmp.path())).unwrap();
        assert_eq!((model.paths, model.references), (4, 3));
        assert_eq!(options.name, "model-path-info-closure-r");
        let shape: ClosureShape = serde_json::from_str(
            &model
                .files
                .iter()
                .find(|f| f.name == "shape.json")
                .unwrap()
                .contents,
        )
        .unwrap();
        let names = |paths: &[String]| -> Vec<String> {
            paths
                .iter()
                .map(|p| store_path_name(p).to_string())
                .collect()
        };
        assert_eq!(names(&shape.roots), ["refs-app"]);
        let lib = shape.paths.iter().find(|p| p.name == "refs-lib").unwrap();
        assert_eq!(names(&lib.references), ["refs-data", "refs-note"]);
        assert_eq!(lib.nar_size, Some(400));
        assert!(make(&Request {
            repo: Some("x".into()),
            ..request(&input, tmp.path())
        })
        .is_err());
    }

    #[test]
    fn refuses_folders_of_other_files_links_and_bad_input_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("shape.json");
        std::fs::write(&input, SHAPE).unwrap();
        let busy = tmp.path().join("busy");
        std::fs::create_dir(&busy).unwrap();
        std::fs::write(busy.join("notes.txt"), "mine").unwrap();
        let e = run(&request(&input, &busy)).unwrap_err().to_string();
        assert!(
            e.contains("no model's repo.toml") && e.contains("fix:"),
            "{e}"
        );
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&busy, &link).unwrap();
        assert!(run(&request(&input, &link))
            .unwrap_err()
            .to_string()
            .contains("not a folder"));
        let small = Request {
            max_mb: 0,
            ..request(&input, &tmp.path().join("new"))
        };
        let e = run(&small).unwrap_err();
        assert_eq!(e.exit_code(), exit_code::INVALID_INPUT);
        assert!(
            e.to_string().starts_with(&format!("{}: ", input.display())),
            "{e}"
        );
        assert!(
            !tmp.path().join("new").exists(),
            "nothing written for a refused shape"
        );
        let e = run(&request(
            &tmp.path().join("absent.json"),
            &tmp.path().join("x"),
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("absent.json cannot read it") && e.contains("fix:"),
            "{e}"
        );
        // A device is refused before it is read, so nothing blocks or fills memory.
        let e = run(&request(Path::new("/dev/zero"), &tmp.path().join("x")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
