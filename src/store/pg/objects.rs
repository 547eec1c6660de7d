//! Message bodies in an S3-compatible object store (`MAILROOM_BLOB_STORE=s3://…`).
//!
//! Owns: the bucket client and the object key of a body, `<prefix>/blobs/<hh>/<sha256>`
//! (the first byte of the hash as a directory spreads keys for servers that list by
//! prefix), the listing of those keys the orphan sweep (`sweep.rs`) reads, and the probe
//! `mailroom store check` writes under `<prefix>/.mailroom-check/`. Which body lives
//! where, and when an object may be written or deleted, is decided in `blobs.rs` under
//! the body row's lock; this file only moves bytes.
//!
//! The HTTP client is ours, not object_store's reqwest one: reqwest's TLS brings aws-lc
//! (the static build links ring only) and resolves names with `getaddrinfo` (the static
//! binary has no NSS). Ours is hyper-util's client with rustls on ring, the webpki
//! roots, and names resolved by hickory, as the ACME client does.
//!
//! Every failure is [`StoreError::Unavailable`]: the bucket being unreachable is as
//! temporary as the database being down.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use hickory_resolver::TokioResolver;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as HyperConnector;
use hyper_util::rt::TokioExecutor;
use object_store::RetryConfig;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::buffered::BufWriter;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody, HttpResponse, HttpResponseBody,
    HttpService,
};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::acme::HickoryResolve;
use crate::config::S3Config;
use crate::store::{MessageBody, MessageReader, StoreError};

/// Bodies up to this size are sent in one PUT; larger ones as a multipart upload of parts
/// this size (S3's minimum part is 5 MiB), so memory stays bounded whatever the body.
const PART: usize = 8 << 20;
/// Parts of one upload in flight at once: with [`PART`], at most ~24 MiB per upload.
const PARTS_IN_FLIGHT: usize = 2;
/// How long one request may take before it is retried (object_store retries idempotent
/// requests with backoff by itself).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries of a failed request, and the time they may take in all: object_store's
/// defaults (10 retries, 3 minutes) would hold a delivery far longer than an SMTP client
/// waits; past these the delivery is answered "try again later".
const MAX_RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(60);

/// What `PgStore::connect_with` needs to keep bodies in a bucket.
#[derive(Clone)]
pub struct ObjectStoreConfig {
    /// Bucket, prefix, endpoint, region and key pair (`MAILROOM_BLOB_STORE`,
    /// `MAILROOM_S3_*`).
    pub s3: S3Config,
    /// Resolves the endpoint's host name (the static binary has no system resolver).
    pub resolver: TokioResolver,
}

impl std::fmt::Debug for ObjectStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreConfig").field("s3", &self.s3).finish_non_exhaustive()
    }
}

/// An object-store failure as the store reports it: temporary.
fn os_error(what: &str, e: object_store::Error) -> StoreError {
    StoreError::Unavailable(format!("object store {what}: {e}"))
}

/// A body's object as listed: its hash and when it was last written.
pub type Listed = (Vec<u8>, DateTime<Utc>);

/// The bucket that holds bodies.
pub struct Objects {
    store: Arc<AmazonS3>,
    /// `<prefix>/blobs`, or `blobs` at the bucket's root.
    root: String,
    /// `<prefix>/.mailroom-check`: where `mailroom store check` writes its probe, apart
    /// from the bodies so a sweep of `blobs/` never sees it.
    check_root: String,
    /// For logs: `s3://bucket/prefix?endpoint=…` (no secret).
    describe: String,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Objects({})", self.describe)
    }
}

