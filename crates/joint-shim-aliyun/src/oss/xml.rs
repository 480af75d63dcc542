//! The XML documents of ListObjectsV2 and DeleteMultipleObjects (client and server side).

use serde::Deserialize;

use super::error::xml_escape;

/// `<ListBucketResult>` of ListObjectsV2.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListBucketResult {
    /// Objects.
    pub contents: Vec<Contents>,
    /// The groups of keys a `delimiter` rolled up.
    pub common_prefixes: Vec<CommonPrefix>,
    /// More pages follow.
    pub is_truncated: bool,
    /// Token of the next page.
    pub next_continuation_token: Option<String>,
    /// `url` when the keys, prefixes and tokens in the answer are URL-encoded.
    pub encoding_type: Option<String>,
}

/// One `<Contents>`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Contents {
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was written, ISO 8601 (`2026-11-30T08:09:10.000Z`).
    pub last_modified: String,
    /// The quoted ETag (`"5D41402ABC4B2A76B9719D911017C592"`).
    #[serde(rename = "ETag")]
    pub etag: String,
    /// `Normal` for an object written by PutObject.
    #[serde(rename = "Type")]
    pub object_type: String,
    /// `Standard`…
    pub storage_class: String,
}

/// One `<CommonPrefixes>`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct CommonPrefix {
    /// The rolled-up prefix (ends with the delimiter).
    pub prefix: String,
}

/// The request a [`ListBucketResult`] answers, echoed in it (server side).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Bucket.
    pub bucket: String,
    /// `prefix`.
    pub prefix: String,
    /// `delimiter`.
    pub delimiter: String,
    /// `start-after`.
    pub start_after: String,
    /// `continuation-token`.
    pub continuation_token: String,
    /// `max-keys`.
    pub max_keys: usize,
    /// `encoding-type=url`: URL-encode keys, prefixes, delimiter and tokens.
    pub url_encoded: bool,
    /// `fetch-owner=true`: name each object's owner.
    pub fetch_owner: bool,
}

impl ListBucketResult {
    /// Serialize (server side), echoing the request `q` as OSS does. Empty echo elements are
    /// left out.
    pub fn to_xml(&self, q: &ListQuery) -> String {
        let enc = |v: &str| {
            if q.url_encoded {
                crate::sign::percent_encode(v)
            } else {
                v.to_string()
            }
        };
        let el = |name: &str, v: &str| format!("  <{name}>{}</{name}>\n", xml_escape(&enc(v)));
        let mut s =
            String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult>\n");
        s.push_str(&format!("  <Name>{}</Name>\n", xml_escape(&q.bucket)));
        s.push_str(&el("Prefix", &q.prefix));
        if !q.continuation_token.is_empty() {
            s.push_str(&el("ContinuationToken", &q.continuation_token));
        }
        if !q.start_after.is_empty() {
            s.push_str(&el("StartAfter", &q.start_after));
        }
        s.push_str(&format!("  <MaxKeys>{}</MaxKeys>\n", q.max_keys));
        if !q.delimiter.is_empty() {
            s.push_str(&el("Delimiter", &q.delimiter));
        }
        if q.url_encoded {
            s.push_str("  <EncodingType>url</EncodingType>\n");
        }
        s.push_str(&format!(
            "  <IsTruncated>{}</IsTruncated>\n  <KeyCount>{}</KeyCount>\n",
            self.is_truncated,
            self.contents.len() + self.common_prefixes.len()
        ));
        if let Some(t) = &self.next_continuation_token {
            s.push_str(&el("NextContinuationToken", t));
        }
        for c in &self.contents {
            s.push_str(&format!(
                "  <Contents>\n    <Key>{}</Key>\n    <LastModified>{}</LastModified>\n    <ETag>{}</ETag>\n    <Type>{}</Type>\n    <Size>{}</Size>\n    <StorageClass>{}</StorageClass>\n",
                xml_escape(&enc(&c.key)),
                xml_escape(&c.last_modified),
                xml_escape(&c.etag),
                xml_escape(&c.object_type),
                c.size,
                xml_escape(&c.storage_class),
            ));
            if q.fetch_owner {
                s.push_str("    <Owner>\n      <ID>joint-serve</ID>\n      <DisplayName>joint-serve</DisplayName>\n    </Owner>\n");
            }
            s.push_str("  </Contents>\n");
        }
        for p in &self.common_prefixes {
            s.push_str(&format!(
                "  <CommonPrefixes>\n    <Prefix>{}</Prefix>\n  </CommonPrefixes>\n",
                xml_escape(&enc(&p.prefix))
            ));
        }
        s.push_str("</ListBucketResult>\n");
        s
    }

    /// Undo `encoding-type=url` (client side): keys, prefixes and the token as stored.
    pub fn decoded(mut self) -> Self {
        if self.encoding_type.as_deref() == Some("url") {
            let d = |v: &mut String| *v = crate::sign::percent_decode(v);
            self.contents.iter_mut().for_each(|c| d(&mut c.key));
            self.common_prefixes
                .iter_mut()
                .for_each(|p| d(&mut p.prefix));
            if let Some(t) = self.next_continuation_token.as_mut() {
                d(t);
            }
            self.encoding_type = None;
        }
        self
    }
}

