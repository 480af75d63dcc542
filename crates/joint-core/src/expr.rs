//! Guard expressions for `Choice` and `Cycle` states.
//!
//! A small, safe, side-effect-free boolean expression language. An expression
//! is parsed once with [`Expr::parse`] (typically when a workflow definition is
//! loaded) and evaluated many times against a [`Scope`] that maps *root
//! identifiers* such as `output`, `Iterator` or `FaaS` to JSON values.
//!
//! ```text
//! output.items[0].score >= 0.5 && 'urgent' in output.tags
//! Iterator < 8
//! FaaS == 'lambda' or not exists(output.override)
//! ```
//!
//! # Grammar (EBNF)
//!
//! Whitespace may appear between any two tokens. Precedence is lowest first.
//!
//! ```text
//! expr      = or_expr ;
//! or_expr   = and_expr , { ( "||" | "or" ) , and_expr } ;
//! and_expr  = not_expr , { ( "&&" | "and" ) , not_expr } ;
//! not_expr  = ( "!" | "not" ) , not_expr | cmp_expr ;
//! cmp_expr  = in_expr , [ cmp_op , in_expr ] ;          (* non-associative *)
//! cmp_op    = "==" | "!=" | "<" | "<=" | ">" | ">=" ;
//! in_expr   = add_expr , [ "in" , add_expr ] ;          (* non-associative *)
//! add_expr  = mul_expr , { ( "+" | "-" ) , mul_expr } ;
//! mul_expr  = unary , { ( "*" | "/" | "%" ) , unary } ;
//! unary     = "-" , unary | primary ;
//! primary   = number | string | "true" | "false" | "null"
//!           | call | path | "(" , expr , ")" | list ;
//! list      = "[" , [ expr , { "," , expr } ] , "]" ;
//! call      = "len" , "(" , expr , ")"
//!           | "exists" , "(" , path , ")" ;
//! path      = ident , { "." , name | "[" , ( integer | string ) , "]" } ;
//! ident     = name - keyword ;
//! name      = ( letter | "_" ) , { letter | digit | "_" } ;
//! keyword   = "true" | "false" | "null" | "and" | "or" | "not" | "in" ;
//! integer   = digit , { digit } ;
//! number    = integer , [ "." , integer ] , [ ( "e" | "E" ) , [ "+" | "-" ] , integer ] ;
//! string    = "'" , { char - ( "'" | "\" ) | escape } , "'"
//!           | '"' , { char - ( '"' | "\" ) | escape } , '"' ;
//! escape    = "\" , ( "\" | "'" | '"' | "n" | "t" | "r" ) ;
//! ```
//!
//! Field names after `.` may be keywords (`output.in` is fine); roots may not.
//! A negative literal such as `-3` is the unary minus applied to `3`.
//!
//! # Semantics
//!
//! * A path's root is looked up in the [`Scope`]; an unknown root is an
//!   [`EvalError`]. A field or index that does not resolve (missing key, index
//!   out of range, or stepping into a non-container) evaluates to `null`, so
//!   `output.maybe == null` works.
//! * `==` / `!=` compare JSON values structurally; numbers compare numerically
//!   (`1 == 1.0`). Values of different types are simply unequal.
//! * `<`, `<=`, `>`, `>=` need two numbers or two strings (strings compare by
//!   code point); any other pair is an error naming both types.
//! * `x in list` (structural membership), `'ab' in 'xabc'` (substring),
//!   `'key' in object` (key membership).
//! * `+ - * / %` and unary `-` need numbers. Integer operands give an integer
//!   result when it is exact and does not overflow (`7 / 2` is `3.5`,
//!   `6 / 2` is `3`); otherwise the result is a float. `%` is the truncated
//!   remainder (`-7 % 3 == -1`). Division or remainder by zero is an error.
//! * `&&`, `||` short-circuit; `!`, `&&`, `||` need booleans. There is no
//!   truthiness: write `x != null` or `len(x) > 0`.
//! * `len(x)`: characters of a string, elements of an array, keys of an object.
//! * `exists(path)`: `true` if the path resolves to a non-`null` value; an
//!   unknown root gives `false` rather than an error.
//!
//! # Limits
//!
//! Sources longer than [`MAX_SOURCE_LEN`] bytes and nesting (parentheses,
//! list brackets, calls, unary operators) deeper than [`MAX_DEPTH`] are
//! rejected at parse time, so evaluation recursion is bounded. Neither
//! parsing nor evaluation panics on any input.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Number, Value};

/// Maximum accepted source length in bytes.
pub const MAX_SOURCE_LEN: usize = 4096;

/// Maximum nesting depth of parentheses, list brackets, function calls and
/// unary operators.
pub const MAX_DEPTH: usize = 64;

const KEYWORDS: [&str; 7] = ["true", "false", "null", "and", "or", "not", "in"];
const FUNCTIONS: &str = "len, exists";

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// A parsed guard expression.
///
/// Displays, serializes and deserializes as its source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    source: String,
    node: Node,
}

/// Variable lookup for evaluation.
pub trait Scope {
    /// Value of a root identifier such as `output`, `Iterator`, `FaaS`; None if unknown.
    fn lookup(&self, root: &str) -> Option<Value>;
}

/// A scope backed by a map (convenient for tests and the runtime).
impl Scope for BTreeMap<String, Value> {
    fn lookup(&self, root: &str) -> Option<Value> {
        self.get(root).cloned()
    }
}

/// A scope backed by a JSON object.
impl Scope for Map<String, Value> {
    fn lookup(&self, root: &str) -> Option<Value> {
        self.get(root).cloned()
    }
}

/// A syntax error found by [`Expr::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// 1-based column (in characters) where the problem was found.
    pub column: usize,
    /// What went wrong and, where useful, what was expected.
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for ExprError {}

/// An error raised while evaluating an [`Expr`] (unknown root, type error,
/// division by zero, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    /// Human-readable description of the failure.
    pub message: String,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EvalError {}

impl Expr {
    /// Parse; errors carry the 1-based column and what was expected.
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        if src.len() > MAX_SOURCE_LEN {
            let column = src
                .char_indices()
                .take_while(|(b, _)| *b < MAX_SOURCE_LEN)
                .count()
                + 1;
            return Err(ExprError {
                column,
                message: format!(
                    "expression is too long: {} bytes (the limit is {MAX_SOURCE_LEN})",
                    src.len()
                ),
            });
        }
        let (toks, eof) = lex(src)?;
        let mut p = Parser {
            toks: &toks,
            eof: &eof,
            pos: 0,
            depth: 0,
        };
        let node = p.parse_or()?;
        if !p.at_eof() {
            return Err(p.err_here(format!(
                "expected an operator or end of input, found {}",
                describe(p.peek())
            )));
        }
        Ok(Expr {
            source: src.to_owned(),
            node,
        })
    }

    /// Evaluate to a JSON value against a scope.
    pub fn eval(&self, scope: &dyn Scope) -> Result<Value, EvalError> {
        eval_node(&self.node, scope)
    }

    /// Evaluate and require a boolean result (error names the value's type otherwise).
    pub fn eval_bool(&self, scope: &dyn Scope) -> Result<bool, EvalError> {
        match self.eval(scope)? {
            Value::Bool(b) => Ok(b),
            other => Err(eval_err(format!(
                "expected the expression to evaluate to a boolean, found {}",
                type_name(&other)
            ))),
        }
    }

    /// Root identifiers the expression reads (e.g. ["output", "Iterator"]), for validation.
    ///
    /// Each root appears once, in order of first appearance.
    pub fn roots(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect_roots(&self.node, &mut out);
        out
    }

    /// The source text it was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Expr {
    type Err = ExprError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Expr::parse(s)
    }
}

impl serde::Serialize for Expr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> serde::Deserialize<'de> for Expr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Expr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a guard expression string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Expr, E> {
                Expr::parse(v)
                    .map_err(|e| E::custom(format_args!("invalid guard expression {v:?}: {e}")))
            }
        }
        deserializer.deserialize_str(V)
    }
}

