//! The shape CONTRIBUTING promises, checked on the source: bollard is named only in the
//! engine layer (of this crate and of the binary), and a module imports only from layers
//! below its own (or, inside one layer's folder, from its own folder).

use std::path::{Path, PathBuf};

/// Each top-level module of the crate and its layer, from the bottom up. Entry points
/// stand above every layer; among them, each may use those listed before it.
const LAYERS: &[(&str, u32)] = &[
    ("model", 0),
    ("connect", 0),
    ("sink", 0),
    ("escape", 0),
    ("engine", 1),
    ("cancel", 1),
    ("lookup", 2),
    ("helper", 2),
    ("run", 3),
    ("session", 3),
    ("local", 3),
    ("error", 4),
    ("direct", 5),
    ("task_exec", 6),
    ("copy", 7),
    ("live", 7),
    ("forward", 7),
    ("persist", 7),
    ("gc", 7),
    ("service_exec", 8),
    ("multi", 9),
    ("wait", 9),
];

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file belongs to: its first path component under `src/`, without `.rs`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// Lines of code, without `//` comments (doc comments may name anything).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("")))
}

/// Every `crate::X` a line names.
fn crate_paths(line: &str) -> Vec<String> {
    line.match_indices("crate::")
        .filter(|(i, _)| {
            *i == 0 || !line[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
        })
        .map(|(i, m)| {
            line[i + m.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

fn core_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn bollard_is_named_only_in_the_engine_layer() {
    let core = core_src();
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("../swarm-exec/src");
    let mut files = Vec::new();
    rs_files(&core, &mut files);
    rs_files(&binary, &mut files);
    let mut offenders = Vec::new();
    for file in &files {
        if file.starts_with(core.join("engine")) || file.ends_with("lib.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in code_lines(&text) {
            if line.contains("bollard") {
                offenders.push(format!("{}:{n}: {}", file.display(), line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "bollard outside engine/:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn modules_import_only_from_layers_below() {
    let src = core_src();
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" {
            continue;
        }
        let own = layer(&module).unwrap_or_else(|| panic!("{module}: not in LAYERS"));
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in code_lines(&text) {
            for used in crate_paths(line) {
                if used == module || used.chars().next().is_some_and(char::is_uppercase) {
                    continue;
                }
                let Some(theirs) = layer(&used) else {
                    wrong.push(format!(
                        "{}:{n}: crate::{used} is not a known module",
                        file.display()
                    ));
                    continue;
                };
                // Tests may reach down anywhere; imports of an entry point by another
                // entry point go to one listed before it.
                if theirs >= own {
                    wrong.push(format!(
                        "{}:{n}: {module} (layer {own}) uses crate::{used} (layer {theirs})",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that do not point down:\n{}",
        wrong.join("\n")
    );
}
