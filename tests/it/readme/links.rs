//! The links of the README, the guide and the other top-level pages: every relative one
//! resolves, to a file and an anchor of it, and the guide's index lists every chapter.

use super::*;

/// The anchors GitHub gives the headings of a Markdown page: lower case, punctuation
/// dropped but for `-` and `_`, spaces made `-`, a repeated one suffixed `-1`, `-2`...
fn anchors(text: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#');
        if fenced || !heading.starts_with(' ') {
            continue;
        }
        let slug: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen
            .iter()
            .filter(|s| {
                **s == slug
                    || s.strip_prefix(&format!("{slug}-"))
                        .is_some_and(|k| k.parse::<u32>().is_ok())
            })
            .count();
        seen.push(if n == 0 { slug } else { format!("{slug}-{n}") });
    }
    seen
}

/// The relative links of a Markdown page outside code blocks, with their line.
fn links(text: &str) -> Vec<(usize, String)> {
    let link = Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for c in link.captures_iter(line) {
            let target = &c[1];
            if !target.contains("://") && !target.starts_with("mailto:") {
                out.push((i + 1, target.to_owned()));
            }
        }
    }
    out
}

#[test]
fn every_link_of_the_readme_and_the_guide_resolves_and_the_index_lists_every_chapter() {
    let mut checked = pages();
    checked.extend(
        [
            "ARCHITECTURE.md",
            "BENCHMARKS.md",
            "PLUGINS.md",
            "SECURITY.md",
        ]
        .map(String::from),
    );
    let mut broken = Vec::new();
    for page in &checked {
        let text = read(page);
        let dir = Path::new(page).parent().unwrap();
        for (line, target) in links(&text) {
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                PathBuf::from(page)
            } else {
                dir.join(path)
            };
            let Ok(full) = repo().join(&file).canonicalize() else {
                broken.push(format!(
                    "{page}:{line}: {target}: no file {}",
                    file.display()
                ));
                continue;
            };
            if anchor.is_empty() || full.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let target_text = std::fs::read_to_string(&full).unwrap();
            if !anchors(&target_text).iter().any(|a| a == anchor) {
                broken.push(format!(
                    "{page}:{line}: {target}: no heading #{anchor} there"
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));

    let index = read("doc/guide/README.md");
    let listed: Vec<String> = links(&index).into_iter().map(|(_, t)| t).collect();
    for chapter in guide() {
        let name = chapter.trim_start_matches("doc/guide/");
        assert!(
            name == "README.md" || listed.iter().any(|t| t == name),
            "doc/guide/README.md does not list {chapter}"
        );
    }
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    assert_eq!(
        anchors("# The dashboard: `GET /`\n## Did we cope? Probes, acks and the report\n```\n# not a heading\n```\n## Versions 1.0, 1.1 and what a host loads\n## Logs\n## Logs\n"),
        [
            "the-dashboard-get-",
            "did-we-cope-probes-acks-and-the-report",
            "versions-10-11-and-what-a-host-loads",
            "logs",
            "logs-1",
        ]
    );
}
