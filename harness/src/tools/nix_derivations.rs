//! A pure parser of `nix show-derivation` (Nix 2.8 to 2.14) and `nix derivation show`
//! (2.15 on), with or without `-r`: each derivation's name, output paths and input
//! derivations, in the shape of any of those versions.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::results::coverage::Derivation;
use crate::tools::build_graph::{BuildGraph, Step};
use crate::tools::nix_log::{store_name, NixVersion};

const STORE_DIR: &str = "/nix/store/";

/// `nix derivation show` replaced `nix show-derivation` in this version.
pub const DERIVATION_SHOW: NixVersion = NixVersion::new(2, 15, 0);

/// The words of the command that prints derivations as JSON, for this Nix.
pub fn show_command(version: Option<NixVersion>) -> &'static [&'static str] {
    match version {
        Some(v) if v < DERIVATION_SHOW => &["show-derivation"],
        _ => &["derivation", "show"],
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDerivation {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    outputs: BTreeMap<String, RawOutput>,
    /// 2.8: `{drv: ["out"]}`; 2.18 on: `{drv: {"outputs": ["out"], "dynamicOutputs": {}}}`.
    #[serde(default)]
    input_drvs: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct RawOutput {
    #[serde(default)]
    path: Option<String>,
}

/// A full store path, whether Nix printed it whole or as a base name.
fn full_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{STORE_DIR}{path}")
    }
}

/// The output names of an `inputDrvs` value: `["out"]` (2.8), or
/// `{"outputs": ["out"], ...}` (2.18 on).
fn output_names(used: &serde_json::Value) -> Vec<String> {
    used.get("outputs")
        .unwrap_or(used)
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.as_str().map(str::to_string))
        .collect()
}

