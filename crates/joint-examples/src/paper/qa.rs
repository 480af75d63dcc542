//! Question answering (paper §8.3: document_sort → Map → BERT):
//! `document_sort` → Map(`answer`) → FanIn → `qa_collect`.
//!
//! The corpus is generated deterministically from a seed ([`corpus`]): a few hundred short
//! encyclopedia-style documents about invented places, built from a fixed vocabulary. Each
//! document states two to four *facts* ("The river of Varos is Menel.") among filler sentences
//! that mention other places and the same attribute words, so retrieval has real distractors.
//! Every (place, attribute) fact is stated exactly once in the corpus, so each question has one
//! gold document and one answer ([`questions`]).
//!
//! * `document_sort` generates the corpus and the questions, ranks every document against each
//!   question with Okapi BM25 (k1 = 1.2, b = 0.75) and emits, per question, the `top_k` documents
//!   in rank order with their text (the Map's items, about 9 KB each with the defaults).
//! * `answer` (the reader, the paper's BERT stage) splits its candidates into sentences, scores
//!   each sentence by the IDF-weighted question terms it contains (IDF over the candidates'
//!   sentences), question bigrams it repeats and its document's retrieval score, and extracts the
//!   answer span: the first content word after the last matched question term.
//! * `qa_collect` gathers the answers in question order (the Map must be joined).

use std::collections::{BTreeSet, HashMap};

use joint_core::machine::FnError;
use joint_core::workflow::Workflow;
use joint_shim::{Handlers, fn_error, handler_fn};
use serde_json::{Value, json};

use super::rng::Rng;
use super::{cpu, field_u64, jround, list, load_shipped, object, or_defaults};

/// The definition (`examples/paper/question-answering.yaml`).
pub const DEFINITION: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/paper/question-answering.yaml"
));

/// Default corpus size.
pub const DEFAULT_DOCS: u64 = 300;
/// Default number of documents handed to the reader per question.
pub const DEFAULT_TOP_K: u64 = 10;

/// The question answering workflow: `document_sort` on `aws`, `answer` and `qa_collect` on
/// `aliyun`. The Map's width is the input's `questions`.
pub fn question_answering() -> Workflow {
    load_shipped("question-answering.yaml", DEFINITION)
}

/// The input of [`question_answering`]: `questions` questions over the default corpus (300
/// documents) of `seed`, 10 candidate documents each.
pub fn qa_input(questions: u32, seed: u64) -> Value {
    json!({"questions": questions, "docs": DEFAULT_DOCS, "top_k": DEFAULT_TOP_K, "seed": seed})
}

/// Attribute words: the relations the facts state.
const ATTRIBUTES: [&str; 16] = [
    "river", "capital", "founder", "language", "mountain", "festival", "harbor", "guild", "emblem",
    "market", "bridge", "temple", "dialect", "currency", "poet", "crop",
];

/// Filler vocabulary.
const FILLER: [&str; 96] = [
    "ancient",
    "valley",
    "merchants",
    "winter",
    "stone",
    "northern",
    "southern",
    "trade",
    "roads",
    "caravans",
    "salt",
    "wool",
    "copper",
    "forest",
    "coast",
    "island",
    "plains",
    "hills",
    "villages",
    "farmers",
    "fishermen",
    "sailors",
    "scholars",
    "priests",
    "soldiers",
    "kings",
    "queens",
    "council",
    "walls",
    "towers",
    "gates",
    "wells",
    "orchards",
    "vineyards",
    "harvest",
    "spring",
    "summer",
    "autumn",
    "storms",
    "floods",
    "drought",
    "famine",
    "plague",
    "war",
    "peace",
    "treaty",
    "alliance",
    "rebellion",
    "empire",
    "province",
    "border",
    "frontier",
    "pilgrims",
    "travelers",
    "songs",
    "stories",
    "legends",
    "chronicles",
    "maps",
    "ships",
    "horses",
    "cattle",
    "grain",
    "bread",
    "wine",
    "honey",
    "silver",
    "gold",
    "iron",
    "glass",
    "pottery",
    "weavers",
    "masons",
    "smiths",
    "painters",
    "dancers",
    "musicians",
    "feasts",
    "markets",
    "lanterns",
    "gardens",
    "fountains",
    "libraries",
    "schools",
    "courts",
    "laws",
    "taxes",
    "coins",
    "records",
    "census",
    "bells",
    "clocks",
    "roofs",
    "streets",
    "squares",
    "canals",
];