// ---------------------------------------------------------------------------
// AST
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Field(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq)]
struct PathExpr {
    root: String,
    segs: Vec<Seg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl ArithOp {
    fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Rem => "%",
        }
    }
}

/// Binary chains of the same precedence are stored flat, so the tree depth is
/// bounded by the parser's nesting limit rather than by the source length.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Lit(Value),
    Path(PathExpr),
    List(Vec<Node>),
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    In(Box<Node>, Box<Node>),
    Arith(Box<Node>, Vec<(ArithOp, Node)>),
    Len(Box<Node>),
    Exists(PathExpr),
}

fn collect_roots(node: &Node, out: &mut Vec<String>) {
    let push = |root: &str, out: &mut Vec<String>| {
        if !out.iter().any(|r| r == root) {
            out.push(root.to_owned());
        }
    };
    match node {
        Node::Lit(_) => {}
        Node::Path(p) | Node::Exists(p) => push(&p.root, out),
        Node::List(items) | Node::And(items) | Node::Or(items) => {
            for n in items {
                collect_roots(n, out);
            }
        }
        Node::Not(n) | Node::Neg(n) | Node::Len(n) => collect_roots(n, out),
        Node::Cmp(_, l, r) | Node::In(l, r) => {
            collect_roots(l, out);
            collect_roots(r, out);
        }
        Node::Arith(first, rest) => {
            collect_roots(first, out);
            for (_, n) in rest {
                collect_roots(n, out);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(Number),
    Str(String),
    Ident(String),
    Punct(&'static str),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    col: usize,
    /// Source text of the token (for messages).
    text: String,
}

fn lex_err(column: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        column,
        message: message.into(),
    }
}

const PUNCT2: [&str; 6] = ["==", "!=", "<=", ">=", "&&", "||"];
const PUNCT1: [&str; 14] = [
    "<", ">", "!", "(", ")", "[", "]", ",", ".", "+", "-", "*", "/", "%",
];

fn lex(src: &str) -> Result<(Vec<Token>, Token), ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let text_of = |a: usize, b: usize| chars.get(a..b).map(|s| s.iter().collect::<String>());
    let mut toks = Vec::new();
    let mut i = 0;
    while let Some(c) = at(i) {
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while at(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                i += 1;
            }
            let text = text_of(start, i).unwrap_or_default();
            toks.push(Token {
                tok: Tok::Ident(text.clone()),
                col,
                text,
            });
        } else if c.is_ascii_digit() {
            let start = i;
            let digits = |i: &mut usize| {
                while at(*i).is_some_and(|c| c.is_ascii_digit()) {
                    *i += 1;
                }
            };
            digits(&mut i);
            let mut is_float = false;
            if at(i) == Some('.') && at(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
                digits(&mut i);
                is_float = true;
            }
            if matches!(at(i), Some('e' | 'E')) {
                let mut j = i + 1;
                if matches!(at(j), Some('+' | '-')) {
                    j += 1;
                }
                if !at(j).is_some_and(|c| c.is_ascii_digit()) {
                    let bad = text_of(start, j).unwrap_or_default();
                    return Err(lex_err(
                        i + 1,
                        format!("malformed number '{bad}': expected digits after the exponent"),
                    ));
                }
                i = j;
                digits(&mut i);
                is_float = true;
            }
            let text = text_of(start, i).unwrap_or_default();
            let num = if is_float {
                None
            } else if let Ok(v) = text.parse::<i64>() {
                Some(Number::from(v))
            } else if let Ok(v) = text.parse::<u64>() {
                Some(Number::from(v))
            } else {
                None
            };
            let num = match num {
                Some(n) => n,
                None => text
                    .parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .ok_or_else(|| {
                        lex_err(col, format!("number '{}' is out of range", clip(&text)))
                    })?,
            };
            toks.push(Token {
                tok: Tok::Num(num),
                col,
                text,
            });
        } else if c == '\'' || c == '"' {
            let start = i;
            i += 1;
            let mut s = String::new();
            loop {
                match at(i) {
                    None => return Err(lex_err(col, "unterminated string")),
                    Some(q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        let e = match at(i + 1) {
                            None => return Err(lex_err(col, "unterminated string")),
                            Some('\\') => '\\',
                            Some('\'') => '\'',
                            Some('"') => '"',
                            Some('n') => '\n',
                            Some('t') => '\t',
                            Some('r') => '\r',
                            Some(other) => {
                                return Err(lex_err(
                                    i + 1,
                                    format!(
                                        "unknown escape '\\{}' in string (allowed: \\\\, \\', \\\", \\n, \\t, \\r)",
                                        other.escape_debug()
                                    ),
                                ));
                            }
                        };
                        s.push(e);
                        i += 2;
                    }
                    Some(other) => {
                        s.push(other);
                        i += 1;
                    }
                }
            }
            let text = text_of(start, i).unwrap_or_default();
            toks.push(Token {
                tok: Tok::Str(s),
                col,
                text,
            });
        } else {
            let two: String = chars
                .get(i..i + 2)
                .map(|s| s.iter().collect())
                .unwrap_or_default();
            let one = c.to_string();
            if let Some(p) = PUNCT2.iter().find(|p| **p == two) {
                toks.push(Token {
                    tok: Tok::Punct(p),
                    col,
                    text: two,
                });
                i += 2;
            } else if let Some(p) = PUNCT1.iter().find(|p| **p == one) {
                toks.push(Token {
                    tok: Tok::Punct(p),
                    col,
                    text: one,
                });
                i += 1;
            } else {
                let message = match c {
                    '=' => "unexpected '='; use '==' to compare".to_owned(),
                    '&' => "unexpected '&'; use '&&' or 'and'".to_owned(),
                    '|' => "unexpected '|'; use '||' or 'or'".to_owned(),
                    _ => format!("unexpected character '{}'", c.escape_debug()),
                };
                return Err(lex_err(col, message));
            }
        }
    }
    let eof = Token {
        tok: Tok::Eof,
        col: chars.len() + 1,
        text: String::new(),
    };
    toks.push(eof.clone());
    Ok((toks, eof))
}

/// Shorten long token texts in messages.
fn clip(s: &str) -> String {
    const MAX: usize = 32;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

fn is_keyword(s: &str) -> bool {
    KEYWORDS.contains(&s)
}

fn describe(t: &Token) -> String {
    match &t.tok {
        Tok::Eof => "end of input".to_owned(),
        Tok::Num(_) => format!("number {}", clip(&t.text)),
        Tok::Str(_) => format!("string {}", clip(&t.text)),
        Tok::Ident(s) if is_keyword(s) => format!("keyword '{s}'"),
        Tok::Ident(s) => format!("identifier '{}'", clip(s)),
        Tok::Punct(p) => format!("'{p}'"),
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

struct Parser<'a> {
    toks: &'a [Token],
    eof: &'a Token,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &'a Token {
        self.toks.get(self.pos).unwrap_or(self.eof)
    }

    fn peek_at(&self, n: usize) -> &'a Token {
        self.toks.get(self.pos + n).unwrap_or(self.eof)
    }

    fn prev(&self) -> Option<&'a Token> {
        self.pos.checked_sub(1).and_then(|i| self.toks.get(i))
    }

    fn advance(&mut self) -> &'a Token {
        let t = self.peek();
        if !matches!(t.tok, Tok::Eof) {
            self.pos += 1;
        }
        t
    }

    fn at_eof(&self) -> bool {
        matches!(self.peek().tok, Tok::Eof)
    }

    fn at_punct(&self, p: &str) -> bool {
        matches!(self.peek().tok, Tok::Punct(q) if q == p)
    }

    fn at_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s == kw)
    }

    fn err_here(&self, message: String) -> ExprError {
        ExprError {
            column: self.peek().col,
            message,
        }
    }

    fn enter(&mut self, col: usize) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError {
                column: col,
                message: format!(
                    "expression is nested too deeply (more than {MAX_DEPTH} levels of parentheses, brackets, calls or unary operators)"
                ),
            });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn parse_or(&mut self) -> Result<Node, ExprError> {
        let mut items = vec![self.parse_and()?];
        while self.at_punct("||") || self.at_kw("or") {
            self.advance();
            items.push(self.parse_and()?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Node::Lit(Value::Null))
        } else {
            Node::Or(items)
        })
    }

    fn parse_and(&mut self) -> Result<Node, ExprError> {
        let mut items = vec![self.parse_not()?];
        while self.at_punct("&&") || self.at_kw("and") {
            self.advance();
            items.push(self.parse_not()?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Node::Lit(Value::Null))
        } else {
            Node::And(items)
        })
    }

    fn parse_not(&mut self) -> Result<Node, ExprError> {
        if self.at_punct("!") || self.at_kw("not") {
            let col = self.advance().col;
            self.enter(col)?;
            let inner = self.parse_not()?;
            self.leave();
            return Ok(Node::Not(Box::new(inner)));
        }
        self.parse_cmp()
    }

    fn cmp_op(&self) -> Option<CmpOp> {
        match self.peek().tok {
            Tok::Punct("==") => Some(CmpOp::Eq),
            Tok::Punct("!=") => Some(CmpOp::Ne),
            Tok::Punct("<") => Some(CmpOp::Lt),
            Tok::Punct("<=") => Some(CmpOp::Le),
            Tok::Punct(">") => Some(CmpOp::Gt),
            Tok::Punct(">=") => Some(CmpOp::Ge),
            _ => None,
        }
    }

    fn parse_cmp(&mut self) -> Result<Node, ExprError> {
        let left = self.parse_in()?;
        let Some(op) = self.cmp_op() else {
            return Ok(left);
        };
        let op_col = self.advance().col;
        let right = self.parse_in()?;
        if self.cmp_op().is_some() {
            return Err(ExprError {
                column: op_col,
                message: "comparison operators cannot be chained; add parentheses".to_owned(),
            });
        }
        Ok(Node::Cmp(op, Box::new(left), Box::new(right)))
    }

    fn parse_in(&mut self) -> Result<Node, ExprError> {
        let left = self.parse_add()?;
        if !self.at_kw("in") {
            return Ok(left);
        }
        let in_col = self.advance().col;
        let right = self.parse_add()?;
        if self.at_kw("in") {
            return Err(ExprError {
                column: in_col,
                message: "'in' cannot be chained; add parentheses".to_owned(),
            });
        }
        Ok(Node::In(Box::new(left), Box::new(right)))
    }

    fn parse_add(&mut self) -> Result<Node, ExprError> {
        let first = self.parse_mul()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek().tok {
                Tok::Punct("+") => ArithOp::Add,
                Tok::Punct("-") => ArithOp::Sub,
                _ => break,
            };
            self.advance();
            rest.push((op, self.parse_mul()?));
        }
        Ok(if rest.is_empty() {
            first
        } else {
            Node::Arith(Box::new(first), rest)
        })
    }

    fn parse_mul(&mut self) -> Result<Node, ExprError> {
        let first = self.parse_unary()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek().tok {
                Tok::Punct("*") => ArithOp::Mul,
                Tok::Punct("/") => ArithOp::Div,
                Tok::Punct("%") => ArithOp::Rem,
                _ => break,
            };
            self.advance();
            rest.push((op, self.parse_unary()?));
        }
        Ok(if rest.is_empty() {
            first
        } else {
            Node::Arith(Box::new(first), rest)
        })
    }

    fn parse_unary(&mut self) -> Result<Node, ExprError> {
        if self.at_punct("-") {
            let col = self.advance().col;
            self.enter(col)?;
            let inner = self.parse_unary()?;
            self.leave();
            return Ok(Node::Neg(Box::new(inner)));
        }
        self.parse_primary()
    }

    fn operand_error(&self) -> ExprError {
        let found = describe(self.peek());
        let mut message = match self.prev() {
            Some(p) => format!(
                "expected an operand after '{}', found {found}",
                clip(&p.text)
            ),
            None => format!("expected an operand, found {found}"),
        };
        if self.at_punct("!") || self.at_kw("not") {
            message.push_str(
                " ('!'/'not' binds looser than comparisons and arithmetic; add parentheses)",
            );
        }
        self.err_here(message)
    }

    fn parse_primary(&mut self) -> Result<Node, ExprError> {
        let t = self.peek();
        match &t.tok {
            Tok::Num(n) => {
                self.advance();
                Ok(Node::Lit(Value::Number(n.clone())))
            }
            Tok::Str(s) => {
                self.advance();
                Ok(Node::Lit(Value::String(s.clone())))
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => {
                    self.advance();
                    Ok(Node::Lit(Value::Bool(true)))
                }
                "false" => {
                    self.advance();
                    Ok(Node::Lit(Value::Bool(false)))
                }
                "null" => {
                    self.advance();
                    Ok(Node::Lit(Value::Null))
                }
                n if is_keyword(n) => Err(self.operand_error()),
                _ if matches!(self.peek_at(1).tok, Tok::Punct("(")) => self.parse_call(),
                _ => Ok(Node::Path(self.parse_path()?)),
            },
            Tok::Punct("(") => {
                let col = t.col;
                self.advance();
                self.enter(col)?;
                let inner = self.parse_or()?;
                if !self.at_punct(")") {
                    return Err(self.err_here(format!(
                        "expected ')' to close '(' at column {col}, found {}",
                        describe(self.peek())
                    )));
                }
                self.advance();
                self.leave();
                Ok(inner)
            }
            Tok::Punct("[") => {
                let col = t.col;
                self.advance();
                self.enter(col)?;
                let mut items = Vec::new();
                if !self.at_punct("]") {
                    loop {
                        items.push(self.parse_or()?);
                        if self.at_punct(",") {
                            self.advance();
                        } else if self.at_punct("]") {
                            break;
                        } else {
                            return Err(self.err_here(format!(
                                "expected ',' or ']' in list opened at column {col}, found {}",
                                describe(self.peek())
                            )));
                        }
                    }
                }
                self.advance();
                self.leave();
                Ok(Node::List(items))
            }
            _ => Err(self.operand_error()),
        }
    }

    fn parse_call(&mut self) -> Result<Node, ExprError> {
        let name_tok = self.advance();
        let name = name_tok.text.as_str();
        let col = name_tok.col;
        if name != "len" && name != "exists" {
            return Err(ExprError {
                column: col,
                message: format!("unknown function '{}' (known: {FUNCTIONS})", clip(name)),
            });
        }
        self.advance(); // '('
        self.enter(col)?;
        let mut args = Vec::new();
        if !self.at_punct(")") {
            loop {
                let arg_col = self.peek().col;
                let is_path_start = matches!(&self.peek().tok, Tok::Ident(s) if !is_keyword(s))
                    && !matches!(self.peek_at(1).tok, Tok::Punct("("));
                let arg = self.parse_or()?;
                args.push((arg_col, is_path_start, arg));
                if self.at_punct(",") {
                    self.advance();
                } else if self.at_punct(")") {
                    break;
                } else {
                    return Err(self.err_here(format!(
                        "expected ',' or ')' in call to {name}(), found {}",
                        describe(self.peek())
                    )));
                }
            }
        }
        self.advance(); // ')'
        self.leave();
        if args.len() != 1 {
            return Err(ExprError {
                column: col,
                message: format!("{name}() takes exactly 1 argument, found {}", args.len()),
            });
        }
        let Some((arg_col, is_path_start, arg)) = args.pop() else {
            return Err(ExprError {
                column: col,
                message: format!("{name}() takes exactly 1 argument, found 0"),
            });
        };
        if name == "len" {
            return Ok(Node::Len(Box::new(arg)));
        }
        match arg {
            Node::Path(p) if is_path_start => Ok(Node::Exists(p)),
            _ => Err(ExprError {
                column: arg_col,
                message: "exists() expects a path such as output.field".to_owned(),
            }),
        }
    }

    fn parse_path(&mut self) -> Result<PathExpr, ExprError> {
        let root = self.advance().text.clone();
        let mut segs = Vec::new();
        loop {
            if self.at_punct(".") {
                self.advance();
                match &self.peek().tok {
                    Tok::Ident(name) => {
                        segs.push(Seg::Field(name.clone()));
                        self.advance();
                    }
                    _ => {
                        return Err(self.err_here(format!(
                            "expected a field name after '.', found {}",
                            describe(self.peek())
                        )));
                    }
                }
            } else if self.at_punct("[") {
                let open = self.advance().col;
                let t = self.peek();
                let seg = match &t.tok {
                    Tok::Str(s) => Some(Seg::Field(s.clone())),
                    Tok::Num(n) => n
                        .as_u64()
                        .and_then(|u| usize::try_from(u).ok())
                        .map(Seg::Index),
                    _ => None,
                };
                let Some(seg) = seg else {
                    return Err(self.err_here(format!(
                        "expected a non-negative integer or a quoted key inside '[ ]', found {}",
                        describe(t)
                    )));
                };
                self.advance();
                if !self.at_punct("]") {
                    return Err(self.err_here(format!(
                        "expected ']' to close '[' at column {open}, found {}",
                        describe(self.peek())
                    )));
                }
                self.advance();
                segs.push(seg);
            } else {
                break;
            }
        }
        Ok(PathExpr { root, segs })
    }
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

