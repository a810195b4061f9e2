//! The host's house: its module graph, computed from the `crate::` and `super::` paths
//! of `host/src`, has no cycle, every arrow points down the layers ARCHITECTURE.md
//! names, and the absences it promises hold (triggers never reach the engine, the
//! engine never reaches the plugin boundary, the domain imports only `support`).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The layers from the ground up; a module may import only from a lower layer or from
/// inside its own top-level module.
const LAYERS: &[&[&str]] = &[
    &["support"],
    &["domain"],
    &["storage"],
    &["output", "plugin", "probe", "fleet"],
    &["engine"],
    &["dispatch"],
    &["triggers"],
    &["cli"],
    &["config"],
    &["runtime"],
    &["commands"],
    &[""],
];

/// Arrows that must never exist, even where the layers would allow them: (from, to,
/// why).
const NEVER: &[(&str, &str, &str)] = &[
    (
        "probe",
        "domain",
        "a probe checks and answers: it knows no fault, draws from no seeded stream",
    ),
    (
        "probe",
        "storage",
        "a probe checks and answers: it keeps nothing in the journal",
    ),
    (
        "triggers",
        "engine",
        "a trigger only asks, through dispatch::Injector",
    ),
    (
        "triggers",
        "plugin::loader",
        "a trigger never loads or calls a plugin",
    ),
    (
        "engine",
        "plugin",
        "the engine knows faults through domain::injection::Fault, not the ABI",
    ),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every source file of the host, by its module path (`triggers::http`, `` for lib.rs).
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            let path = entry.path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut inner = prefix.to_vec();
                inner.push(name);
                walk(&path, &inner, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                if name == "main" {
                    continue;
                }
                let mut module = prefix.to_vec();
                if !matches!(name.as_str(), "mod" | "lib") {
                    module.push(name);
                }
                out.insert(module.join("::"), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&src_dir(), &[], &mut out);
    // Modules that exist for unit tests alone (`#[cfg(test)] mod tests;`) are not rooms.
    let test_only: Vec<String> = out
        .iter()
        .flat_map(|(module, text)| {
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            lines
                .windows(2)
                .filter(|w| w[0] == "#[cfg(test)]")
                .filter_map(|w| {
                    let name = w[1].strip_suffix(';')?.rsplit("mod ").next()?;
                    Some(if module.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{module}::{name}")
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for module in test_only {
        out.remove(&module);
    }
    out
}

/// Skips a use-tree's identifier characters.
fn ident_end(text: &[u8], mut i: usize) -> usize {
    while i < text.len() && (text[i].is_ascii_alphanumeric() || text[i] == b'_') {
        i += 1;
    }
    i
}

/// The paths a use-tree starting at `i` names, each as its segments after `prefix`.
fn use_tree(text: &[u8], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    loop {
        while i < text.len() && text[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < text.len() && text[i] == b'{' {
            i += 1;
            loop {
                while i < text.len() && (text[i].is_ascii_whitespace() || text[i] == b',') {
                    i += 1;
                }
                if i >= text.len() || text[i] == b'}' {
                    return i + 1;
                }
                let next = use_tree(text, i, path.clone(), out);
                // `*`, `self` or anything unexpected: step over it, never stand still.
                i = if next > i { next } else { i + 1 };
            }
        }
        let end = ident_end(text, i);
        if end == i {
            out.push(path);
            return i;
        }
        path.push(String::from_utf8_lossy(&text[i..end]).into_owned());
        i = end;
        if text[i..].starts_with(b"::") {
            i += 2;
        } else {
            out.push(path);
            return i;
        }
    }
}

/// `text` without each item that follows a `#[cfg(test)]`: up to its `;`, or through
/// its braces.
fn without_test_items(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The longest prefix of `segments` that is a module of the house.
fn house_module(segments: &[String], known: &BTreeSet<String>) -> Option<String> {
    (0..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| known.contains(m))
}

/// The `crate::` and `super::` paths `module` (whose source is `text`) names, each as
/// its segments from the crate's root.
fn paths_named(module: &str, text: &str) -> Vec<Vec<String>> {
    // Items for tests alone (`#[cfg(test)] mod tests { .. }`, a test-only method) are
    // not part of the house, and a test module's `super` is the file itself.
    let text = without_test_items(text);
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = code.as_bytes();
    let mut paths = Vec::new();
    let here: Vec<String> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(str::to_owned).collect()
    };
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let i = from + at;
            let preceded = i > 0
                && (bytes[i - 1].is_ascii_alphanumeric()
                    || bytes[i - 1] == b'_'
                    || (start == "super::" && bytes[..i].ends_with(b"super::")));
            from = i + start.len();
            if preceded {
                continue;
            }
            let base = if start == "crate::" {
                Vec::new()
            } else {
                // `super::super::x`: one level up per `super`.
                let mut up = here.clone();
                up.pop();
                while code[from..].starts_with("super::") {
                    up.pop();
                    from += "super::".len();
                }
                up
            };
            use_tree(bytes, from, base, &mut paths);
        }
    }
    paths
}

/// What each module re-exports from another (`pub use crate::x::Y;`): by module, each
/// name with the module it comes from.
fn reexports(
    modules: &BTreeMap<String, String>,
    known: &BTreeSet<String>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (module, text) in modules {
        // Each `pub use` statement on its own, read as if it were the whole file.
        let statements = ["pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .flat_map(|lead| text.match_indices(lead).map(|(i, _)| i))
            .filter_map(|i| Some(&text[i..i + text[i..].find(';')?]));
        for statement in statements {
            for path in paths_named(module, statement) {
                let (Some(name), Some(from)) = (path.last(), house_module(&path, known)) else {
                    continue;
                };
                if &from != module {
                    out.entry(module.clone())
                        .or_default()
                        .insert(name.clone(), from);
                }
            }
        }
    }
    out
}

/// The house's arrows: each module to those it imports from, and, where it imports
/// a name another module re-exports, to the module that name comes from too (a
/// re-export carries its module's types past any rule about who may reach it).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let passed_on = reexports(&modules, &known);
    modules
        .iter()
        .map(|(m, text)| {
            let mut targets = BTreeSet::new();
            for path in paths_named(m, text) {
                let Some(target) = house_module(&path, &known) else {
                    continue;
                };
                let depth = if target.is_empty() {
                    0
                } else {
                    target.split("::").count()
                };
                let name = path.get(depth);
                if let Some(from) = name.and_then(|n| passed_on.get(&target)?.get(n)) {
                    targets.insert(from.clone());
                }
                targets.insert(target);
            }
            targets.remove(m);
            (m.clone(), targets)
        })
        .collect()
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or_default()
}

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&top(module)))
        .unwrap_or_else(|| {
            panic!("module `{module}` is in no layer: add it to LAYERS and ARCHITECTURE.md")
        })
}

/// A cycle of the graph, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == next).unwrap_or(0);
                    let mut found = stack[from..].to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                0 => {
                    if let Some(found) = visit(next, graph, state, stack) {
                        return Some(found);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(found) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(found);
            }
        }
    }
    None
}