const VERBS: [&str; 16] = [
    "crossed",
    "built",
    "praised",
    "remembered",
    "feared",
    "traded",
    "guarded",
    "painted",
    "described",
    "visited",
    "named",
    "sheltered",
    "welcomed",
    "mapped",
    "taxed",
    "celebrated",
];

const STOPWORDS: [&str; 24] = [
    "the", "of", "is", "a", "an", "in", "and", "what", "which", "who", "to", "its", "was", "for",
    "by", "with", "on", "at", "from", "near", "were", "their", "many", "after",
];

const ONSETS: [&str; 16] = [
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "dr",
];
const VOWELS: [&str; 6] = ["a", "e", "i", "o", "u", "ae"];
const CODAS: [&str; 6] = ["", "", "n", "r", "s", "l"];

const DOC_TAG: u64 = 0xD0C;
const NAME_TAG: u64 = 0x4A3E;
const QUESTION_TAG: u64 = 0x9E57;

fn is_stopword(t: &str) -> bool {
    STOPWORDS.contains(&t)
}

/// A stated fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// The document stating it.
    pub doc: usize,
    /// The place it is about.
    pub entity: String,
    /// The attribute (one of a fixed list).
    pub attribute: &'static str,
    /// The value: the answer to "What is the {attribute} of {entity}?".
    pub value: String,
}

/// A generated corpus.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Document texts; a document's id is its index.
    pub docs: Vec<String>,
    /// Every fact the corpus states, each exactly once, in document order.
    pub facts: Vec<Fact>,
}

/// A question with its gold document and answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Question number (0-based).
    pub id: usize,
    /// "What is the {attribute} of {entity}?"
    pub text: String,
    /// The only document stating the answer.
    pub gold_doc: usize,
    /// The answer.
    pub answer: String,
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `n` distinct capitalized pseudowords.
fn names(rng: &mut Rng, n: usize, taken: &mut BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let syl = 2 + rng.below(2);
        let mut w = String::new();
        for _ in 0..syl {
            w.push_str(ONSETS[rng.below(ONSETS.len() as u64) as usize]);
            w.push_str(VOWELS[rng.below(VOWELS.len() as u64) as usize]);
        }
        w.push_str(CODAS[rng.below(CODAS.len() as u64) as usize]);
        let w = capitalize(&w);
        if !ATTRIBUTES.contains(&w.to_lowercase().as_str()) && taken.insert(w.clone()) {
            out.push(w);
        }
    }
    out
}

