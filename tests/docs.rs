//! The README and docs/ stay true to the project: the README stays a front door, every
//! link resolves, every alert's runbook exists, and every setting is documented with its
//! default. (Their figures are checked against the kept runs by the bench crate's
//! tests/figures.rs.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The README and every page of docs/, as (path relative to the repository, text).
fn pages() -> Vec<(PathBuf, String)> {
    let mut pages = vec![(PathBuf::from("README.md"), read("README.md"))];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("a docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    for path in docs {
        let relative = path.strip_prefix(repo()).expect("under the repository").to_path_buf();
        let text = std::fs::read_to_string(&path).expect("a docs page");
        pages.push((relative, text));
    }
    pages
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut found = BTreeSet::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            found.insert(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// Every `](target)` of a Markdown text that is not a URL.
fn local_links(markdown: &str) -> Vec<&str> {
    markdown
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target))
        .filter(|t| !t.contains("://") && !t.starts_with("mailto:"))
        .collect()
}

#[test]
fn the_readme_is_a_front_door() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(lines <= 250, "the README has {lines} lines; reference belongs in docs/");
    for must in [
        "scripts/run.sh",
        "scripts/test.sh",
        "## Quick start",
        "## Figures",
        "docs/",
    ] {
        assert!(readme.contains(must), "the README lacks {must}");
    }
}

#[test]
fn every_local_link_of_the_readme_and_docs_resolves() {
    let mut broken = Vec::new();
    for (page, text) in pages() {
        let dir = page.parent().unwrap_or(Path::new(""));
        for link in local_links(&text) {
            let (file, fragment) = link.split_once('#').unwrap_or((link, ""));
            let target = if file.is_empty() { page.clone() } else { dir.join(file) };
            let Ok(content) = std::fs::read_to_string(repo().join(&target)) else {
                if !repo().join(&target).is_dir() {
                    broken.push(format!("{}: {link} (no such file)", page.display()));
                }
                continue;
            };
            if !fragment.is_empty()
                && target.extension().is_some_and(|e| e == "md")
                && !anchors(&content).contains(fragment)
            {
                broken.push(format!("{}: {link} (no such heading)", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_alert_links_to_a_runbook_that_exists() {
    let alerts = read("config/alerts.yml");
    let runbooks: Vec<&str> = alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook: "))
        .map(|r| r.trim_matches('"'))
        .collect();
    let names = alerts.lines().filter(|l| l.trim().starts_with("- alert: ")).count();
    assert_eq!(runbooks.len(), names, "every alert has a runbook");
    for runbook in runbooks {
        let (file, heading) = runbook.split_once('#').expect("a runbook names its heading");
        assert!(anchors(&read(file)).contains(heading), "{runbook}: no such heading");
    }
}

/// (key, default as written) of every setting of a TOML file; an empty table is `key.*`.
fn settings(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(t) if t.is_empty() => out.push((format!("{name}.*"), "(none)".to_string())),
            toml::Value::Table(t) => settings(&name, t, out),
            v => out.push((name, v.to_string())),
        }
    }
}

#[test]
fn every_setting_is_documented_with_its_default() {
    let page = read("docs/configuration.md");
    let mut missing = Vec::new();
    for file in ["config/default.toml", "topologies/credit-check.toml"] {
        let table: toml::Table = read(file).parse().unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut found = Vec::new();
        settings("", &table, &mut found);
        assert!(found.len() >= 10, "{file}: {found:?}");
        for (key, default) in found {
            if !page.contains(&format!("| `{key}` | `{default}` |")) {
                missing.push(format!("{file}: {key} = {default}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks:\n{}",
        missing.join("\n")
    );
}