/// Every derivation the command printed, ordered by path.
pub fn parse_derivations(stdout: &str) -> Result<Vec<Derivation>, String> {
    let raw: BTreeMap<String, RawDerivation> =
        serde_json::from_str(stdout.trim()).map_err(|e| {
            format!(
                "unexpected `nix derivation show` output (an object of derivations keyed by store path: {e}): {:.200}",
                stdout.trim()
            )
        })?;
    Ok(raw
        .into_iter()
        .map(|(drv, raw)| {
            let drv = full_path(&drv);
            let name = raw
                .name
                .or_else(|| {
                    raw.env
                        .get("name")
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| store_name(&drv).to_string());
            Derivation {
                name,
                outputs: raw
                    .outputs
                    .into_iter()
                    .map(|(output, o)| (output, o.path.as_deref().map(full_path)))
                    .collect(),
                input_drvs: raw
                    .input_drvs
                    .iter()
                    .map(|(d, used)| (full_path(d), output_names(used)))
                    .collect(),
                drv,
            }
        })
        .collect())
}

/// The derivations as build steps: each reads the outputs of its input derivations it
/// uses and writes its own, with their NAR hashes where `nar_hashes` (a store's path
/// info) has them.
pub fn build_graph(
    derivations: &[Derivation],
    nar_hashes: &BTreeMap<String, String>,
) -> BuildGraph {
    let by_drv: BTreeMap<&str, &Derivation> =
        derivations.iter().map(|d| (d.drv.as_str(), d)).collect();
    let digest = |path: &str| (path.to_string(), nar_hashes.get(path).cloned());
    let steps = derivations
        .iter()
        .map(|d| Step {
            key: d.drv.clone(),
            name: d.drv.clone(),
            inputs: d
                .input_drvs
                .iter()
                .filter_map(|(drv, used)| Some((by_drv.get(drv.as_str())?, used)))
                .flat_map(|(input, used)| {
                    used.iter()
                        .filter_map(|o| input.outputs.get(o).cloned().flatten())
                })
                .map(|path| digest(&path))
                .collect(),
            outputs: d.outputs.values().flatten().map(|p| digest(p)).collect(),
        })
        .collect();
    BuildGraph { steps }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::fixture;

    #[test]
    fn the_same_closure_from_2_8_and_2_26() {
        // Recorded: `nix show-derivation -r` (2.8) and `nix derivation show -r` (2.26.3) of
        // tests/fixtures/nix/closure/refs.nix, instantiated into a private store.
        let old = parse_derivations(&fixture("nix/closure/show-derivation-r.json")).unwrap();
        let new = parse_derivations(&fixture("nix-2.26.3/derivation-show-r.json")).unwrap();
        assert_eq!(old, new);
        assert_eq!(old.len(), 3, "the text file is a source, not a derivation");
        let app = old.iter().find(|d| d.name == "refs-app").unwrap();
        assert_eq!(
            app.drv,
            "/nix/store/gxpy704209cr5i2s1f457v09b4sp2i76-refs-app.drv"
        );
        assert_eq!(
            app.outputs["out"].as_deref(),
            Some("/nix/store/azc43fg06314dxn6ia2l9aanzl32bb6v-refs-app")
        );
        assert_eq!(
            app.input_drvs,
            BTreeMap::from([(
                "/nix/store/p3nbzs8m68nqizk1h71jzdl8m028i6dv-refs-lib.drv".to_string(),
                vec!["out".to_string()]
            )])
        );
        let lib = old.iter().find(|d| d.name == "refs-lib").unwrap();
        assert_eq!(lib.input_drvs.len(), 1);
        // Without -r: the targets alone.
        for roots in [
            parse_derivations(&fixture("nix/closure/show-derivation.json")).unwrap(),
            parse_derivations(&fixture("nix-2.26.3/derivation-show.json")).unwrap(),
        ] {
            assert_eq!(roots.len(), 1);
            assert_eq!(roots[0].drv, app.drv);
        }
    }

    #[test]
    fn a_closure_becomes_steps_that_read_their_inputs_outputs() {
        let closure = parse_derivations(&fixture("nix/closure/show-derivation-r.json")).unwrap();
        let app_out = "/nix/store/azc43fg06314dxn6ia2l9aanzl32bb6v-refs-app";
        let hashes = BTreeMap::from([(app_out.to_string(), "sha256:app".to_string())]);
        let graph = build_graph(&closure, &hashes);
        assert_eq!(graph.steps.len(), 3);
        let app = graph
            .steps
            .iter()
            .find(|s| s.key.ends_with("-refs-app.drv"))
            .unwrap();
        assert_eq!(app.outputs[app_out].as_deref(), Some("sha256:app"));
        let (lib_out, lib_hash) = app.inputs.iter().next().unwrap();
        assert!(lib_out.ends_with("-refs-lib"), "{lib_out}");
        assert_eq!(*lib_hash, None, "not in that store");
        assert_eq!(graph.depths()[app_out], 0);
        assert_eq!(graph.outputs().len(), 1);
    }

    #[test]
    fn base_names_and_floating_outputs() {
        let text = r#"{"abc-x.drv":{"outputs":{"out":{"path":"def-x"},"dev":{}},"inputDrvs":{"ghi-y.drv":{"outputs":["out"]}},"env":{}}}"#;
        let d = &parse_derivations(text).unwrap()[0];
        assert_eq!(d.drv, "/nix/store/abc-x.drv");
        assert_eq!(d.name, "x");
        assert_eq!(d.outputs["out"].as_deref(), Some("/nix/store/def-x"));
        assert_eq!(d.outputs["dev"], None);
        assert_eq!(
            d.input_drvs,
            BTreeMap::from([("/nix/store/ghi-y.drv".to_string(), vec!["out".to_string()])])
        );
        assert!(parse_derivations("[]")
            .unwrap_err()
            .contains("derivation show"));
    }

    #[test]
    fn the_command_follows_the_version() {
        assert_eq!(
            show_command(Some(NixVersion::new(2, 8, 0))),
            ["show-derivation"]
        );
        assert_eq!(
            show_command(Some(NixVersion::new(2, 26, 3))),
            ["derivation", "show"]
        );
        assert_eq!(show_command(None), ["derivation", "show"]);
    }
}