/// The corpus of `docs` documents generated from `seed`.
pub fn corpus(seed: u64, docs: usize) -> Corpus {
    let mut rng = Rng::for_stream(&[seed, NAME_TAG]);
    let mut taken = BTreeSet::new();
    let entities = names(&mut rng, (docs / 2).max(4), &mut taken);
    let values = names(&mut rng, (docs * 2).max(16), &mut taken);
    let mut stated: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut facts = Vec::new();
    let mut texts = Vec::with_capacity(docs);
    for d in 0..docs {
        let mut rng = Rng::for_stream(&[seed, d as u64, DOC_TAG]);
        let pick = |rng: &mut Rng, n: usize| rng.below(n as u64) as usize;
        let subject = pick(&mut rng, entities.len());
        let subj = &entities[subject];
        let mut sentences: Vec<String> = Vec::new();
        let n_facts = 2 + pick(&mut rng, 3);
        for _ in 0..n_facts {
            let first = pick(&mut rng, ATTRIBUTES.len());
            let Some(a) = (0..ATTRIBUTES.len())
                .map(|k| (first + k) % ATTRIBUTES.len())
                .find(|a| !stated.contains(&(subject, *a)))
            else {
                break;
            };
            stated.insert((subject, a));
            let value = values[pick(&mut rng, values.len())].clone();
            sentences.push(format!("The {} of {subj} is {value}.", ATTRIBUTES[a]));
            facts.push(Fact {
                doc: d,
                entity: subj.clone(),
                attribute: ATTRIBUTES[a],
                value,
            });
        }
        let n_filler = 10 + pick(&mut rng, 6);
        for _ in 0..n_filler {
            let len = 6 + pick(&mut rng, 5);
            let mut words: Vec<String> = Vec::with_capacity(len);
            for w in 0..len {
                let r = rng.f64();
                let word = if w == 2 {
                    VERBS[pick(&mut rng, VERBS.len())].to_string()
                } else if r < 0.12 {
                    ATTRIBUTES[pick(&mut rng, ATTRIBUTES.len())].to_string()
                } else if r < 0.20 {
                    entities[pick(&mut rng, entities.len())].clone()
                } else if r < 0.28 {
                    subj.clone()
                } else if r < 0.40 {
                    STOPWORDS[pick(&mut rng, STOPWORDS.len())].to_string()
                } else {
                    FILLER[pick(&mut rng, FILLER.len())].to_string()
                };
                words.push(word);
            }
            sentences.push(format!("{}.", capitalize(&words.join(" "))));
        }
        // Shuffle so the facts are not always first.
        for i in (1..sentences.len()).rev() {
            let j = pick(&mut rng, i + 1);
            sentences.swap(i, j);
        }
        texts.push(format!("{subj}. {}", sentences.join(" ")));
    }
    Corpus { docs: texts, facts }
}

/// `n` questions about distinct facts of `corpus`, chosen from `seed`.
pub fn questions(corpus: &Corpus, seed: u64, n: usize) -> Vec<Question> {
    let mut rng = Rng::for_stream(&[seed, QUESTION_TAG]);
    let mut order: Vec<usize> = (0..corpus.facts.len()).collect();
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
        .into_iter()
        .take(n)
        .enumerate()
        .map(|(id, k)| {
            let f = &corpus.facts[k];
            Question {
                id,
                text: format!("What is the {} of {}?", f.attribute, f.entity),
                gold_doc: f.doc,
                answer: f.value.clone(),
            }
        })
        .collect()
}

/// Lower-cased alphanumeric tokens.
fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Content tokens (stopwords removed).
fn terms(s: &str) -> Vec<String> {
    tokens(s).into_iter().filter(|t| !is_stopword(t)).collect()
}

/// An Okapi BM25 index.
#[derive(Debug)]
pub struct Bm25 {
    tf: Vec<HashMap<String, u32>>,
    len: Vec<f64>,
    avg_len: f64,
    df: HashMap<String, u32>,
}

impl Bm25 {
    const K1: f64 = 1.2;
    const B: f64 = 0.75;

    /// Index `docs`.
    pub fn new(docs: &[String]) -> Bm25 {
        let mut tf = Vec::with_capacity(docs.len());
        let mut len = Vec::with_capacity(docs.len());
        let mut df: HashMap<String, u32> = HashMap::new();
        for d in docs {
            let mut m: HashMap<String, u32> = HashMap::new();
            let ts = terms(d);
            len.push(ts.len() as f64);
            for t in ts {
                *m.entry(t).or_default() += 1;
            }
            for t in m.keys() {
                *df.entry(t.clone()).or_default() += 1;
            }
            tf.push(m);
        }
        let avg_len = len.iter().sum::<f64>() / len.len().max(1) as f64;
        Bm25 {
            tf,
            len,
            avg_len,
            df,
        }
    }

