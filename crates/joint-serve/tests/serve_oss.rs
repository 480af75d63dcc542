//! `joint serve`'s OSS endpoint: bucket and object names never reach the disk unvalidated
//! (no listing or deleting outside the store), objects keep their metadata and write time,
//! `Range`, `delimiter` and the ListObjectsV2 fields work as OSS's, and what is not
//! implemented is refused with 501 `NotImplemented` in OSS's XML error format.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use joint_serve::{ServeState, spawn};
use joint_shim::BlobStore;
use joint_shim_aliyun::sign::{self, Parts};
use joint_shim_aliyun::{Credential, Timestamp};
use joint_shim_local::{FsBlobStore, LocalCloudsBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AK: &str = "joint-test-ak";
const SK: &str = "joint-test-secret";

struct Oss {
    host: String,
    /// `{state}/aliyun`: the cloud's directory; its `blobs/` folder holds the buckets.
    cloud_dir: PathBuf,
    _served: joint_serve::Served,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, n: &str) -> Option<&str> {
        self.headers.get(n).and_then(|v| v.to_str().ok())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The `<Code>` of an OSS XML error.
    fn code(&self) -> String {
        let t = self.text();
        t.split_once("<Code>")
            .and_then(|(_, r)| r.split_once("</Code>"))
            .map(|(c, _)| c.to_string())
            .unwrap_or_else(|| panic!("not an OSS error ({}): {t}", self.status))
    }
}

async fn start() -> Oss {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = LocalCloudsBuilder::new()
        .state_dir(dir.path())
        .clouds(["aliyun"])
        .build()
        .expect("local clouds");
    let state = Arc::new(ServeState {
        runtime: None,
        clouds: local,
        settings: BTreeMap::from([
            ("aliyun.access_key_id".to_string(), AK.to_string()),
            ("aliyun.access_key_secret".to_string(), SK.to_string()),
        ]),
    });
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let served = spawn(state, vec![("oss".into(), any)])
        .await
        .expect("serve");
    let url = served.url("oss").expect("url").to_string();
    Oss {
        host: url.trim_start_matches("http://").to_string(),
        cloud_dir: dir.path().join("aliyun"),
        _served: served,
        _dir: dir,
    }
}

impl Oss {
    /// A V4-signed request for (decoded) `bucket`/`key`, sent to the raw path `/{raw_bucket}/{raw_key}`.
    #[allow(clippy::too_many_arguments)]
    async fn send_raw(
        &self,
        method: &str,
        raw_path: &str,
        bucket: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let mut p = Parts::new(method, raw_path);
        p.query = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        p.headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        p.headers.push(("host".into(), self.host.clone()));
        let add = sign::oss_v4::sign(
            &p,
            bucket,
            key,
            "cn-hangzhou",
            &[],
            &Credential::new(AK, SK),
            Timestamp::now(),
        );
        p.headers.extend(add);
        let mut target = raw_path.to_string();
        if !p.query.is_empty() {
            let q: Vec<String> = p
                .query
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        sign::percent_encode(k)
                    } else {
                        format!("{}={}", sign::percent_encode(k), sign::percent_encode(v))
                    }
                })
                .collect();
            target = format!("{target}?{}", q.join("&"));
        }
        // A plain socket: HTTP clients resolve `..` and `%2E%2E` segments before sending, a
        // hostile client does not.
        let mut req = format!("{method} {target} HTTP/1.1\r\n");
        for (k, v) in &p.headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        ));
        let mut sock = tokio::net::TcpStream::connect(&self.host)
            .await
            .expect("connect");
        sock.write_all(req.as_bytes()).await.expect("write");
        sock.write_all(body).await.expect("write body");
        let mut out = Vec::new();
        sock.read_to_end(&mut out).await.expect("read");
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer");
        let head = String::from_utf8_lossy(&out[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut headers = reqwest::header::HeaderMap::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':')
                && let (Ok(k), Ok(v)) = (
                    reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()),
                    reqwest::header::HeaderValue::from_str(v.trim()),
                )
            {
                headers.append(k, v);
            }
        }
        Answer {
            status,
            headers,
            body: out[split + 4..].to_vec(),
        }
    }

    async fn send(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        // Dots encoded too, so the HTTP client does not resolve `..` segments itself.
        let path = format!(
            "/joint/{}",
            sign::percent_encode_path(key).replace('.', "%2E")
        );
        self.send_raw(method, &path, "joint", key, query, headers, body)
            .await
    }

    async fn put(&self, key: &str, body: &[u8], headers: &[(&str, &str)]) -> Answer {
        self.send("PUT", key, &[], headers, body).await
    }
}