fn eval_err(message: impl Into<String>) -> EvalError {
    EvalError {
        message: message.into(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn resolve(root: Value, segs: &[Seg]) -> Value {
    let mut cur = root;
    for seg in segs {
        cur = match (seg, cur) {
            (Seg::Field(k), Value::Object(mut m)) => m.remove(k).unwrap_or(Value::Null),
            (Seg::Index(i), Value::Array(a)) => a.into_iter().nth(*i).unwrap_or(Value::Null),
            _ => return Value::Null,
        };
    }
    cur
}

#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn of(n: &Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i128::from(i))
        } else if let Some(u) = n.as_u64() {
            Num::Int(i128::from(u))
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

fn num_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    match (Num::of(a), Num::of(b)) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        (x, y) => x.as_f64().partial_cmp(&y.as_f64()),
    }
}

fn float_value(f: f64) -> Result<Value, EvalError> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| eval_err("arithmetic overflow: the result is not a finite number"))
}

fn int_value(i: i128) -> Result<Value, EvalError> {
    if let Ok(v) = i64::try_from(i) {
        Ok(Value::Number(v.into()))
    } else if let Ok(v) = u64::try_from(i) {
        Ok(Value::Number(v.into()))
    } else {
        float_value(i as f64)
    }
}

/// Structural equality with numeric comparison of numbers.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn arith(op: ArithOp, a: Value, b: Value) -> Result<Value, EvalError> {
    let (Value::Number(x), Value::Number(y)) = (&a, &b) else {
        return Err(eval_err(format!(
            "cannot apply '{}' to {} and {} (arithmetic needs two numbers)",
            op.symbol(),
            type_name(&a),
            type_name(&b)
        )));
    };
    let (x, y) = (Num::of(x), Num::of(y));
    let zero = match y {
        Num::Int(v) => v == 0,
        Num::Float(v) => v == 0.0,
    };
    if zero && op == ArithOp::Div {
        return Err(eval_err("division by zero"));
    }
    if zero && op == ArithOp::Rem {
        return Err(eval_err("division by zero (remainder '%' of zero divisor)"));
    }
    if let (Num::Int(p), Num::Int(q)) = (x, y) {
        let exact = match op {
            ArithOp::Add => p.checked_add(q),
            ArithOp::Sub => p.checked_sub(q),
            ArithOp::Mul => p.checked_mul(q),
            ArithOp::Div => match p.checked_rem(q) {
                Some(0) => p.checked_div(q),
                _ => None,
            },
            ArithOp::Rem => p.checked_rem(q),
        };
        if let Some(r) = exact
            && (i64::try_from(r).is_ok() || u64::try_from(r).is_ok())
        {
            return int_value(r);
        }
    }
    let (p, q) = (x.as_f64(), y.as_f64());
    let r = match op {
        ArithOp::Add => p + q,
        ArithOp::Sub => p - q,
        ArithOp::Mul => p * q,
        ArithOp::Div => p / q,
        ArithOp::Rem => p % q,
    };
    float_value(r)
}