    /// `(document, score)` of the `k` best documents for `query`, best first (ties by id).
    pub fn top(&self, query: &str, k: usize) -> Vec<(usize, f64)> {
        let n = self.tf.len() as f64;
        let q: Vec<(String, f64)> = terms(query)
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|t| {
                let df = self.df.get(&t).copied().unwrap_or(0) as f64;
                let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                (t, idf)
            })
            .collect();
        let mut scored: Vec<(usize, f64)> = self
            .tf
            .iter()
            .enumerate()
            .map(|(d, m)| {
                let norm = Self::K1 * (1.0 - Self::B + Self::B * self.len[d] / self.avg_len);
                let s = q
                    .iter()
                    .map(|(t, idf)| {
                        let f = m.get(t).copied().unwrap_or(0) as f64;
                        idf * f * (Self::K1 + 1.0) / (f + norm)
                    })
                    .sum::<f64>();
                (d, s)
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        scored
    }
}

fn document_sort(input: &Value) -> Result<Value, FnError> {
    let input = &*or_defaults(input);
    const W: &str = "document_sort";
    object(
        input,
        W,
        "{\"questions\": n, \"docs\": n, \"top_k\": k, \"seed\": s}",
    )?;
    let n = field_u64(input, W, "questions", Some(4), 1, 1000)? as usize;
    let docs = field_u64(input, W, "docs", Some(DEFAULT_DOCS), 4, 100_000)? as usize;
    let k = field_u64(input, W, "top_k", Some(DEFAULT_TOP_K), 1, 1000)? as usize;
    let seed = field_u64(input, W, "seed", Some(1), 0, u64::MAX)?;
    let c = corpus(seed, docs);
    if n > c.facts.len() {
        return Err(fn_error(format!(
            "{W}: {n} questions asked, the corpus states only {} facts",
            c.facts.len()
        )));
    }
    let index = Bm25::new(&c.docs);
    Ok(Value::Array(
        questions(&c, seed, n)
            .into_iter()
            .map(|q| {
                let hits: Vec<Value> = index
                    .top(&q.text, k)
                    .into_iter()
                    .map(|(d, s)| json!({"id": d, "score": jround(s, 4), "text": c.docs[d]}))
                    .collect();
                json!({"qid": q.id, "question": q.text, "docs": hits})
            })
            .collect(),
    ))
}

/// Raw words (case kept) of a sentence.
fn words(s: &str) -> Vec<&str> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect()
}

fn answer(input: &Value) -> Result<Value, FnError> {
    const W: &str = "answer";
    object(input, W, "one item of document_sort's output")?;
    let qid = field_u64(input, W, "qid", None, 0, u64::MAX)?;
    let question = input
        .get("question")
        .and_then(Value::as_str)
        .ok_or_else(|| fn_error(format!("{W}: input has no \"question\"")))?;
    let docs = input
        .get("docs")
        .and_then(Value::as_array)
        .ok_or_else(|| fn_error(format!("{W}: input has no \"docs\" list")))?;
    // (doc id, retrieval score, sentence)
    let mut sents: Vec<(u64, f64, &str)> = Vec::new();
    let mut retrieved = Vec::with_capacity(docs.len());
    for d in docs {
        let id = field_u64(d, W, "id", None, 0, u64::MAX)?;
        let score = d.get("score").and_then(Value::as_f64).unwrap_or(0.0);
        let text = d
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| fn_error(format!("{W}: document {id} has no \"text\"")))?;
        retrieved.push(id);
        for s in text.split(['.', '?', '!']).map(str::trim) {
            if !s.is_empty() {
                sents.push((id, score, s));
            }
        }
    }
    if sents.is_empty() {
        return Ok(
            json!({"qid": qid, "question": question, "answer": null, "retrieved": retrieved}),
        );
    }
    let qterms: BTreeSet<String> = terms(question).into_iter().collect();
    let qtok = tokens(question);
    let qbigrams: BTreeSet<(String, String)> = qtok
        .windows(2)
        .map(|w| (w[0].clone(), w[1].clone()))
        .collect();
    let stoks: Vec<Vec<String>> = sents.iter().map(|s| tokens(s.2)).collect();
    let mut sf: HashMap<&str, u32> = HashMap::new();
    for ts in &stoks {
        for t in ts.iter().collect::<BTreeSet<_>>() {
            if qterms.contains(t) {
                *sf.entry(t.as_str()).or_default() += 1;
            }
        }
    }
    let total = stoks.len() as f64;
    let max_doc = sents.iter().map(|s| s.1).fold(0f64, f64::max).max(1e-9);
    let mut best = (f64::NEG_INFINITY, 0usize);
    for (i, ts) in stoks.iter().enumerate() {
        let present: BTreeSet<&String> = ts.iter().filter(|t| qterms.contains(*t)).collect();
        let idf: f64 = present
            .iter()
            .map(|t| (1.0 + total / (1.0 + sf[t.as_str()] as f64)).ln())
            .sum();
        let bigrams = ts
            .windows(2)
            .filter(|w| qbigrams.contains(&(w[0].clone(), w[1].clone())))
            .count() as f64;
        let score = idf + 0.5 * bigrams + 0.1 * sents[i].1 / max_doc;
        if score > best.0 {
            best = (score, i);
        }
    }
    let (doc, _, sentence) = sents[best.1];
    let ws = words(sentence);
    let last_match = ws
        .iter()
        .rposition(|w| qterms.contains(&w.to_lowercase()))
        .map_or(0, |p| p + 1);
    let is_candidate = |w: &str| {
        let l = w.to_lowercase();
        !is_stopword(&l) && !qterms.contains(&l)
    };
    let span = ws[last_match..]
        .iter()
        .find(|w| is_candidate(w))
        .or_else(|| ws.iter().find(|w| is_candidate(w)))
        .map(|w| w.to_string());
    Ok(json!({
        "qid": qid,
        "question": question,
        "answer": span,
        "doc": doc,
        "sentence": sentence,
        "score": jround(best.0, 4),
        "retrieved": retrieved,
    }))
}

