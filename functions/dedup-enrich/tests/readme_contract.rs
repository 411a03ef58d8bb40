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
