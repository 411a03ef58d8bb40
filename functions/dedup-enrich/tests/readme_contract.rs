#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The README documents the contract SAM, Terraform and the Glue table are built
//! from; these tests keep it equal to the code.

use dedup_enrich::config::ENV_VARS;
use sightline_core::model::OUTPUT_COLUMNS;

fn readme() -> String {
    let path = format!("{}/../../README.md", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).expect("README.md at the workspace root")
}

/// First-column cells (backquoted) of the markdown table under `heading`.
fn table_column(text: &str, heading: &str) -> Vec<Vec<String>> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("README has `{heading}`"));
    text[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect()
}

#[test]
fn the_readme_configuration_table_lists_exactly_the_variables_the_function_reads() {
    let rows = table_column(&readme(), "## Configuration");
    let documented: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let mut want = ENV_VARS.to_vec();
    let mut got = documented.clone();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want);
    for r in &rows {
        let required = r[1] == "yes";
        let is_required =
            ["DEDUP_TABLE", "DELIVERY_STREAM", "QUARANTINE_BUCKET"].contains(&r[0].as_str());
        assert_eq!(required, is_required, "{} required column", r[0]);
    }
}

#[test]
fn the_readme_output_schema_matches_the_encoder_columns_and_types() {
    let rows = table_column(&readme(), "## Output schema");
    let documented: Vec<(String, String)> =
        rows.iter().map(|r| (r[0].clone(), r[2].clone())).collect();
    let want: Vec<(String, String)> = OUTPUT_COLUMNS
        .iter()
        .map(|(c, t)| (c.to_string(), t.to_string()))
        .collect();
    assert_eq!(documented, want);
}

/// The EMF metric names, declared once in `BatchStats`: the README's Metrics
/// section and the deployment contract (`infra/schema.json`, which the alarms
/// and dashboards are checked against) list exactly those.
#[test]
fn every_emf_metric_is_in_the_readme_and_the_deployment_contract() {
    let mut names: Vec<&str> = sightline_core::metrics::BatchStats::default()
        .metrics()
        .iter()
        .map(|(n, _, _)| *n)
        .collect();
    names.sort_unstable();
    let text = readme();
    let start = text.find("## Metrics").expect("README has ## Metrics");
    let section = &text[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut documented: Vec<&str> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
        .filter(|w| *w != "QuarantineReasons" && *w != "FunctionName" && *w != "METRICS_NAMESPACE")
        .collect();
    documented.sort_unstable();
    documented.dedup();
    assert_eq!(documented, names, "README ## Metrics");

    let path = format!("{}/../../infra/schema.json", env!("CARGO_MANIFEST_DIR"));
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("schema.json")).expect("json");
    let mut contract: Vec<&str> = schema["metrics"]["names"]
        .as_array()
        .expect("metrics.names")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    contract.sort_unstable();
    assert_eq!(contract, names, "infra/schema.json metrics.names");
}
