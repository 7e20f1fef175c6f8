//! Every crate of the workspace can be packaged with the metadata a registry shows, and
//! has a README that says what it is for and shows its smallest use (the examples run as
//! doctests of this crate: `readmes` in `src/lib.rs`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test"
)]

use serde_json::Value;

fn workspace_crates() -> Vec<Value> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--offline",
            "--no-deps",
            "--format-version",
            "1",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["manifest_path"].as_str().unwrap().contains("/crates/"))
        .cloned()
        .collect()
}

#[test]
fn every_crate_has_registry_metadata_and_a_readme() {
    let crates = workspace_crates();
    assert!(crates.len() >= 10, "{} crates", crates.len());
    for p in crates {
        let name = p["name"].as_str().unwrap();
        for field in [
            "description",
            "license",
            "repository",
            "readme",
            "rust_version",
        ] {
            let value = p[field].as_str().unwrap_or_default();
            assert!(!value.is_empty(), "{name}: no {field}");
        }
        for list in ["keywords", "categories"] {
            let n = p[list].as_array().map_or(0, Vec::len);
            assert!((1..=5).contains(&n), "{name}: {n} {list}");
        }
        let dir = std::path::Path::new(p["manifest_path"].as_str().unwrap())
            .parent()
            .unwrap();
        let readme = std::fs::read_to_string(dir.join(p["readme"].as_str().unwrap()))
            .unwrap_or_else(|e| panic!("{name}: README: {e}"));
        assert!(
            readme.starts_with(&format!("# {name}\n")),
            "{name}: README title"
        );
        let fence = if name == "mcpsec-cli" {
            "```sh"
        } else {
            "```rust"
        };
        assert!(readme.contains(fence), "{name}: README shows no use");
    }
}

#[test]
fn packages_ship_sources_and_readme_only() {
    for p in workspace_crates() {
        let name = p["name"].as_str().unwrap();
        let out = std::process::Command::new(env!("CARGO"))
            .args([
                "package",
                "--offline",
                "--list",
                "--allow-dirty",
                "-p",
                name,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let files = String::from_utf8(out.stdout).unwrap();
        assert!(files.lines().any(|f| f == "src/lib.rs"), "{name}:\n{files}");
        assert!(files.lines().any(|f| f == "README.md"), "{name}:\n{files}");
        for file in files.lines() {
            let expected = file.starts_with("src/")
                || file.starts_with("benches/")
                // Migrations are read by `sqlx::migrate!` at build time.
                || (file.starts_with("migrations/") && file.ends_with(".sql"))
                || matches!(
                    file,
                    "README.md"
                        | "Cargo.toml"
                        | "Cargo.toml.orig"
                        | "Cargo.lock"
                        | ".cargo_vcs_info.json"
                );
            assert!(expected, "{name} ships {file}");
        }
    }
}

/// The root README's layout names every crate and example directory there is.
#[test]
fn readme_layout_is_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let layout = readme
        .split("## Layout")
        .nth(1)
        .and_then(|rest| rest.split("```").nth(1))
        .unwrap();
    for dir in ["crates", "examples"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let entry = entry.unwrap();
            if !entry.path().join("Cargo.toml").exists() {
                continue;
            }
            let name = entry.file_name().into_string().unwrap();
            let named = match dir {
                "crates" => layout.contains(&format!("  {name}/ ")),
                _ => layout.contains(&name),
            };
            assert!(named, "README layout does not name {dir}/{name}");
        }
    }
}