fn collect(input: &Value) -> Result<Value, FnError> {
    let mut answers = list(input, "qa_collect")?.clone();
    answers.sort_by_key(|a| a.get("qid").and_then(Value::as_u64).unwrap_or(u64::MAX));
    let answered = answers
        .iter()
        .filter(|a| a.get("answer").is_some_and(|v| !v.is_null()))
        .count();
    Ok(json!({"questions": answers.len(), "answered": answered, "answers": answers}))
}

/// Register `document_sort`, `answer` and `qa_collect`.
pub fn register(h: &mut Handlers) {
    h.register(
        "document_sort",
        handler_fn(
            |v: Value, _| async move { cpu("document_sort", move || document_sort(&v)).await },
        ),
    );
    h.register(
        "answer",
        handler_fn(|v: Value, _| async move { cpu("answer", move || answer(&v)).await }),
    );
    h.register(
        "qa_collect",
        handler_fn(|v: Value, _| async move { collect(&v) }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_unique_and_stated_in_their_document() {
        let c = corpus(1, 300);
        let mut seen = BTreeSet::new();
        for f in &c.facts {
            assert!(seen.insert((f.entity.clone(), f.attribute)));
            let s = format!("The {} of {} is {}.", f.attribute, f.entity, f.value);
            assert!(c.docs[f.doc].contains(&s));
        }
        assert!(c.facts.len() >= 600);
    }

    #[test]
    fn retrieval_and_reader_find_the_gold_answers() {
        let input = qa_input(40, 5);
        let out = document_sort(&input).unwrap();
        let c = corpus(5, DEFAULT_DOCS as usize);
        let qs = questions(&c, 5, 40);
        let mut in_top = 0;
        let mut right = 0;
        for (item, q) in out.as_array().unwrap().iter().zip(&qs) {
            let a = answer(item).unwrap();
            if a["retrieved"]
                .as_array()
                .unwrap()
                .contains(&json!(q.gold_doc))
            {
                in_top += 1;
            }
            if a["answer"] == json!(q.answer) {
                right += 1;
            }
        }
        assert!(in_top >= 39, "gold in top-10 for {in_top}/40");
        assert!(right >= 36, "right answers {right}/40");
    }
}