/// `<Delete>` request of DeleteMultipleObjects.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Delete {
    /// Quiet mode: only failures are reported.
    pub quiet: bool,
    /// Objects to delete.
    pub object: Vec<DeleteObject>,
}

/// One `<Object>` of a `<Delete>`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeleteObject {
    /// Key.
    pub key: String,
}

impl Delete {
    /// Serialize (client side).
    pub fn to_xml(keys: &[String]) -> String {
        let mut s = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete><Quiet>false</Quiet>",
        );
        for k in keys {
            s.push_str(&format!("<Object><Key>{}</Key></Object>", xml_escape(k)));
        }
        s.push_str("</Delete>");
        s
    }
}

/// `<DeleteResult>` answer.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeleteResult {
    /// Deleted keys.
    pub deleted: Vec<DeleteObject>,
}

impl DeleteResult {
    /// Serialize (server side).
    pub fn to_xml(keys: &[String]) -> String {
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult>\n");
        for k in keys {
            s.push_str(&format!(
                "  <Deleted>\n    <Key>{}</Key>\n  </Deleted>\n",
                xml_escape(k)
            ));
        }
        s.push_str("</DeleteResult>\n");
        s
    }
}

/// Deepest element nesting [`parse`] accepts. The documents here nest four levels; the bound
/// keeps a hostile document (a request body, or an answer from a hostile server) from driving
/// the deserializer's recursion.
pub const MAX_DEPTH: usize = 16;

/// Refuse documents nested deeper than [`MAX_DEPTH`] (an iterative scan, no recursion).
fn check_depth(s: &str) -> Result<(), String> {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_str(s);
    let mut depth = 0usize;
    loop {
        match r.read_event() {
            Ok(Event::Start(_)) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!(
                        "bad XML: elements nested more than {MAX_DEPTH} deep"
                    ));
                }
            }
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("bad XML: {e}")),
        }
    }
}

/// Parse an XML document into `T`.
pub fn parse<T: for<'de> Deserialize<'de>>(xml: &[u8]) -> Result<T, String> {
    let s = std::str::from_utf8(xml).map_err(|e| format!("XML is not UTF-8: {e}"))?;
    check_depth(s)?;
    quick_xml::de::from_str(s).map_err(|e| format!("bad XML: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_documents_are_refused_without_recursion() {
        for n in [MAX_DEPTH - 2, 100_000] {
            let doc = format!(
                "<Delete>{}{}</Delete>",
                "<Object>".repeat(n),
                "</Object>".repeat(n)
            );
            let r = parse::<Delete>(doc.as_bytes());
            if n < MAX_DEPTH {
                assert!(r.is_ok(), "{r:?}");
            } else {
                let e = r.expect_err("too deep");
                assert!(e.contains("nested more than"), "{e}");
            }
        }
        let ok = "<Delete><Quiet>true</Quiet><Object><Key>a</Key></Object></Delete>";
        assert!(parse::<Delete>(ok.as_bytes()).expect("parse").quiet);
    }

    #[test]
    fn round_trips() {
        let contents = |key: &str, size| Contents {
            key: key.into(),
            size,
            last_modified: "2026-11-30T08:09:10.000Z".into(),
            etag: "\"5D41402ABC4B2A76B9719D911017C592\"".into(),
            object_type: "Normal".into(),
            storage_class: "Standard".into(),
        };
        let r = ListBucketResult {
            contents: vec![contents("a&b<c> d+e", 3), contents("run1/x", 0)],
            common_prefixes: vec![CommonPrefix {
                prefix: "run1/sub dir/".into(),
            }],
            is_truncated: true,
            next_continuation_token: Some("tok/1 2".into()),
            encoding_type: None,
        };
        let q = ListQuery {
            bucket: "bkt".into(),
            prefix: "run1/".into(),
            delimiter: "/".into(),
            max_keys: 1000,
            ..ListQuery::default()
        };
        let back: ListBucketResult = parse(r.to_xml(&q).as_bytes()).expect("parse");
        assert_eq!(back, r);
        let url = ListQuery {
            url_encoded: true,
            ..q.clone()
        };
        let xml = r.to_xml(&url);
        assert!(xml.contains("<Key>a%26b%3Cc%3E%20d%2Be</Key>"), "{xml}");
        let back: ListBucketResult = parse(xml.as_bytes()).expect("parse");
        assert_eq!(back.encoding_type.as_deref(), Some("url"));
        assert_eq!(back.decoded(), r);
        let empty: ListBucketResult =
            parse(ListBucketResult::default().to_xml(&q).as_bytes()).expect("parse");
        assert!(empty.contents.is_empty() && !empty.is_truncated);
        let keys = vec!["x".to_string(), "y&z".to_string()];
        let d: Delete = parse(Delete::to_xml(&keys).as_bytes()).expect("parse");
        assert_eq!(
            d.object.iter().map(|o| o.key.clone()).collect::<Vec<_>>(),
            keys
        );
        let res: DeleteResult = parse(DeleteResult::to_xml(&keys).as_bytes()).expect("parse");
        assert_eq!(res.deleted.len(), 2);
    }
}
