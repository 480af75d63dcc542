//! The XML documents of ListObjectsV2 and DeleteMultipleObjects (client and server side).

use serde::Deserialize;

use super::error::xml_escape;

/// `<ListBucketResult>` of ListObjectsV2.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ListBucketResult {
    /// Objects.
    pub contents: Vec<Contents>,
    /// More pages follow.
    pub is_truncated: bool,
    /// Token of the next page.
    pub next_continuation_token: Option<String>,
}

/// One `<Contents>`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Contents {
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

impl ListBucketResult {
    /// Serialize (server side).
    pub fn to_xml(&self, bucket: &str, prefix: &str, max_keys: usize) -> String {
        let mut s = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult>\n  <Name>{}</Name>\n  <Prefix>{}</Prefix>\n  <MaxKeys>{max_keys}</MaxKeys>\n  <KeyCount>{}</KeyCount>\n  <IsTruncated>{}</IsTruncated>\n",
            xml_escape(bucket),
            xml_escape(prefix),
            self.contents.len(),
            self.is_truncated
        );
        if let Some(t) = &self.next_continuation_token {
            s.push_str(&format!(
                "  <NextContinuationToken>{}</NextContinuationToken>\n",
                xml_escape(t)
            ));
        }
        for c in &self.contents {
            s.push_str(&format!(
                "  <Contents>\n    <Key>{}</Key>\n    <Size>{}</Size>\n    <StorageClass>Standard</StorageClass>\n  </Contents>\n",
                xml_escape(&c.key),
                c.size
            ));
        }
        s.push_str("</ListBucketResult>\n");
        s
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

/// Parse an XML document into `T`.
pub fn parse<T: for<'de> Deserialize<'de>>(xml: &[u8]) -> Result<T, String> {
    let s = std::str::from_utf8(xml).map_err(|e| format!("XML is not UTF-8: {e}"))?;
    quick_xml::de::from_str(s).map_err(|e| format!("bad XML: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let r = ListBucketResult {
            contents: vec![
                Contents {
                    key: "a&b<c>".into(),
                    size: 3,
                },
                Contents {
                    key: "run1/x".into(),
                    size: 0,
                },
            ],
            is_truncated: true,
            next_continuation_token: Some("tok".into()),
        };
        let back: ListBucketResult =
            parse(r.to_xml("bkt", "run1/", 1000).as_bytes()).expect("parse");
        assert_eq!(back, r);
        let empty: ListBucketResult =
            parse(ListBucketResult::default().to_xml("b", "", 10).as_bytes()).expect("parse");
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