#[test]
fn the_module_graph_reads_the_real_imports() {
    let graph = graph();
    // A few arrows known to exist, so a parser that reads nothing cannot pass.
    for (from, to) in [
        ("triggers::timer", "dispatch"),
        ("dispatch", "engine"),
        ("engine", "storage::journal"),
        ("output::notifier::config", "output::notifier"),
        ("runtime::daemon", "triggers::http"),
    ] {
        assert!(
            graph[from].contains(to),
            "{from} -> {to} not found: {:?}",
            graph[from]
        );
    }
    let text = "use crate::a;\n#[cfg(test)]\nfn only() { crate::b::x(); }\nfn real() { crate::c::y(); }\n#[cfg(test)]\nmod tests;\n";
    assert_eq!(
        without_test_items(text),
        "use crate::a;\n\nfn real() { crate::c::y(); }\n\n"
    );
    // A name passed on by a re-export is an arrow to where it comes from.
    let modules: BTreeMap<String, String> = [
        ("low".to_owned(), "pub struct T;".to_owned()),
        (
            "mid".to_owned(),
            "pub(crate) use crate::low::{T};\npub use super::low as also;".to_owned(),
        ),
    ]
    .into();
    let known = modules.keys().cloned().collect();
    let passed_on = reexports(&modules, &known);
    assert_eq!(passed_on["mid"]["T"], "low");
    assert_eq!(passed_on["mid"]["low"], "low");
    let mut found = Vec::new();
    use_tree(b"{a::{b, c::d}, *, e}", 0, vec!["crate".into()], &mut found);
    assert_eq!(
        found,
        [
            vec!["crate", "a", "b"],
            vec!["crate", "a", "c", "d"],
            vec!["crate"], // the glob: everything of the prefix
            vec!["crate", "e"]
        ]
    );
}

#[test]
fn the_host_has_no_import_cycle() {
    let graph = graph();
    assert_eq!(cycle(&graph), None, "an import cycle in host/src");
    let mut looped = graph.clone();
    looped
        .get_mut("storage::journal")
        .unwrap()
        .insert("engine".into());
    assert!(cycle(&looped).is_some(), "the check sees a planted cycle");
}

#[test]
fn arrows_point_down_the_layers_and_the_absences_hold() {
    let mut wrong = Vec::new();
    for (from, targets) in graph() {
        for to in targets {
            if top(&from) != top(&to) && layer(&to) >= layer(&from) {
                wrong.push(format!("{from} -> {to}: runs up the layers"));
            }
            for (a, b, why) in NEVER {
                let under = |m: &str, p: &str| m == p || m.starts_with(&format!("{p}::"));
                if under(&from, a) && under(&to, b) {
                    wrong.push(format!("{from} -> {to}: {why}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