fn delete_doc(keys: &[&str]) -> String {
    let mut s =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>false</Quiet>");
    for k in keys {
        s.push_str(&format!("<Object><Key>{k}</Key></Object>"));
    }
    s.push_str("</Delete>");
    s
}

#[tokio::test]
async fn names_never_leave_the_store() {
    let oss = start().await;
    let victim = oss.cloud_dir.join("victim.txt");
    std::fs::write(&victim, "outside the store").expect("write");
    assert_eq!(oss.put("inside", b"x", &[]).await.status, 200);

    // `%2E%2E` as the bucket: once the state directory of the cloud (its coord.db included).
    let a = oss
        .send_raw("GET", "/%2E%2E/", "..", "", &[("list-type", "2")], &[], b"")
        .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (400, "InvalidBucketName"),
        "{}",
        a.text()
    );
    assert!(!a.text().contains("coord"), "{}", a.text());
    let doc = delete_doc(&["victim.txt"]);
    let md5 = sign::md5_base64(doc.as_bytes());
    let a = oss
        .send_raw(
            "POST",
            "/%2E%2E/",
            "..",
            "",
            &[("delete", "")],
            &[("content-md5", &md5)],
            doc.as_bytes(),
        )
        .await;
    assert_eq!((a.status, a.code().as_str()), (400, "InvalidBucketName"));
    assert!(
        victim.exists(),
        "batch delete removed a file outside the store"
    );
    for bad in ["Joint", "a_b", "ab", "-ab", "a%2Fb"] {
        let a = oss
            .send_raw(
                "GET",
                &format!("/{bad}/k"),
                &sign::percent_decode(bad),
                "k",
                &[],
                &[],
                b"",
            )
            .await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (400, "InvalidBucketName"),
            "{bad}"
        );
    }

    // Object keys that climb out: refused or found nowhere, and nothing outside is touched.
    for key in [
        "../victim.txt",
        "a/../../victim.txt",
        "../../aliyun/victim.txt",
    ] {
        let put = oss.put(key, b"evil", &[]).await;
        assert_eq!(
            (put.status, put.code().as_str()),
            (501, "NotImplemented"),
            "{key}"
        );
        let get = oss.send("GET", key, &[], &[], b"").await;
        assert_eq!(
            (get.status, get.code().as_str()),
            (404, "NoSuchKey"),
            "{key}"
        );
        assert_eq!(
            oss.send("DELETE", key, &[], &[], b"").await.status,
            204,
            "{key}"
        );
    }
    let doc = delete_doc(&["../victim.txt", "a/../../victim.txt", "inside"]);
    let md5 = sign::md5_base64(doc.as_bytes());
    let a = oss
        .send_raw(
            "POST",
            "/joint/",
            "joint",
            "",
            &[("delete", "")],
            &[("content-md5", &md5)],
            doc.as_bytes(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(victim.exists(), "a key climbed out of the store");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("read"),
        "outside the store"
    );
    assert_eq!(oss.send("GET", "inside", &[], &[], b"").await.status, 404);
    // OSS's own key rules.
    let long = "k".repeat(1024);
    assert_eq!(oss.put(&long, b"x", &[]).await.code(), "InvalidObjectName");
}

