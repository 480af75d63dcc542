//! Reading a workflow from a definition file, a sub-graph JSON file or a directory of
//! sub-graph files.

use std::path::{Path, PathBuf};

use joint_core::workflow::Workflow;
use joint_shim::Handlers;

/// The handlers a workflow loaded from `path` runs with: the built-in example handlers, and
/// commands whose program is a relative path (`./steps/a.py`) resolved against the directory of
/// the definition file (for a directory of sub-graphs: that directory), not the working
/// directory.
pub fn handlers_for(path: &Path) -> Handlers {
    let mut h = crate::base_handlers();
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    h.set_command_dir(std::path::absolute(&dir).unwrap_or(dir));
    h
}

/// Load `path`; errors are printable as they are.
pub fn load_workflow(path: &Path) -> Result<Workflow, String> {
    if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| format!("cannot read directory {}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!("{} has no .json sub-graph files", path.display()));
        }
        let mut subs = Vec::new();
        for f in &files {
            let src = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            let mut s = joint_core::import::parse_subgraphs(&src)
                .map_err(|d| format!("{}:\n{d}", f.display()))?;
            subs.append(&mut s);
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "workflow".into());
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        return joint_core::import::import(&name, subs)
            .map_err(|d| format!("{}:\n{d}", path.display()));
    }
    let src = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    joint_core::compile::load(&path.to_string_lossy(), &src)
        .map_err(|d| format!("{}:\n{d}", path.display()))
}
