//! The shape of the source tree, checked: no import cycles between the files
//! of `src/actors/` or of `src/http/`, and no handler reaching another
//! service's internals (the SKU registry, the store, the WAL). Reads the
//! source; starts nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The code of a file before its unit tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("source file");
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Whether `code` names module `name` of `parent` (`super::name`,
/// `super::{.., name, ..}` or `crate::parent::name`).
fn imports(code: &str, parent: &str, name: &str) -> bool {
    let is_name_end = |rest: &str| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_');
    for prefix in [format!("super::{name}"), format!("crate::{parent}::{name}")] {
        for (at, _) in code.match_indices(&prefix) {
            if is_name_end(&code[at + prefix.len()..]) {
                return true;
            }
        }
    }
    let lists = [String::from("super::{"), format!("crate::{parent}::{{")];
    lists.iter().any(|opening| {
        code.match_indices(opening.as_str())
            .any(|(at, _)| lists_name(&code[at + opening.len()..], name))
    })
}

/// Whether an import list (`a, b::C, ..}`) names module `name`.
fn lists_name(list: &str, name: &str) -> bool {
    let list = &list[..list.find('}').unwrap_or(list.len())];
    list.split(',').any(|item| {
        let item = item.trim();
        item == name || item.starts_with(&format!("{name}::"))
    })
}

/// The code of a module of `root`: its file, or every file of its directory.
fn module_code(root: &Path, name: &str) -> String {
    let file = root.join(format!("{name}.rs"));
    if file.exists() {
        return code(&file);
    }
    std::fs::read_dir(root.join(name))
        .expect("module dir")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| code(&p))
        .collect()
}

/// Which module of `src/<dir>/` (a file, or a directory with a `mod.rs`)
/// imports which; test-only files left out.
fn graph(dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let modules: Vec<String> = std::fs::read_dir(&root)
        .expect("source dir")
        .filter_map(|e| {
            let path = e.ok()?.path();
            if path.is_dir() {
                path.join("mod.rs")
                    .exists()
                    .then(|| path.file_name()?.to_str().map(str::to_owned))?
            } else {
                path.file_name()?
                    .to_str()?
                    .strip_suffix(".rs")
                    .map(str::to_owned)
            }
        })
        .filter(|f| f != "mod" && !f.ends_with("_tests"))
        .collect();
    modules
        .iter()
        .map(|module| {
            let code = module_code(&root, module);
            let uses = modules
                .iter()
                .filter(|other| *other != module && imports(&code, dir, other))
                .cloned()
                .collect();
            (module.clone(), uses)
        })
        .collect()
}

/// A cycle through `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_the_import_reader_reads_each_form() {
    assert!(imports("use super::orders::Orders;", "actors", "orders"));
    assert!(imports(
        "use super::{holds, orders::X};",
        "actors",
        "orders"
    ));
    assert!(imports("crate::actors::orders::X", "actors", "orders"));
    assert!(imports(
        "use crate::actors::{carts, orders::X};",
        "actors",
        "orders"
    ));
    assert!(!imports("use super::orders_view::X;", "actors", "orders"));
    let looped: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &[][..]),
    ]
    .into_iter()
    .map(|(n, e)| (n.to_owned(), e.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(cycle(&looped).map(|c| c.len()), Some(4));
}

#[test]
fn no_file_of_src_actors_or_src_http_imports_one_that_imports_it_back() {
    for dir in ["actors", "http", "services"] {
        let graph = graph(dir);
        assert!(graph.len() >= 3, "src/{dir} read: {graph:?}");
        assert_eq!(cycle(&graph), None, "an import cycle in src/{dir}");
    }
}

#[test]
fn no_handler_reaches_the_registry_the_store_or_the_wal() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    for entry in std::fs::read_dir(&root).expect("src/http") {
        let path = entry.expect("entry").path();
        let code = code(&path);
        for getter in [".registry()", ".store()", ".wal()", "persistence::"] {
            assert!(!code.contains(getter), "{} calls {getter}", path.display());
        }
    }
}