fn eval_node(node: &Node, scope: &dyn Scope) -> Result<Value, EvalError> {
    match node {
        Node::Lit(v) => Ok(v.clone()),
        Node::Path(p) => {
            let root = scope
                .lookup(&p.root)
                .ok_or_else(|| eval_err(format!("unknown variable '{}'", p.root)))?;
            Ok(resolve(root, &p.segs))
        }
        Node::Exists(p) => Ok(Value::Bool(
            scope
                .lookup(&p.root)
                .is_some_and(|root| !resolve(root, &p.segs).is_null()),
        )),
        Node::List(items) => items
            .iter()
            .map(|n| eval_node(n, scope))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Node::Not(inner) => match eval_node(inner, scope)? {
            Value::Bool(b) => Ok(Value::Bool(!b)),
            other => Err(eval_err(format!(
                "operand of '!' must be a boolean, found {}",
                type_name(&other)
            ))),
        },
        Node::Neg(inner) => match eval_node(inner, scope)? {
            Value::Number(n) => match Num::of(&n) {
                Num::Int(i) => match i.checked_neg() {
                    Some(r) => int_value(r),
                    None => float_value(-(i as f64)),
                },
                Num::Float(f) => float_value(-f),
            },
            other => Err(eval_err(format!(
                "operand of unary '-' must be a number, found {}",
                type_name(&other)
            ))),
        },
        Node::And(items) => {
            for n in items {
                match eval_node(n, scope)? {
                    Value::Bool(true) => {}
                    Value::Bool(false) => return Ok(Value::Bool(false)),
                    other => {
                        return Err(eval_err(format!(
                            "operands of '&&' must be booleans, found {}",
                            type_name(&other)
                        )));
                    }
                }
            }
            Ok(Value::Bool(true))
        }
        Node::Or(items) => {
            for n in items {
                match eval_node(n, scope)? {
                    Value::Bool(false) => {}
                    Value::Bool(true) => return Ok(Value::Bool(true)),
                    other => {
                        return Err(eval_err(format!(
                            "operands of '||' must be booleans, found {}",
                            type_name(&other)
                        )));
                    }
                }
            }
            Ok(Value::Bool(false))
        }
        Node::Cmp(op, l, r) => {
            let a = eval_node(l, scope)?;
            let b = eval_node(r, scope)?;
            let result = match op {
                CmpOp::Eq => json_eq(&a, &b),
                CmpOp::Ne => !json_eq(&a, &b),
                _ => {
                    let ord = match (&a, &b) {
                        (Value::Number(x), Value::Number(y)) => num_cmp(x, y),
                        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
                        _ => None,
                    };
                    let Some(ord) = ord else {
                        return Err(eval_err(format!(
                            "cannot compare {} with {} using '{}' (ordering needs two numbers or two strings)",
                            type_name(&a),
                            type_name(&b),
                            op.symbol()
                        )));
                    };
                    match op {
                        CmpOp::Lt => ord == Ordering::Less,
                        CmpOp::Le => ord != Ordering::Greater,
                        CmpOp::Gt => ord == Ordering::Greater,
                        _ => ord != Ordering::Less,
                    }
                }
            };
            Ok(Value::Bool(result))
        }
        Node::In(l, r) => {
            let needle = eval_node(l, scope)?;
            let hay = eval_node(r, scope)?;
            match (&needle, &hay) {
                (_, Value::Array(items)) => {
                    Ok(Value::Bool(items.iter().any(|v| json_eq(&needle, v))))
                }
                (Value::String(n), Value::String(h)) => Ok(Value::Bool(h.contains(n.as_str()))),
                (Value::String(k), Value::Object(m)) => Ok(Value::Bool(m.contains_key(k))),
                (_, Value::String(_)) => Err(eval_err(format!(
                    "'in' with a string on the right needs a string on the left, found {}",
                    type_name(&needle)
                ))),
                (_, Value::Object(_)) => Err(eval_err(format!(
                    "'in' with an object on the right needs a string key on the left, found {}",
                    type_name(&needle)
                ))),
                _ => Err(eval_err(format!(
                    "'in' needs an array, string or object on the right, found {}",
                    type_name(&hay)
                ))),
            }
        }
        Node::Arith(first, rest) => {
            let mut acc = eval_node(first, scope)?;
            for (op, n) in rest {
                let rhs = eval_node(n, scope)?;
                acc = arith(*op, acc, rhs)?;
            }
            Ok(acc)
        }
        Node::Len(inner) => {
            let v = eval_node(inner, scope)?;
            let n = match &v {
                Value::String(s) => s.chars().count(),
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                other => {
                    return Err(eval_err(format!(
                        "len() needs a string, array or object, found {}",
                        type_name(other)
                    )));
                }
            };
            Ok(Value::Number(Number::from(n as u64)))
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn scope() -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        m.insert(
            "output".to_owned(),
            json!({
                "items": [{"score": 0.75, "name": "a"}, {"score": 0.25}],
                "tags": ["urgent", "x"],
                "count": 3,
                "name": "hello",
                "flag": true,
                "nothing": null,
                "obj": {"k": 1, "in": 2},
                "with space": "yes",
                "big": 9223372036854775807i64,
                "ubig": 18446744073709551615u64,
                "neg": -4,
                "s": "5"
            }),
        );
        m.insert("Iterator".to_owned(), json!(3));
        m.insert("FaaS".to_owned(), json!("lambda"));
        m.insert("loop".to_owned(), json!({"i": 2}));
        m
    }

    fn ev(src: &str) -> Value {
        match Expr::parse(src) {
            Ok(e) => match e.eval(&scope()) {
                Ok(v) => v,
                Err(err) => panic!("eval of {src:?} failed: {err}"),
            },
            Err(err) => panic!("parse of {src:?} failed: {err}"),
        }
    }

    fn t(src: &str) -> bool {
        match ev(src) {
            Value::Bool(b) => b,
            other => panic!("{src:?} gave non-boolean {other}"),
        }
    }

    fn perr(src: &str) -> String {
        match Expr::parse(src) {
            Ok(e) => panic!("expected parse error for {src:?}, got {e:?}"),
            Err(err) => err.to_string(),
        }
    }

    fn eerr(src: &str) -> String {
        match Expr::parse(src) {
            Ok(e) => match e.eval(&scope()) {
                Ok(v) => panic!("expected eval error for {src:?}, got {v}"),
                Err(err) => err.to_string(),
            },
            Err(err) => panic!("parse of {src:?} failed: {err}"),
        }
    }

    // ---- paper compatibility ------------------------------------------------

    #[test]
    fn paper_expressions() {
        assert!(t("Iterator < 8"));
        assert!(t("FaaS=='lambda'"));
        let mut s = scope();
        s.insert("Iterator".into(), json!(8));
        s.insert("FaaS".into(), json!("gcf"));
        assert!(!Expr::parse("Iterator < 8").unwrap().eval_bool(&s).unwrap());
        assert!(
            !Expr::parse("FaaS=='lambda'")
                .unwrap()
                .eval_bool(&s)
                .unwrap()
        );
    }

    // ---- literals ------------------------------------------------------------

    #[test]
    fn number_literals() {
        assert_eq!(ev("42"), json!(42));
        assert_eq!(ev("-3"), json!(-3));
        assert_eq!(ev("0.5"), json!(0.5));
        assert_eq!(ev("1e3"), json!(1000.0));
        assert_eq!(ev("2.5E-1"), json!(0.25));
        assert_eq!(ev("1e+2"), json!(100.0));
        assert_eq!(ev("18446744073709551615"), json!(18446744073709551615u64));
        assert_eq!(ev("-9223372036854775808"), json!(i64::MIN));
        assert!(t("1e3 == 1000"));
        // Larger than u64 becomes a float.
        assert!(t("100000000000000000000 > 1"));
    }

    #[test]
    fn string_literals_and_escapes() {
        assert_eq!(ev("'abc'"), json!("abc"));
        assert_eq!(ev("\"abc\""), json!("abc"));
        assert_eq!(ev(r#"'a\'b'"#), json!("a'b"));
        assert_eq!(ev(r#""a\"b""#), json!("a\"b"));
        assert_eq!(ev(r#"'\\'"#), json!("\\"));
        assert_eq!(ev(r#"'\n\t\r'"#), json!("\n\t\r"));
        assert_eq!(ev(r#"'say "hi"'"#), json!("say \"hi\""));
        assert_eq!(ev(r#""it's""#), json!("it's"));
        assert_eq!(ev("''"), json!(""));
        assert_eq!(ev("'héllo ✓'"), json!("héllo ✓"));
    }

    #[test]
    fn keyword_literals() {
        assert_eq!(ev("true"), json!(true));
        assert_eq!(ev("false"), json!(false));
        assert_eq!(ev("null"), Value::Null);
        assert_eq!(ev("[1, 'a', [true], null]"), json!([1, "a", [true], null]));
        assert_eq!(ev("[]"), json!([]));
    }

    // ---- paths ---------------------------------------------------------------

    #[test]
    fn paths() {
        assert_eq!(ev("output.items[0].score"), json!(0.75));
        assert_eq!(ev("output.items[1]"), json!({"score": 0.25}));
        assert_eq!(ev("output['with space']"), json!("yes"));
        assert_eq!(ev("output[\"name\"]"), json!("hello"));
        assert_eq!(ev("loop.i"), json!(2));
        assert_eq!(ev("Iterator"), json!(3));
        assert_eq!(ev("output.obj.in"), json!(2));
        assert_eq!(ev("output . items [ 0 ] . name"), json!("a"));
    }

    #[test]
    fn missing_fields_are_null() {
        assert_eq!(ev("output.maybe"), Value::Null);
        assert!(t("output.maybe == null"));
        assert!(t("output.maybe.deeper[3] == null"));
        assert!(t("output.items[9] == null"));
        assert!(t("output.count.x == null"));
        assert!(t("output.items.x == null"));
        assert!(t("output.obj[0] == null"));
        assert!(t("output.nothing == null"));
    }

    #[test]
    fn missing_root_is_error() {
        assert_eq!(eerr("nope.x == 1"), "unknown variable 'nope'");
        assert_eq!(
            eerr("Iterator < 8 && missing"),
            "unknown variable 'missing'"
        );
        // Short-circuit skips the missing root.
        assert!(!t("false && missing"));
        assert!(t("true || missing"));
    }

    #[test]
    fn roots_listing() {
        let e = Expr::parse("output.x > 1 && Iterator < 8 || output.y && exists(loop.i)").unwrap();
        assert_eq!(e.roots(), vec!["output", "Iterator", "loop"]);
        assert!(Expr::parse("1 + 2").unwrap().roots().is_empty());
        let e = Expr::parse("len([a, -b, !c]) in (d + e * f) == (g.h[0] < 1)").unwrap();
        assert_eq!(e.roots(), vec!["a", "b", "c", "d", "e", "f", "g"]);
    }

    // ---- operators -------------------------------------------------------------

    #[test]
    fn equality() {
        assert!(t("1 == 1.0"));
        assert!(t("1 != 2"));
        assert!(t("'a' == 'a'"));
        assert!(t("'a' != 1"));
        assert!(t("null == null"));
        assert!(t("[1, 2.0] == [1.0, 2]"));
        assert!(t("output.obj == output.obj"));
        assert!(t("output.items[1] != output.items[0]"));
        assert!(t("true == true"));
        assert!(t("true != 1"));
        assert!(t("output.big == 9223372036854775807"));
        assert!(t("output.ubig == 18446744073709551615"));
        assert!(t("output.ubig != 18446744073709551614"));
        assert!(t("[1] != [1, 2]"));
        assert!(t("output.tags == ['urgent', 'x']"));
    }

    #[test]
    fn ordering() {
        assert!(t("1 < 2"));
        assert!(t("2 <= 2"));
        assert!(t("3 > 2.5"));
        assert!(t("3 >= 3.0"));
        assert!(!t("3 > 3"));
        assert!(t("'abc' < 'abd'"));
        assert!(t("'b' > 'a'"));
        assert!(t("'a' <= 'a'"));
        assert!(t("output.neg < 0"));
        assert!(t("output.ubig > output.big"));
        assert!(t("-1 < 18446744073709551615"));
    }

    #[test]
    fn ordering_type_errors() {
        assert_eq!(
            eerr("'a' < 1"),
            "cannot compare string with number using '<' (ordering needs two numbers or two strings)"
        );
        assert!(eerr("null >= 1").starts_with("cannot compare null with number"));
        assert!(eerr("true > false").starts_with("cannot compare boolean with boolean"));
        assert!(eerr("[1] <= [2]").starts_with("cannot compare array with array"));
        assert!(eerr("output.obj > 1").starts_with("cannot compare object with number"));
        assert!(eerr("output.s > 1").starts_with("cannot compare string with number"));
    }

    #[test]
    fn membership() {
        assert!(t("1 in [1, 2]"));
        assert!(t("1.0 in [1, 2]"));
        assert!(!t("3 in [1, 2]"));
        assert!(t("'urgent' in output.tags"));
        assert!(t("'ab' in 'xabc'"));
        assert!(!t("'ba' in 'xabc'"));
        assert!(t("'' in 'x'"));
        assert!(t("'k' in output.obj"));
        assert!(!t("'zz' in output.obj"));
        assert!(t("[1] in [[1], 2]"));
        assert!(t("not 'z' in output.tags"));
        assert!(t("'a' in ['a'] == true"));
        assert_eq!(
            eerr("1 in 'abc'"),
            "'in' with a string on the right needs a string on the left, found number"
        );
        assert_eq!(
            eerr("1 in output.obj"),
            "'in' with an object on the right needs a string key on the left, found number"
        );
        assert_eq!(
            eerr("1 in 2"),
            "'in' needs an array, string or object on the right, found number"
        );
        assert_eq!(
            eerr("'a' in output.maybe"),
            "'in' needs an array, string or object on the right, found null"
        );
    }

    #[test]
    fn logic() {
        assert!(t("true && true"));
        assert!(!t("true && false"));
        assert!(t("false || true"));
        assert!(!t("false || false"));
        assert!(t("true and true"));
        assert!(t("false or true"));
        assert!(t("!false"));
        assert!(t("not false"));
        assert!(t("!!true"));
        assert!(t("not not true"));
        assert!(t("true && true && true && true"));
        assert!(!t("true && true && false && true"));
        assert!(t("false || false || true"));
    }

    #[test]
    fn logic_type_errors() {
        assert_eq!(
            eerr("1 && true"),
            "operands of '&&' must be booleans, found number"
        );
        assert_eq!(
            eerr("true && 'x'"),
            "operands of '&&' must be booleans, found string"
        );
        assert_eq!(
            eerr("null || true"),
            "operands of '||' must be booleans, found null"
        );
        assert_eq!(
            eerr("false or []"),
            "operands of '||' must be booleans, found array"
        );
        assert_eq!(eerr("!1"), "operand of '!' must be a boolean, found number");
        assert_eq!(
            eerr("not output.obj"),
            "operand of '!' must be a boolean, found object"
        );
        // Short-circuit: the bad operand is never evaluated.
        assert!(!t("false && 1"));
        assert!(t("true || 1"));
    }

    #[test]
    fn arithmetic() {
        assert_eq!(ev("1 + 2"), json!(3));
        assert_eq!(ev("5 - 7"), json!(-2));
        assert_eq!(ev("6 * 7"), json!(42));
        assert_eq!(ev("6 / 2"), json!(3));
        assert_eq!(ev("7 / 2"), json!(3.5));
        assert_eq!(ev("7 % 3"), json!(1));
        assert_eq!(ev("-7 % 3"), json!(-1));
        assert_eq!(ev("0.5 + 0.25"), json!(0.75));
        assert_eq!(ev("1 + 0.5"), json!(1.5));
        assert_eq!(ev("7.5 % 2"), json!(1.5));
        assert_eq!(ev("--3"), json!(3));
        assert_eq!(ev("-output.neg"), json!(4));
        assert_eq!(ev("-0.5"), json!(-0.5));
        assert_eq!(ev("10 - 2 - 3"), json!(5));
        assert_eq!(ev("100 / 10 / 5"), json!(2));
        assert!(t("Iterator + 1 == 4"));
        assert!(t("loop.i * 2 >= 4"));
    }

    #[test]
    fn arithmetic_overflow_and_errors() {
        // Overflow falls back to floats.
        assert!(t("output.big + 1 > output.big"));
        assert_eq!(ev("output.big + 1"), json!(9223372036854775808u64));
        assert!(ev("output.ubig + 1").is_f64());
        assert!(ev("output.ubig * output.ubig").is_f64());
        assert!(ev("-output.ubig").is_f64());
        assert!(ev("-9223372036854775808 - 1").is_f64());
        assert_eq!(
            eerr("1e308 * 10"),
            "arithmetic overflow: the result is not a finite number"
        );
        assert_eq!(eerr("1 / 0"), "division by zero");
        assert_eq!(eerr("1.5 / 0.0"), "division by zero");
        assert!(eerr("1 % 0").starts_with("division by zero"));
        assert_eq!(
            eerr("'a' + 1"),
            "cannot apply '+' to string and number (arithmetic needs two numbers)"
        );
        assert!(eerr("null * 2").starts_with("cannot apply '*' to null and number"));
        assert!(eerr("2 - true").starts_with("cannot apply '-' to number and boolean"));
        assert!(eerr("[1] / 2").starts_with("cannot apply '/' to array and number"));
        assert!(eerr("2 % 'x'").starts_with("cannot apply '%' to number and string"));
        assert_eq!(
            eerr("-'x'"),
            "operand of unary '-' must be a number, found string"
        );
    }

    #[test]
    fn functions() {
        assert_eq!(ev("len('héllo')"), json!(5));
        assert_eq!(ev("len(output.tags)"), json!(2));
        assert_eq!(ev("len(output.obj)"), json!(2));
        assert_eq!(ev("len([])"), json!(0));
        assert!(t("len(output.items) > 1"));
        assert!(t("exists(output.name)"));
        assert!(t("exists(output.items[0].score)"));
        assert!(!t("exists(output.nothing)"));
        assert!(!t("exists(output.maybe.x)"));
        assert!(!t("exists(nosuchroot.x)"));
        assert!(!t("exists(nosuchroot)"));
        assert!(t("exists(Iterator)"));
        assert!(t("exists ( output . flag )"));
        assert_eq!(
            eerr("len(1)"),
            "len() needs a string, array or object, found number"
        );
        assert_eq!(
            eerr("len(output.maybe)"),
            "len() needs a string, array or object, found null"
        );
        assert_eq!(eerr("len(nosuch)"), "unknown variable 'nosuch'");
    }

    #[test]
    fn function_names_are_not_reserved_as_roots() {
        let mut s = scope();
        s.insert("len".into(), json!(7));
        assert!(Expr::parse("len == 7").unwrap().eval_bool(&s).unwrap());
    }

    // ---- precedence --------------------------------------------------------------

    #[test]
    fn precedence() {
        assert_eq!(ev("1 + 2 * 3"), json!(7));
        assert_eq!(ev("(1 + 2) * 3"), json!(9));
        assert_eq!(ev("2 * 3 % 4"), json!(2));
        assert_eq!(ev("-2 * 3"), json!(-6));
        assert_eq!(ev("1 - -1"), json!(2));
        // && binds tighter than ||
        assert!(t("true || false && false"));
        assert!(!t("(true || false) && false"));
        assert!(t("false && false || true"));
        // ! binds looser than comparisons: !(1 == 2)
        assert!(t("!1 == 2"));
        assert!(t("not 1 > 2"));
        // ! binds tighter than &&
        assert!(!t("!true && true"));
        assert!(t("!false || false"));
        // in binds looser than arithmetic, tighter than comparisons
        assert!(t("1 + 1 in [2]"));
        assert!(t("1 in [1] == true"));
        // comparison tighter than logic
        assert!(t("1 < 2 && 2 < 3"));
        assert!(t("1 == 1 or 1 == 2 and false"));
    }

    #[test]
    fn whitespace() {
        assert!(t("  Iterator<8  "));
        assert!(t("\tIterator\n<\n8"));
        assert!(t("(1+2)*3==9&&!false"));
    }

    // ---- parse errors --------------------------------------------------------------

    #[test]
    fn parse_error_messages() {
        assert_eq!(
            perr("true && "),
            "column 9: expected an operand after '&&', found end of input"
        );
        assert_eq!(
            perr("foo(1)"),
            "column 1: unknown function 'foo' (known: len, exists)"
        );
        assert_eq!(
            perr("ready &&"),
            "column 9: expected an operand after '&&', found end of input"
        );
        assert_eq!(
            perr("foo(output)"),
            "column 1: unknown function 'foo' (known: len, exists)"
        );
        assert_eq!(perr("1 + 'x"), "column 5: unterminated string");
        assert_eq!(perr("x == 'abc"), "column 6: unterminated string");
        assert_eq!(perr("'"), "column 1: unterminated string");
        assert_eq!(perr("'abc\\"), "column 1: unterminated string");
        assert_eq!(
            perr("a < b < c"),
            "column 3: comparison operators cannot be chained; add parentheses"
        );
        assert_eq!(
            perr("1 == 1 != 2"),
            "column 3: comparison operators cannot be chained; add parentheses"
        );
        assert_eq!(
            perr("a in b in c"),
            "column 3: 'in' cannot be chained; add parentheses"
        );
        assert_eq!(
            perr(""),
            "column 1: expected an operand, found end of input"
        );
        assert_eq!(
            perr("   "),
            "column 4: expected an operand, found end of input"
        );
        assert_eq!(
            perr("a b"),
            "column 3: expected an operator or end of input, found identifier 'b'"
        );
        assert_eq!(
            perr("(1 + 2"),
            "column 7: expected ')' to close '(' at column 1, found end of input"
        );
        assert_eq!(
            perr("1 + 2)"),
            "column 6: expected an operator or end of input, found ')'"
        );
        assert_eq!(
            perr("[1, 2"),
            "column 6: expected ',' or ']' in list opened at column 1, found end of input"
        );
        assert_eq!(
            perr("[1,]"),
            "column 4: expected an operand after ',', found ']'"
        );
        assert_eq!(
            perr("x = 1"),
            "column 3: unexpected '='; use '==' to compare"
        );
        assert_eq!(perr("a & b"), "column 3: unexpected '&'; use '&&' or 'and'");
        assert_eq!(perr("a | b"), "column 3: unexpected '|'; use '||' or 'or'");
        assert_eq!(perr("a # b"), "column 3: unexpected character '#'");
        assert_eq!(
            perr("'a\\qb'"),
            "column 3: unknown escape '\\q' in string (allowed: \\\\, \\', \\\", \\n, \\t, \\r)"
        );
        assert_eq!(
            perr("output."),
            "column 8: expected a field name after '.', found end of input"
        );
        assert_eq!(
            perr("output.5"),
            "column 8: expected a field name after '.', found number 5"
        );
        assert_eq!(
            perr("output[-1]"),
            "column 8: expected a non-negative integer or a quoted key inside '[ ]', found '-'"
        );
        assert_eq!(
            perr("output[1.5]"),
            "column 8: expected a non-negative integer or a quoted key inside '[ ]', found number 1.5"
        );
        assert_eq!(
            perr("output[x]"),
            "column 8: expected a non-negative integer or a quoted key inside '[ ]', found identifier 'x'"
        );
        assert_eq!(
            perr("output[0"),
            "column 9: expected ']' to close '[' at column 7, found end of input"
        );
        assert_eq!(
            perr("len(1, 2)"),
            "column 1: len() takes exactly 1 argument, found 2"
        );
        assert_eq!(
            perr("len()"),
            "column 1: len() takes exactly 1 argument, found 0"
        );
        assert_eq!(
            perr("len(1 2)"),
            "column 7: expected ',' or ')' in call to len(), found number 2"
        );
        assert_eq!(
            perr("x && exists(1)"),
            "column 13: exists() expects a path such as output.field"
        );
        assert_eq!(
            perr("exists(a.b == 1)"),
            "column 8: exists() expects a path such as output.field"
        );
        assert_eq!(
            perr("exists((a))"),
            "column 8: exists() expects a path such as output.field"
        );
        assert_eq!(
            perr("1 == not true"),
            "column 6: expected an operand after '==', found keyword 'not' ('!'/'not' binds looser than comparisons and arithmetic; add parentheses)"
        );
        assert_eq!(
            perr("and"),
            "column 1: expected an operand, found keyword 'and'"
        );
        assert_eq!(
            perr("1e"),
            "column 2: malformed number '1e': expected digits after the exponent"
        );
        assert_eq!(
            perr("1e+"),
            "column 2: malformed number '1e+': expected digits after the exponent"
        );
        assert_eq!(perr("1e999"), "column 1: number '1e999' is out of range");
        assert_eq!(
            perr("()"),
            "column 2: expected an operand after '(', found ')'"
        );
        assert_eq!(
            perr("1 +"),
            "column 4: expected an operand after '+', found end of input"
        );
        assert_eq!(perr("== 1"), "column 1: expected an operand, found '=='");
        assert_eq!(
            perr("x in"),
            "column 5: expected an operand after 'in', found end of input"
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(perr("'é' == #"), "column 8: unexpected character '#'");
    }

    #[test]
    fn error_types_and_traits() {
        let e: ExprError = Expr::parse("&").unwrap_err();
        assert_eq!(e.column, 1);
        let _: &dyn std::error::Error = &e;
        let ee = EvalError {
            message: "m".into(),
        };
        assert_eq!(ee.to_string(), "m");
        let _: &dyn std::error::Error = &ee;
        assert!("1 <".parse::<Expr>().is_err());
        assert_eq!("1 < 2".parse::<Expr>().unwrap().source(), "1 < 2");
    }

    // ---- eval_bool, scopes -------------------------------------------------------------

    #[test]
    fn eval_bool_requires_boolean() {
        let s = scope();
        assert!(Expr::parse("1 < 2").unwrap().eval_bool(&s).unwrap());
        let err = Expr::parse("1 + 2").unwrap().eval_bool(&s).unwrap_err();
        assert_eq!(
            err.message,
            "expected the expression to evaluate to a boolean, found number"
        );
        let err = Expr::parse("output.maybe")
            .unwrap()
            .eval_bool(&s)
            .unwrap_err();
        assert!(err.message.ends_with("found null"));
        let err = Expr::parse("output.name")
            .unwrap()
            .eval_bool(&s)
            .unwrap_err();
        assert!(err.message.ends_with("found string"));
    }

    #[test]
    fn json_map_scope() {
        let mut m = Map::new();
        m.insert("output".into(), json!({"ok": true}));
        let e = Expr::parse("output.ok && !exists(other)").unwrap();
        assert!(e.eval_bool(&m).unwrap());
        assert_eq!(m.lookup("nope"), None);
    }

    // ---- display / serde -------------------------------------------------------------

    #[test]
    fn display_and_source() {
        let src = "  output.x  == 'y' ";
        let e = Expr::parse(src).unwrap();
        assert_eq!(e.to_string(), src);
        assert_eq!(e.source(), src);
        assert_eq!(Expr::parse(&e.to_string()).unwrap(), e);
    }

    #[test]
    fn serde_round_trip() {
        let e = Expr::parse("Iterator < 8 && FaaS == \"lambda\"").unwrap();
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(j, r#""Iterator < 8 && FaaS == \"lambda\"""#);
        let back: Expr = serde_json::from_str(&j).unwrap();
        assert_eq!(back, e);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v, json!("Iterator < 8 && FaaS == \"lambda\""));
        let back: Expr = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);

        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Guard {
            when: Expr,
        }
        let g: Guard = serde_json::from_str(r#"{"when":"loop.i < 3"}"#).unwrap();
        assert_eq!(g.when.roots(), vec!["loop"]);
        assert_eq!(
            serde_json::to_string(&g).unwrap(),
            r#"{"when":"loop.i < 3"}"#
        );

        let err = serde_json::from_str::<Expr>(r#""a <""#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("column 4: expected an operand after '<', found end of input"),
            "{err}"
        );
        assert!(serde_json::from_str::<Expr>("5").is_err());
    }

    // ---- limits ----------------------------------------------------------------------

    #[test]
    fn nesting_limit() {
        let ok = format!("{}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(ev(&ok), json!(1));
        let bad = format!(
            "{}1{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        let err = Expr::parse(&bad).unwrap_err();
        assert_eq!(err.column, MAX_DEPTH + 1);
        assert!(err.message.contains("nested too deeply"), "{err}");

        // Unclosed deep nesting, far past the limit.
        let err = Expr::parse(&"(".repeat(4000)).unwrap_err();
        assert!(err.message.contains("nested too deeply"), "{err}");
        for open in ["[", "!", "-", "not ", "len("] {
            let src = open.repeat(4096 / open.len());
            let err = Expr::parse(&src).unwrap_err();
            assert!(err.message.contains("nested too deeply"), "{open}: {err}");
        }
        let ok = format!("{}true", "!".repeat(MAX_DEPTH));
        assert!(t(&ok));
    }

    #[test]
    fn long_flat_chains_are_fine() {
        // Flat chains don't nest: 1000 terms are OK and evaluate without deep recursion.
        let src = vec!["1"; 1000].join("+");
        assert_eq!(ev(&src), json!(1000));
        let src = vec!["true"; 600].join("&&");
        assert!(t(&src));
    }

    #[test]
    fn length_limit() {
        let src = format!("'{}'", "a".repeat(MAX_SOURCE_LEN - 2));
        assert_eq!(src.len(), MAX_SOURCE_LEN);
        assert!(Expr::parse(&src).is_ok());
        let src = format!("'{}'", "a".repeat(MAX_SOURCE_LEN - 1));
        let err = Expr::parse(&src).unwrap_err();
        assert_eq!(err.column, MAX_SOURCE_LEN + 1);
        assert_eq!(
            err.message,
            format!(
                "expression is too long: {} bytes (the limit is 4096)",
                MAX_SOURCE_LEN + 1
            )
        );
        let err = Expr::parse(&"x".repeat(1_000_000)).unwrap_err();
        assert!(err.message.starts_with("expression is too long"));
    }

    #[test]
    fn long_tokens_are_clipped_in_messages() {
        let name = "a".repeat(500);
        let err = perr(&format!("x {name}"));
        assert!(err.len() < 120, "{err}");
        assert!(err.contains('…'));
    }

    // ---- property tests -----------------------------------------------------------------

    const ATOMS: &[&str] = &[
        "output",
        "output.items",
        "[0]",
        ".score",
        "Iterator",
        "FaaS",
        "loop.i",
        "x",
        "1",
        "0",
        "-",
        "0.5",
        "1e3",
        "'a'",
        "\"b\"",
        "'",
        "\"",
        "\\",
        "(",
        ")",
        "[",
        "]",
        ",",
        ".",
        "&&",
        "||",
        "!",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "+",
        "*",
        "/",
        "%",
        "and",
        "or",
        "not",
        "in",
        "true",
        "false",
        "null",
        "len(",
        "exists(",
        " ",
        "=",
        "&",
        "|",
        "é",
        "9223372036854775807",
        "18446744073709551615",
        "1e308",
    ];

    fn exercise(src: &str) {
        if let Ok(e) = Expr::parse(src) {
            let s = scope();
            let _ = e.eval(&s);
            let _ = e.eval_bool(&s);
            let _ = e.roots();
            let again = Expr::parse(&e.to_string());
            assert_eq!(again.as_ref(), Ok(&e));
        }
    }

    fn quote(s: &str, q: char) -> String {
        let mut out = String::new();
        out.push(q);
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c == q => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        out.push(q);
        out
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["output", "Iterator", "FaaS", "loop", "missing"]),
            prop::collection::vec(
                prop_oneof![
                    prop::sample::select(vec![".items", ".score", ".tags", ".obj", ".in", ".i"])
                        .prop_map(str::to_owned),
                    (0usize..4).prop_map(|i| format!("[{i}]")),
                    "[a-z ]{0,4}".prop_map(|k| format!("[{}]", quote(&k, '"'))),
                ],
                0..4,
            ),
        )
            .prop_map(|(root, segs)| format!("{root}{}", segs.concat()))
    }

    fn expr_strategy() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            (0u32..10_000, 0u32..1000).prop_map(|(a, b)| format!("{a}.{b}")),
            (0u32..100, -20i32..20).prop_map(|(a, e)| format!("{a}e{e}")),
            ("[a-z'\"\\\\\\n\\t ]{0,6}", any::<bool>())
                .prop_map(|(s, dq)| quote(&s, if dq { '"' } else { '\'' })),
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
            path_strategy(),
            path_strategy().prop_map(|p| format!("exists({p})")),
        ];
        leaf.prop_recursive(5, 48, 4, |inner| {
            prop_oneof![
                (
                    inner.clone(),
                    prop::sample::select(vec![
                        "||", "or", "&&", "and", "==", "!=", "<", "<=", ">", ">=", "in", "+", "-",
                        "*", "/", "%",
                    ]),
                    inner.clone()
                )
                    .prop_map(|(a, op, b)| format!("({a}) {op} ({b})")),
                prop::collection::vec(inner.clone(), 2..5)
                    .prop_map(|v| format!("({})", v.join(") && ("))),
                prop::collection::vec(inner.clone(), 2..5)
                    .prop_map(|v| format!("({})", v.join(") + ("))),
                inner.clone().prop_map(|a| format!("!({a})")),
                inner.clone().prop_map(|a| format!("not ({a})")),
                inner.clone().prop_map(|a| format!("-({a})")),
                inner.clone().prop_map(|a| format!("len({a})")),
                prop::collection::vec(inner, 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_chars_never_panic(s in "[a-zA-Z0-9_ .\\[\\]()'\"\\\\!=<>&|+*/%,\\-é\\n\\t#]{0,64}") {
            exercise(&s);
        }

        #[test]
        fn random_token_soup_never_panics(parts in prop::collection::vec(prop::sample::select(ATOMS), 0..40)) {
            exercise(&parts.concat());
            exercise(&parts.join(" "));
        }

        #[test]
        fn generated_expressions_parse_and_round_trip(src in expr_strategy()) {
            let e = Expr::parse(&src);
            prop_assert!(e.is_ok(), "{src:?}: {:?}", e.err());
            let e = e.unwrap();
            let again = Expr::parse(&e.to_string()).unwrap();
            prop_assert_eq!(&again, &e);
            let json = serde_json::to_string(&e).unwrap();
            let back: Expr = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &e);
            let s = scope();
            let _ = e.eval(&s);
            let _ = e.eval_bool(&s);
        }

        #[test]
        fn string_literals_round_trip(s in "\\PC{0,12}", dq in any::<bool>()) {
            let src = quote(&s, if dq { '"' } else { '\'' });
            let v = Expr::parse(&src).unwrap().eval(&scope()).unwrap();
            prop_assert_eq!(v, Value::String(s));
        }

        #[test]
        fn integer_arithmetic_matches_i128(a in any::<i64>(), b in any::<i64>()) {
            let s = scope();
            let sum = Expr::parse(&format!("({a}) + ({b})")).unwrap().eval(&s).unwrap();
            let exact = i128::from(a) + i128::from(b);
            match i64::try_from(exact) {
                Ok(v) => prop_assert_eq!(sum, json!(v)),
                Err(_) => prop_assert!(sum.is_number()),
            }
            let lt = Expr::parse(&format!("({a}) < ({b})")).unwrap().eval_bool(&s).unwrap();
            prop_assert_eq!(lt, a < b);
        }
    }
}
