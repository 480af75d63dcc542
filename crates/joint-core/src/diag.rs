//! Diagnostics: errors and warnings about a workflow definition or a set of sub-graphs.
//!
//! Every [`Diagnostic`] carries a stable `code` (such as `unknown-function`), a message, the function
//! or edge it is about and, when known, the line and column in the source file. [`locate`] finds the
//! position of a `key: value` occurrence in YAML or JSON text, which is how semantic errors (found
//! on the parsed definition, after the text is gone) get their line and column back.

use std::fmt;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The definition is rejected.
    Error,
    /// The definition is accepted; the message points at a likely mistake.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding about a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable machine-readable code, e.g. `unknown-function`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// The function the diagnostic is about.
    pub function: Option<String>,
    /// The edge (source, target) the diagnostic is about.
    pub edge: Option<(String, String)>,
    /// 1-based line in the source text, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) in the source text, when known.
    pub column: Option<usize>,
}

impl Diagnostic {
    /// A new error with no location.
    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            function: None,
            edge: None,
            line: None,
            column: None,
        }
    }

    /// A new warning with no location.
    pub fn warning(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    /// Attach the function the diagnostic is about.
    pub fn with_function(mut self, function: impl Into<String>) -> Diagnostic {
        self.function = Some(function.into());
        self
    }

    /// Attach the edge the diagnostic is about (also sets the function to the edge's source).
    pub fn with_edge(mut self, from: impl Into<String>, to: impl Into<String>) -> Diagnostic {
        let from = from.into();
        self.function = Some(from.clone());
        self.edge = Some((from, to.into()));
        self
    }

    /// Attach a source position (1-based line and column).
    pub fn at(mut self, pos: Option<(usize, usize)>) -> Diagnostic {
        if let Some((l, c)) = pos {
            self.line = Some(l);
            self.column = Some(c);
        }
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.severity, self.code)?;
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, " at {l}:{c}")?,
            (Some(l), None) => write!(f, " at {l}")?,
            _ => {}
        }
        f.write_str(": ")?;
        if let Some((a, b)) = &self.edge {
            write!(f, "edge '{a}' -> '{b}': ")?;
        } else if let Some(func) = &self.function {
            write!(f, "function '{func}': ")?;
        }
        f.write_str(&self.message)
    }
}

/// A list of diagnostics (all errors found, not just the first, plus warnings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// An empty list.
    pub fn new() -> Diagnostics {
        Diagnostics(Vec::new())
    }

    /// A list of one.
    pub fn one(d: Diagnostic) -> Diagnostics {
        Diagnostics(vec![d])
    }

    /// Append one.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Append all of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// No diagnostics at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of diagnostics.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }

    /// Diagnostics with the given code.
    pub fn with_code<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a Diagnostic> + 'a {
        self.0.iter().filter(move |d| d.code == code)
    }

    /// Iterate.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Sort by position (unknown positions last, keeping their order) and drop exact duplicates.
    pub fn sort_and_dedup(&mut self) {
        let mut seen = std::collections::HashSet::new();
        self.0.retain(|d| seen.insert(d.to_string()));
        self.0
            .sort_by_key(|d| (d.line.unwrap_or(usize::MAX), d.column.unwrap_or(usize::MAX)));
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Diagnostics {
        Diagnostics::one(d)
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// 1-based (line, column in characters) of byte offset `offset` in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// Byte offset of the first `key: value` occurrence at or after byte `from`, pointing at the first
/// character of the value (its opening quote when quoted). Handles YAML block and flow styles
/// (`to: x`, `{ to: "x" }`, `- name: x`) and JSON (`"to": "x"`). `value` = `None` finds the key
/// alone and points at the key. Best effort: comments and multi-line scalars are not understood.
pub fn locate_from(src: &str, from: usize, key: &str, value: Option<&str>) -> Option<usize> {
    let bytes = src.as_bytes();
    let mut search = from.min(src.len());
    while search < src.len() {
        let rel = src.get(search..)?.find(key)?;
        let kstart = search + rel;
        let kend = kstart + key.len();
        search = kstart + 1;
        // Key boundaries: not part of a longer word (quotes allowed around it).
        if kstart > 0 && is_word_byte(bytes[kstart - 1]) {
            continue;
        }
        let mut i = kend;
        if i < bytes.len() && is_word_byte(bytes[i]) {
            continue;
        }
        if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
            i += 1;
        }
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b':' {
            continue;
        }
        i += 1;
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
            i += 1;
        }
        let Some(value) = value else {
            let start = if kstart > 0 && matches!(bytes[kstart - 1], b'"' | b'\'') {
                kstart - 1
            } else {
                kstart
            };
            return Some(start);
        };
        let vstart = i;
        if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
            i += 1;
        }
        if src.get(i..).is_some_and(|rest| rest.starts_with(value)) {
            let end = i + value.len();
            if end >= bytes.len() || !is_word_byte(bytes[end]) || value.is_empty() {
                return Some(vstart);
            }
        }
    }
    None
}

/// 1-based (line, column) of the first `key: value` occurrence in `src` (see [`locate_from`]).
pub fn locate(src: &str, key: &str, value: &str) -> Option<(usize, usize)> {
    locate_from(src, 0, key, Some(value)).map(|o| line_col(src, o))
}

/// Levenshtein edit distance (by characters).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest candidate to `word` if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

/// `" (did you mean 'x'?)"` or an empty string.
pub fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(word, candidates)
        .map(|c| format!(" (did you mean '{c}'?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        let d = Diagnostic::error(
            "unknown-function",
            "unknown function 'extrct' (did you mean 'extract'?)",
        )
        .with_edge("split", "extrct")
        .at(Some((12, 9)));
        assert_eq!(
            d.to_string(),
            "error[unknown-function] at 12:9: edge 'split' -> 'extrct': unknown function 'extrct' (did you mean 'extract'?)"
        );
        let w = Diagnostic::warning("unknown-variable", "x").with_function("f");
        assert_eq!(w.to_string(), "warning[unknown-variable]: function 'f': x");
        let ds = Diagnostics(vec![d, w]);
        assert_eq!(ds.to_string().lines().count(), 2);
        assert!(ds.has_errors());
    }

    #[test]
    fn locate_layouts() {
        let y = "functions:\n  - name: split\n    next:\n      - to: extrct\n  - { name: b, next: [{ to: 'x' }] }\n";
        assert_eq!(locate(y, "name", "split"), Some((2, 11)));
        assert_eq!(locate(y, "to", "extrct"), Some((4, 13)));
        assert_eq!(locate(y, "name", "b"), Some((5, 13)));
        assert_eq!(locate(y, "to", "x"), Some((5, 29)));
        assert_eq!(locate(y, "name", "spl"), None);
        let j = "{\"functions\": [\n  {\"name\": \"a\", \"next\": [{\"to\": \"bb\"}]}]}";
        assert_eq!(locate(j, "name", "a"), Some((2, 12)));
        assert_eq!(locate(j, "to", "bb"), Some((2, 33)));
        // A key that is a suffix of another key is not matched.
        assert_eq!(locate("auto: x\nto: x\n", "to", "x"), Some((2, 5)));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("extrct", ["extract", "split"]),
            Some("extract")
        );
        assert_eq!(did_you_mean("zzz", ["extract", "split"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
