//! Bad input, fuzzed: the PlainBuffer decoder and the signature verifiers of every scheme never
//! panic on arbitrary or mutated input and refuse what they cannot verify.
//!
//! Case counts: `JOINT_FUZZ_CASES` (default 2000 per target).

use joint_shim_aliyun::ots::plainbuffer::{self, Cell, Row, Value};
use joint_shim_aliyun::sign::{Parts, acs3, oss_v1, oss_v4, ots};
use joint_shim_aliyun::{Credential, Timestamp};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("JOINT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn valid_rows() -> Vec<u8> {
    let row = Row::with_pk(vec![
        ("pk", Value::String("run-1".into())),
        ("sk", Value::String("A_0".into())),
    ])
    .cell(Cell::put("v", Value::Blob(b"{\"ok\":1}".to_vec())))
    .cell(Cell::increment("cnt", 1))
    .cell(Cell::put("n", Value::Integer(-7)));
    plainbuffer::encode_rows(&[row.clone(), row])
}

fn mutate(mut b: Vec<u8>, ops: &[(u8, usize, u8)]) -> Vec<u8> {
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
    b
}

fn lookup(id: &str) -> Option<Credential> {
    (id == "AKID").then(|| Credential::new("AKID", "secret"))
}

fn parts(auth: &str, extra: &[(String, String)]) -> Parts {
    let mut p = Parts::new("POST", "/2023-03-30/functions/f/invocations");
    p.headers.push(("authorization".into(), auth.to_string()));
    p.headers
        .push(("host".into(), "1.cn-hangzhou.fc.aliyuncs.com".into()));
    p.headers
        .push(("x-acs-date".into(), "2026-11-30T10:00:00Z".into()));
    p.headers
        .push(("date".into(), "Mon, 30 Nov 2026 10:00:00 GMT".into()));
    p.headers
        .push(("x-oss-date".into(), "20261130T100000Z".into()));
    p.headers
        .push(("x-ots-date".into(), "2026-11-30T10:00:00.000Z".into()));
    p.headers.extend(extra.iter().cloned());
    p
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
    fn plainbuffer_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = plainbuffer::decode_rows(&bytes);
        let _ = Row::decode(&bytes);
        let _ = Value::from_variant(&bytes);
    }

    #[test]
    fn plainbuffer_from_mutated_rows(ops in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6)) {
        let good = valid_rows();
        let bad = mutate(good.clone(), &ops);
        match plainbuffer::decode_rows(&bad) {
            // A mutation that still decodes must re-encode to the very same bytes (the CRC-8
            // checksums make a silent change very unlikely).
            Ok(rows) => prop_assert_eq!(plainbuffer::encode_rows(&rows), bad),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn verifiers_refuse_arbitrary_authorizations(
        auth in "\\PC{0,200}",
        headers in prop::collection::vec(("[a-z-]{1,20}", "\\PC{0,40}"), 0..4),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let p = parts(&auth, &headers);
        let now = Timestamp::from_unix(1_796_032_800);
        prop_assert!(acs3::verify(&p, &body, lookup, now, 900).is_err());
        prop_assert!(oss_v4::verify(&p, "bucket", "key", &body, lookup, now, 900).is_err());
        prop_assert!(oss_v1::verify(&p, "bucket", "key", lookup, now, 900).is_err());
        let mut op = p.clone();
        op.headers.push(("x-ots-accesskeyid".into(), "AKID".into()));
        op.headers.push(("x-ots-signature".into(), auth.clone()));
        prop_assert!(ots::verify(&op, &body, lookup, now, 900).is_err());
    }
}
