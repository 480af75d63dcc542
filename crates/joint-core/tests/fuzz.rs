//! Bad input, fuzzed: parsers and decoders never panic or hang and always say what is wrong; a
//! corpus of malformed definitions pins the exact error each must produce.
//!
//! Case counts: `JOINT_FUZZ_CASES` (default 2000 per target).

use std::path::Path;

use joint_core::envelope::Envelope;
use joint_core::expr::Expr;
use joint_core::sign::Keyring;
use proptest::prelude::*;
use serde_json::json;

fn cases() -> u32 {
    std::env::var("JOINT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn corpus() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Each malformed definition produces exactly the error in its `.expected` file
/// (`JOINT_BLESS=1` rewrites them).
#[test]
fn malformed_definitions_produce_their_exact_errors() {
    let bless = std::env::var("JOINT_BLESS").is_ok();
    let mut n = 0;
    for f in std::fs::read_dir(corpus()).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "expected") {
            continue;
        }
        let src = std::fs::read_to_string(&p).unwrap();
        let got = match joint_core::compile::load(&p.to_string_lossy(), &src) {
            Ok(_) => panic!("{} must be refused", p.display()),
            Err(d) => d.to_string(),
        };
        let exp = p.with_extension(format!(
            "{}.expected",
            p.extension().unwrap().to_string_lossy()
        ));
        if bless {
            std::fs::write(&exp, &got).unwrap();
        } else {
            let want = std::fs::read_to_string(&exp)
                .unwrap_or_else(|_| panic!("{} has no .expected file", p.display()));
            assert_eq!(got.trim_end(), want.trim_end(), "{}", p.display());
        }
        n += 1;
    }
    assert!(n >= 20, "corpus has {n} files");
}

fn examples() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut out = vec![];
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml" || e == "json") {
            out.push(std::fs::read_to_string(p).unwrap());
        }
    }
    out
}

fn mutate(src: &str, ops: &[(u8, usize, u8)]) -> String {
    let mut b = src.as_bytes().to_vec();
    for (op, at, byte) in ops {
        if b.is_empty() {
            b.push(*byte);
            continue;
        }
        let i = at % b.len();
        match op % 3 {
            0 => b[i] = *byte,
            1 => b.insert(i, *byte),
            _ => {
                b.remove(i);
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn valid_envelope() -> Envelope {
    Envelope {
        v: 1,
        workflow: "wf".into(),
        workflow_id: "run".into(),
        function: "A".into(),
        step: 3,
        branch: vec![joint_core::naming::Frame {
            index: 1,
            size: 4,
            fork_step: 2,
            window: None,
        }],
        vars: [("i".to_string(), 2)].into(),
        input: joint_core::Input::Inline(json!({"a": [1, 2, {"b": null}]})),
        home: "local".into(),
        def_hash: "abc".into(),
        trace: None,
        tag: None,
    }
}

/// The proptest seed: fixed (so CI is reproducible) unless `JOINT_PROP_SEED` names another one
/// or says `random`.
fn seed() -> proptest::test_runner::RngSeed {
    match std::env::var("JOINT_PROP_SEED").as_deref() {
        Ok("random") => proptest::test_runner::RngSeed::Random,
        Ok(s) => s
            .parse()
            .map(proptest::test_runner::RngSeed::Fixed)
            .unwrap_or(proptest::test_runner::RngSeed::Fixed(20_261_130)),
        Err(_) => proptest::test_runner::RngSeed::Fixed(20_261_130),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, rng_seed: seed(), ..ProptestConfig::default() })]

    #[test]
    fn definitions_from_arbitrary_text(s in "\\PC{0,400}") {
        for hint in ["x.yaml", "x.json", "x"] {
            if let Err(d) = joint_core::compile::load(hint, &s) {
                prop_assert!(!d.to_string().is_empty());
            }
        }
    }

    #[test]
    fn mutated_example_definitions(pick in any::<usize>(), ops in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8)) {
        let ex = examples();
        let src = mutate(&ex[pick % ex.len()], &ops);
        if let Err(d) = joint_core::compile::load("m.yaml", &src) {
            prop_assert!(!d.to_string().is_empty());
        }
        if let Err(d) = joint_core::compile::load("m.json", &src) {
            prop_assert!(!d.to_string().is_empty());
        }
    }

    #[test]
    fn subgraphs_from_arbitrary_json(ops in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..10)) {
        let src = mutate(include_str!("../../../examples/paper-subgraphs.json"), &ops);
        match joint_core::import::parse_subgraphs(&src) {
            Ok(subs) => { let _ = joint_core::import::import("fuzz", subs); }
            Err(d) => prop_assert!(!d.to_string().is_empty()),
        }
    }

    #[test]
    fn envelopes_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Err(e) = Envelope::decode(&bytes, 512) {
            prop_assert!(e.to_string().starts_with("invalid envelope"));
        }
    }

    #[test]
    fn mutated_signed_envelopes_are_refused_or_intact(ops in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6)) {
        let keys = Keyring::parse("k1:000102030405060708090a0b0c0d0e0f").unwrap();
        let mut e = valid_envelope();
        keys.sign(&mut e);
        let text = String::from_utf8(e.encode()).unwrap();
        let m = mutate(&text, &ops);
        if let Ok(d) = Envelope::decode(m.as_bytes(), 1 << 20) {
            // Whatever decodes either verifies as the very same event or is refused.
            match keys.verify(&d) {
                Ok(()) => {
                    let mut a = d.clone(); a.tag = None;
                    let mut b = e.clone(); b.tag = None;
                    prop_assert_eq!(a, b);
                }
                Err(err) => prop_assert!(err.to_string().starts_with("refused event")),
            }
        }
    }

    #[test]
    fn guards_from_arbitrary_text(s in "[a-z0-9_ .\\[\\]()'\"<>=!&|+*/%-]{0,80}") {
        if let Ok(e) = Expr::parse(&s) {
            let scope = serde_json::Map::from_iter([("output".to_string(), json!({"a": [1, "x", null]}))]);
            let _ = e.eval(&scope);
        }
    }
}