impl Objects {
    /// A client for the bucket. Nothing is sent yet: a wrong endpoint or key shows on the
    /// first write or read.
    pub fn new(config: &ObjectStoreConfig) -> Result<Objects, StoreError> {
        let url = &config.s3.url;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(url.bucket())
            .with_region(url.region())
            .with_access_key_id(&config.s3.access_key_id)
            .with_secret_access_key(config.s3.secret_access_key.expose())
            .with_virtual_hosted_style_request(!url.path_style())
            .with_client_options(ClientOptions::new().with_allow_http(url.plain_http()))
            .with_retry(RetryConfig { max_retries: MAX_RETRIES, retry_timeout: RETRY_TIMEOUT, ..Default::default() })
            .with_http_connector(Connector { resolver: config.resolver.clone(), allow_http: url.plain_http() });
        if let Some(endpoint) = url.endpoint() {
            builder = builder.with_endpoint(bucket_endpoint(endpoint, url.bucket(), url.path_style()));
        }
        let store = builder.build().map_err(|e| os_error("configuration", e))?;
        let under = |name: &str| {
            if url.prefix().is_empty() { name.to_string() } else { format!("{}/{name}", url.prefix()) }
        };
        Ok(Objects {
            store: Arc::new(store),
            root: under("blobs"),
            check_root: under(".mailroom-check"),
            describe: url.as_str().to_string(),
        })
    }