#[tokio::test]
async fn objects_keep_their_metadata_and_write_time_and_ranges_work() {
    let oss = start().await;
    let put = oss
        .put(
            "docs/a.txt",
            b"0123456789",
            &[
                ("content-type", "text/plain"),
                ("cache-control", "no-cache"),
                ("x-oss-meta-author", "Ada"),
                ("x-oss-forbid-overwrite", "true"),
            ],
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let etag = put.header("etag").expect("etag").to_string();
    for method in ["GET", "HEAD"] {
        let a = oss.send(method, "docs/a.txt", &[], &[], b"").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-type"), Some("text/plain"), "{method}");
        assert_eq!(a.header("cache-control"), Some("no-cache"), "{method}");
        assert_eq!(a.header("x-oss-meta-author"), Some("Ada"), "{method}");
        assert_eq!(a.header("etag"), Some(etag.as_str()), "{method}");
    }
    // Last-Modified is when the object was written, not when it is read.
    let store = FsBlobStore::new(oss.cloud_dir.join("blobs"), "aliyun").expect("store");
    store.put_new("joint/old", "old".into()).await.expect("put");
    let then = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(oss.cloud_dir.join("blobs/joint/old"))
        .and_then(|f| f.set_modified(then))
        .expect("set mtime");
    let a = oss.send("GET", "old", &[], &[], b"").await;
    assert_eq!(
        a.header("last-modified"),
        Some("Sun, 09 Sep 2001 01:46:40 GMT")
    );
    assert_eq!(a.header("content-type"), Some("application/octet-stream"));

    // Range.
    let a = oss
        .send("GET", "docs/a.txt", &[], &[("range", "bytes=2-4")], b"")
        .await;
    assert_eq!((a.status, a.text().as_str()), (206, "234"));
    assert_eq!(a.header("content-range"), Some("bytes 2-4/10"));
    let a = oss
        .send("GET", "docs/a.txt", &[], &[("range", "bytes=-3")], b"")
        .await;
    assert_eq!((a.status, a.text().as_str()), (206, "789"));
    // An unsatisfiable range: the whole object by default, 416 with the standard behaviour.
    let a = oss
        .send("GET", "docs/a.txt", &[], &[("range", "bytes=20-30")], b"")
        .await;
    assert_eq!((a.status, a.body.len()), (200, 10));
    let a = oss
        .send(
            "GET",
            "docs/a.txt",
            &[],
            &[
                ("range", "bytes=20-30"),
                ("x-oss-range-behavior", "standard"),
            ],
            b"",
        )
        .await;
    assert_eq!((a.status, a.code().as_str()), (416, "InvalidRange"));
    // Conditional reads.
    let a = oss
        .send("GET", "docs/a.txt", &[], &[("if-none-match", &etag)], b"")
        .await;
    assert_eq!(a.status, 304);
    let a = oss
        .send("GET", "docs/a.txt", &[], &[("if-match", "\"nope\"")], b"")
        .await;
    assert_eq!((a.status, a.code().as_str()), (412, "PreconditionFailed"));
    // Response header overrides.
    let a = oss
        .send(
            "GET",
            "docs/a.txt",
            &[("response-content-type", "application/json")],
            &[],
            b"",
        )
        .await;
    assert_eq!(a.header("content-type"), Some("application/json"));
    // Bad user metadata names are refused, not dropped.
    let a = oss
        .put("docs/b", b"x", &[("x-oss-meta-bad_name", "v")])
        .await;
    assert_eq!((a.status, a.code().as_str()), (400, "InvalidArgument"));
}

#[tokio::test]
async fn list_objects_v2_has_oss_fields_and_rolls_up_with_a_delimiter() {
    let oss = start().await;
    for k in ["a/1", "a/2", "b", "c/x/1", "c/y", "d e+f"] {
        assert_eq!(oss.put(k, k.as_bytes(), &[]).await.status, 200, "{k}");
    }
    let oss = &oss;
    let list = |q: Vec<(&'static str, String)>| {
        let q: Vec<(&str, String)> = std::iter::once(("list-type", "2".to_string()))
            .chain(q)
            .collect();
        async move {
            let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
            oss.send_raw("GET", "/joint/", "joint", "", &q, &[], b"")
                .await
        }
    };
    let a = list(vec![]).await;
    assert_eq!(a.status, 200);
    let t = a.text();
    for field in [
        ".000Z</LastModified>",
        "<ETag>&quot;",
        "<Type>Normal</Type>",
        "<StorageClass>Standard</StorageClass>",
        "<MaxKeys>100</MaxKeys>",
    ] {
        assert!(t.contains(field), "{field}: {t}");
    }
    assert!(
        t.contains(&format!("<ETag>&quot;{}&quot;</ETag>", hex_md5(b"b"))),
        "{t}"
    );
    assert_eq!(t.matches("<Contents>").count(), 6, "{t}");

    let a = list(vec![("delimiter", "/".into())]).await;
    let t = a.text();
    assert_eq!(t.matches("<Contents>").count(), 2, "b and 'd e+f': {t}");
    assert!(
        t.contains("<CommonPrefixes>\n    <Prefix>a/</Prefix>"),
        "{t}"
    );
    assert!(t.contains("<Prefix>c/</Prefix>"), "{t}");
    assert!(t.contains("<KeyCount>4</KeyCount>"), "{t}");

    let a = list(vec![("delimiter", "/".into()), ("prefix", "c/".into())]).await;
    let t = a.text();
    assert!(
        t.contains("<Prefix>c/x/</Prefix>") && t.contains("<Key>c/y</Key>"),
        "{t}"
    );

    // Pages over entries (objects and prefixes), with the token of the last one.
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let mut q = vec![
            ("delimiter", "/".to_string()),
            ("max-keys", "1".to_string()),
        ];
        if !token.is_empty() {
            q.push(("continuation-token", token.clone()));
        }
        let t = list(q).await.text();
        let entry = t
            .split_once("<Key>")
            .or_else(|| t.split_once("<CommonPrefixes>\n    <Prefix>"))
            .and_then(|(_, r)| r.split_once('<'))
            .map(|(k, _)| k.to_string())
            .expect("one entry");
        seen.push(entry);
        match t
            .split_once("<NextContinuationToken>")
            .and_then(|(_, r)| r.split_once('<'))
        {
            Some((tok, _)) => token = tok.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ["a/", "b", "c/", "d e+f"]);

    let t = list(vec![("encoding-type", "url".into())]).await.text();
    assert!(
        t.contains("<EncodingType>url</EncodingType>") && t.contains("<Key>d%20e%2Bf</Key>"),
        "{t}"
    );
    let t = list(vec![("start-after", "b".into())]).await.text();
    assert!(
        !t.contains("<Key>a/1</Key>")
            && !t.contains("<Key>b</Key>")
            && t.contains("<Key>c/y</Key>"),
        "{t}"
    );
    let a = list(vec![("max-keys", "5000".into())]).await;
    assert_eq!((a.status, a.code().as_str()), (400, "InvalidArgument"));
}

fn hex_md5(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(sign::md5_base64(b))
        .expect("md5")
        .iter()
        .map(|x| format!("{x:02X}"))
        .collect()
}

#[tokio::test]
async fn what_is_not_implemented_is_refused_in_oss_format() {
    let oss = start().await;
    assert_eq!(oss.put("k", b"v", &[]).await.status, 200);
    type Pairs<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, &str, Pairs, Pairs)> = vec![
        ("GET", "k", vec![("acl", "")], vec![]),
        ("GET", "k", vec![("tagging", "")], vec![]),
        (
            "PUT",
            "k2",
            vec![],
            vec![("x-oss-server-side-encryption", "AES256")],
        ),
        (
            "PUT",
            "k3",
            vec![],
            vec![("x-oss-storage-class", "Archive")],
        ),
        ("PUT", "k4", vec![], vec![("x-oss-tagging", "a=b")]),
        (
            "POST",
            "k5",
            vec![("append", ""), ("position", "0")],
            vec![],
        ),
        ("PUT", "k", vec![], vec![]),
        ("PUT", "dir/", vec![], vec![]),
    ];
    for (m, key, q, h) in &cases {
        let a = oss.send(m, key, q, h, b"x").await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (501, "NotImplemented"),
            "{m} {key} {q:?} {h:?}"
        );
        assert!(
            a.text().contains("joint serve does not implement"),
            "{}",
            a.text()
        );
    }
    // HEAD: the error travels base64 in x-oss-err.
    let a = oss
        .send(
            "HEAD",
            "k",
            &[],
            &[("x-oss-server-side-encryption", "AES256")],
            b"",
        )
        .await;
    assert_eq!(a.status, 501);
    assert!(a.header("x-oss-err").is_some());
    // Bucket operations other than ListObjectsV2 and DeleteMultipleObjects.
    for (m, q) in [
        ("GET", vec![]),
        ("GET", vec![("acl", "")]),
        ("PUT", vec![]),
        ("DELETE", vec![]),
        ("GET", vec![("uploads", "")]),
    ] {
        let a = oss.send_raw(m, "/joint/", "joint", "", &q, &[], b"").await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (501, "NotImplemented"),
            "{m} {q:?}"
        );
    }
    // The object itself is untouched.
    assert_eq!(oss.send("GET", "k", &[], &[], b"").await.text(), "v");
}