    /// Whether the bucket is reachable and writable with the configured keys: PUT a
    /// small random object under `<prefix>/.mailroom-check/`, GET it back and compare,
    /// DELETE it. Exercises the three calls deliveries, reads and expunges make, so a
    /// wrong endpoint, bucket, region or key pair shows here rather than on the first
    /// delivery.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let token = format!("{:032x}", rand::random::<u128>());
        let key = ObjectPath::from(format!("{}/{token}", self.check_root));
        let content = Bytes::from(format!("mailroom store check {token}\n"));
        self.store.put(&key, PutPayload::from(content.clone())).await.map_err(|e| os_error("PUT", e))?;
        let read = async {
            let got = self.store.get(&key).await.map_err(|e| os_error("GET", e))?;
            got.bytes().await.map_err(|e| os_error("GET", e))
        }
        .await;
        // Delete even when the read failed: the probe must not stay behind.
        let deleted = self.store.delete(&key).await.map_err(|e| os_error("DELETE", e));
        let read = read?;
        if read != content {
            return Err(StoreError::Unavailable(format!(
                "object store GET: the probe read back {} bytes that differ from the {} written",
                read.len(),
                content.len()
            )));
        }
        deleted
    }

    /// `<prefix>/blobs/<hh>/<sha256 hex>`.
    pub fn key(&self, hash: &[u8]) -> ObjectPath {
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        ObjectPath::from(format!("{}/{}/{hex}", self.root, &hex[..2.min(hex.len())]))
    }

    /// Upload `body` as the object of `hash` (overwriting is harmless: same hash, same
    /// bytes). A body larger than [`PART`] goes up as a multipart upload read from its
    /// spool file part by part.
    pub async fn put(&self, hash: &[u8], body: &MessageBody) -> Result<(), StoreError> {
        let key = self.key(hash);
        match body {
            MessageBody::Memory(b) => {
                self.store.put(&key, PutPayload::from(b.clone())).await.map_err(|e| os_error("PUT", e))?;
            }
            MessageBody::File { path, len } if *len <= PART as u64 => {
                let mut file = tokio::fs::File::open(path).await.map_err(|e| StoreError::io(path, e))?.take(*len);
                let mut buf = Vec::with_capacity(*len as usize);
                file.read_to_end(&mut buf).await.map_err(|e| StoreError::io(path, e))?;
                self.store.put(&key, PutPayload::from(buf)).await.map_err(|e| os_error("PUT", e))?;
            }
            MessageBody::File { path, len } => {
                let mut file = tokio::fs::File::open(path).await.map_err(|e| StoreError::io(path, e))?.take(*len);
                let store: Arc<dyn ObjectStore> = self.store.clone();
                let mut writer = BufWriter::with_capacity(store, key, PART).with_max_concurrency(PARTS_IN_FLIGHT);
                let sent = async {
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = file.read(&mut buf).await.map_err(|e| StoreError::io(path, e))?;
                        if n == 0 {
                            break;
                        }
                        writer.put(Bytes::copy_from_slice(&buf[..n])).await.map_err(|e| os_error("PUT", e))?;
                    }
                    writer.shutdown().await.map_err(|e| StoreError::Unavailable(format!("object store PUT: {e}")))
                }
                .await;
                if sent.is_err() {
                    // Frees the parts already uploaded; the object itself never appeared.
                    let _ = writer.abort().await;
                }
                sent?;
            }
        }
        Ok(())
    }

    /// The keys under `<prefix>/.mailroom-check/` (a probe left behind shows here).
    #[cfg(test)]
    pub async fn check_keys(&self) -> Result<Vec<String>, StoreError> {
        let prefix = ObjectPath::from(self.check_root.as_str());
        let listed: Vec<object_store::ObjectMeta> =
            self.store.list(Some(&prefix)).try_collect().await.map_err(|e| os_error("LIST", e))?;
        Ok(listed.into_iter().map(|m| m.location.to_string()).collect())
    }

    /// Every body object in the bucket as `(hash, last modified)`, streamed page by page
    /// as the server lists them (S3 pages hold 1000 keys), so memory stays bounded
    /// however many there are. Keys under `<prefix>/blobs/` that are not a body's key
    /// (someone else's, or a name this version does not write) are skipped: what is not
    /// understood is never deleted.
    pub fn list_bodies(&self) -> BoxStream<'_, Result<Listed, StoreError>> {
        let root = ObjectPath::from(self.root.as_str());
        self.store
            .list(Some(&root))
            .map_err(|e| os_error("LIST", e))
            .try_filter_map(move |meta| async move {
                let hash = meta.location.filename().and_then(parse_hex);
                Ok(hash.filter(|h| self.key(h) == meta.location).map(|h| (h, meta.last_modified)))
            })
            .boxed()
    }

    /// PUT `bytes` under any `key` (tests place objects the store would not write).
    #[cfg(test)]
    pub async fn put_key(&self, key: &ObjectPath, bytes: Bytes) -> Result<(), StoreError> {
        self.store.put(key, PutPayload::from(bytes)).await.map(drop).map_err(|e| os_error("PUT", e))
    }

    /// Whether any `key` exists (HEAD).
    #[cfg(test)]
    pub async fn key_exists(&self, key: &ObjectPath) -> Result<bool, StoreError> {
        match self.store.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(os_error("HEAD", e)),
        }
    }

    /// Whether the object of `hash` exists (HEAD).
    pub async fn exists(&self, hash: &[u8]) -> Result<bool, StoreError> {
        match self.store.head(&self.key(hash)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(os_error("HEAD", e)),
        }
    }

    /// Delete the object of `hash`; one that is already gone is fine.
    pub async fn delete(&self, hash: &[u8]) -> Result<(), StoreError> {
        match self.store.delete(&self.key(hash)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(os_error("DELETE", e)),
        }
    }

    /// A reader over `prefix` followed by the object of `hash` (`size` bytes), streamed
    /// as the reader is consumed. The GET is sent now, so a missing object or an
    /// unreachable bucket is an error here rather than a short read later.
    pub async fn reader(&self, prefix: Bytes, hash: &[u8], size: u64) -> Result<MessageReader, StoreError> {
        let got = self.store.get(&self.key(hash)).await.map_err(|e| os_error("GET", e))?;
        let total = prefix.len() as u64 + size;
        let first = futures_util::stream::once(async move { Ok::<Bytes, io::Error>(prefix) });
        let body = got.into_stream().map_err(io::Error::other);
        let stream = tokio_util::io::StreamReader::new(first.chain(body));
        Ok(MessageReader::from_stream(stream, total))
    }
}

/// The bytes of a SHA-256 written as 64 lowercase hex digits, as in a body's key.
fn parse_hex(name: &str) -> Option<Vec<u8>> {
    if name.len() != 64 || !name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..32).map(|i| u8::from_str_radix(&name[2 * i..2 * i + 2], 16).ok()).collect()
}

/// `mailroom store check`: whether the bucket of `config` is reachable and writable
/// ([`Objects::probe`]).
pub async fn check_bucket(config: &ObjectStoreConfig) -> Result<(), StoreError> {
    Objects::new(config)?.probe().await
}

/// The endpoint object_store wants: as given for path-style requests (it appends the
/// bucket), the bucket as the first label of the host for virtual-hosted ones (it uses
/// the endpoint as is).
fn bucket_endpoint(endpoint: &str, bucket: &str, path_style: bool) -> String {
    match endpoint.split_once("://") {
        Some((scheme, host)) if !path_style => format!("{scheme}://{bucket}.{host}"),
        _ => endpoint.to_string(),
    }
}

/// object_store's way to get our HTTP client: called once when the store is built.
struct Connector {
    resolver: TokioResolver,
    /// Plain `http://` is allowed (the configuration allows it for a loopback endpoint
    /// only); otherwise every request must be HTTPS.
    allow_http: bool,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("allow_http", &self.allow_http).finish_non_exhaustive()
    }
}

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let generic = |e: rustls::Error| object_store::Error::Generic { store: "S3", source: Box::new(e) };
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(generic)?
            .with_root_certificates(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
            .with_no_client_auth();
        let mut http = HyperConnector::new_with_resolver(HickoryResolve::new(Arc::new(self.resolver.clone())));
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
        let https = if self.allow_http { builder.https_or_http() } else { builder.https_only() };
        let connector = https.enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(HttpClient::new(Service { client }))
    }
}

type HyperClient = Client<hyper_rustls::HttpsConnector<HyperConnector<HickoryResolve>>, HttpRequestBody>;

/// Sends object_store's requests through hyper.
struct Service {
    client: HyperClient,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hyper-util client (rustls, hickory)")
    }
}

#[async_trait::async_trait]
impl HttpService for Service {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        // The connector options' timeouts apply to object_store's own client only: bound
        // the wait for the response head here (a body then streams at the reader's pace).
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|e| HttpError::new(HttpErrorKind::Timeout, e))?
            .map_err(|e| {
                let kind = if e.is_connect() { HttpErrorKind::Connect } else { HttpErrorKind::Request };
                HttpError::new(kind, e)
            })?;
        let (parts, body) = response.into_parts();
        let body = body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e));
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

#[cfg(test)]
impl crate::test_s3::S3Location {
    /// What `PgStore::connect_with` takes to keep bodies here.
    pub fn object_store_config(&self) -> ObjectStoreConfig {
        let url = crate::config::S3Url::parse(&self.url()).expect("the test URL parses");
        ObjectStoreConfig {
            s3: S3Config {
                url,
                access_key_id: crate::test_s3::ACCESS_KEY_ID.into(),
                secret_access_key: crate::config::Secret::new(crate::test_s3::SECRET_ACCESS_KEY),
            },
            // The endpoint is an IP address: nothing is resolved.
            resolver: crate::dns::resolver::build(&["127.0.0.1:1".parse().expect("an address")]).expect("a resolver"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bucket_endpoint;

    #[test]
    fn only_body_names_parse_as_hashes() {
        let hex = "00ff".repeat(16);
        assert_eq!(super::parse_hex(&hex), Some([0u8, 255].repeat(16)));
        for bad in ["", "00ff", &"00FF".repeat(16), &"zz".repeat(32), &format!("{hex}0")] {
            assert_eq!(super::parse_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn virtual_hosted_endpoints_carry_the_bucket() {
        assert_eq!(bucket_endpoint("https://s3.example.net:9000", "b", true), "https://s3.example.net:9000");
        assert_eq!(bucket_endpoint("https://s3.example.net:9000", "b", false), "https://b.s3.example.net:9000");
    }
}
