//! The management router over a fake appliance (no engine, no CA), driven without a
//! socket: every way a client sends parameters (query, form, JSON, text bodies), the
//! sampling-period faults, the body limit and gzip of JSON responses.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use archiver_appliance::{
    ApplianceApi, ApplianceError, ArchiveOutcome, ArchiveSpec, Archived, ConnState,
    CountersSnapshot, EngineError, PvConfig, PvMeta, PvState, PvStatus, SamplingMethod,
};
use archiver_http::{MAX_BODY_BYTES, mgmt_router, with_layers};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// An appliance in memory: PVs and what was asked of it; its catalogue holds a type info
/// of each PV given archiving or paused (one never connected is still in its request).
#[derive(Default)]
struct Fake {
    pvs: Mutex<BTreeMap<String, PvStatus>>,
    archived: Mutex<Vec<ArchiveSpec>>,
    registry: Option<Arc<archiver_registry::SqliteRegistry>>,
}

fn status(name: &str, state: PvState) -> PvStatus {
    PvStatus {
        name: name.to_string(),
        state,
        config: PvConfig {
            method: SamplingMethod::Monitor,
            period: 1.0,
            archive_fields: Vec::new(),
        },
        archived_type: None,
        conn: ConnState::default(),
        meta: PvMeta::default(),
        buffered: 0,
        counters: CountersSnapshot::default(),
    }
}

impl Fake {
    fn with(pvs: &[(&str, PvState)]) -> Arc<Fake> {
        use archiver_registry::Registry;
        let registry = archiver_registry::SqliteRegistry::open_in_memory().unwrap();
        let f = Fake::default();
        let mut infos = Vec::new();
        for (n, s) in pvs {
            f.pvs.lock().unwrap().insert(n.to_string(), status(n, *s));
            if *s != PvState::NeverConnected {
                infos.push(
                    archiver_registry::PvTypeInfo::new_for_archiving(
                        n,
                        archiver_pb::PayloadType::ScalarDouble,
                        1,
                        archiver_registry::SamplingMethod::Monitor,
                        1.0,
                        Vec::new(),
                        archiver_pb::Timestamp::new(1_700_000_000, 0),
                    )
                    .unwrap(),
                );
            }
        }
        registry.put_type_infos(&infos).unwrap();
        Arc::new(Fake {
            registry: Some(Arc::new(registry)),
            ..f
        })
    }

    fn archived(&self) -> Vec<ArchiveSpec> {
        self.archived.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl ApplianceApi for Fake {
    fn identity(&self) -> &str {
        "fake0"
    }

    async fn archive(&self, specs: Vec<ArchiveSpec>) -> Result<Vec<Archived>, ApplianceError> {
        let mut pvs = self.pvs.lock().unwrap();
        let mut out = Vec::new();
        for spec in specs {
            let outcome = if pvs.contains_key(&spec.pv) {
                ArchiveOutcome::AlreadySubmitted
            } else {
                pvs.insert(spec.pv.clone(), status(&spec.pv, PvState::NeverConnected));
                ArchiveOutcome::Submitted
            };
            out.push(Archived {
                pv: spec.pv.clone(),
                outcome,
            });
            self.archived.lock().unwrap().push(spec);
        }
        Ok(out)
    }

    async fn pause(&self, pv: &str) -> Result<(), ApplianceError> {
        let mut pvs = self.pvs.lock().unwrap();
        let s = pvs
            .get_mut(pv)
            .ok_or_else(|| EngineError::NotFound(pv.into()))?;
        if s.state == PvState::Paused {
            return Err(EngineError::AlreadyPaused(pv.into()).into());
        }
        s.state = PvState::Paused;
        Ok(())
    }

    async fn resume(&self, pv: &str) -> Result<(), ApplianceError> {
        let mut pvs = self.pvs.lock().unwrap();
        let s = pvs
            .get_mut(pv)
            .ok_or_else(|| EngineError::NotFound(pv.into()))?;
        if s.state != PvState::Paused {
            return Err(EngineError::NotPaused(pv.into()).into());
        }
        s.state = PvState::Archiving;
        Ok(())
    }

    async fn delete(&self, pv: &str, delete_data: bool) -> Result<usize, ApplianceError> {
        let mut pvs = self.pvs.lock().unwrap();
        let s = pvs
            .get(pv)
            .ok_or_else(|| EngineError::NotFound(pv.into()))?;
        if s.state != PvState::Paused {
            return Err(EngineError::NotPaused(pv.into()).into());
        }
        pvs.remove(pv);
        Ok(if delete_data { 3 } else { 0 })
    }

    fn status(&self, pv: &str) -> Option<PvStatus> {
        self.pvs.lock().unwrap().get(pv).cloned()
    }

    fn all_status(&self) -> Vec<PvStatus> {
        self.pvs.lock().unwrap().values().cloned().collect()
    }

    fn names(&self) -> Vec<String> {
        self.pvs.lock().unwrap().keys().cloned().collect()
    }

    fn catalogue(&self) -> Arc<dyn archiver_registry::Registry> {
        match &self.registry {
            Some(r) => r.clone(),
            None => Arc::new(archiver_registry::SqliteRegistry::open_in_memory().unwrap()),
        }
    }
}

fn app(fake: &Arc<Fake>) -> Router {
    with_layers(mgmt_router(fake.clone()))
}

/// A response: status, headers, body bytes.
struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&self.body));
        })
    }

    fn message(&self) -> String {
        self.json()["message"].as_str().unwrap().to_string()
    }
}

async fn send(router: Router, req: Request<Body>) -> Reply {
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(fake: &Arc<Fake>, uri: &str) -> Reply {
    send(app(fake), Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post(fake: &Arc<Fake>, uri: &str, content_type: Option<&str>, body: &str) -> Reply {
    let mut req = Request::post(uri);
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    send(app(fake), req.body(Body::from(body.to_string())).unwrap()).await
}

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const JSON: Option<&str> = Some("application/json");
const TEXT: Option<&str> = Some("text/plain");

fn names_and_statuses(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["pvName"].as_str().unwrap().to_string(),
                o["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn post_get_pv_status_with_a_form_body_asks_for_each_pv() {
    let fake = Fake::with(&[("A", PvState::Archiving)]);
    // aapy: requests.post(url, data={"pv": "A,B"}).
    let r = post(&fake, "/mgmt/bpl/getPVStatus", FORM, "pv=A,B").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        names_and_statuses(&r.json()),
        [
            ("A".to_string(), "Being archived".to_string()),
            ("B".to_string(), "Not being archived".to_string())
        ]
    );
    assert_eq!(r.json()[0]["appliance"], "fake0");
    // Encoded names and repeated keys, as a browser form sends them.
    let r = post(&fake, "/mgmt/bpl/getPVStatus", FORM, "pv=A&pv=C%3AD").await;
    assert_eq!(r.json()[1]["pvName"], "C:D");
}

#[tokio::test]
async fn json_and_text_bodies_name_pvs_on_every_endpoint() {
    let fake = Fake::with(&[("A", PvState::Archiving), ("B", PvState::Archiving)]);
    let want = [
        ("A".to_string(), "Being archived".to_string()),
        ("B".to_string(), "Being archived".to_string()),
    ];
    for (ct, body) in [
        (JSON, r#"["A", "B"]"#),
        (JSON, r#"[{"pv": "A"}, {"pv": "B"}]"#),
        (TEXT, "A\nB\n"),
        (TEXT, "A,B"),
        (None, "A,B"),
        (None, r#"["A","B"]"#),
        // curl -d sends a form type with whatever it is given.
        (FORM, "A\nB"),
    ] {
        let r = post(&fake, "/mgmt/bpl/getPVStatus", ct, body).await;
        assert_eq!(r.status, StatusCode::OK, "{ct:?} {body}");
        assert_eq!(names_and_statuses(&r.json()), want, "{ct:?} {body}");
    }
    // The query and the body together.
    let r = post(&fake, "/mgmt/bpl/getPVStatus?pv=B", TEXT, "A").await;
    assert_eq!(r.json()[0]["pvName"], "B");
    assert_eq!(r.json()[1]["pvName"], "A");

    // epicsarchiver-mgmt-client: POST a raw comma list with no content type.
    let r = post(&fake, "/mgmt/bpl/pauseArchivingPV", None, "A,B").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!([{"pvName": "A", "status": "ok"}, {"pvName": "B", "status": "ok"}])
    );
    let r = post(&fake, "/mgmt/bpl/resumeArchivingPV", FORM, "pv=A").await;
    assert_eq!(r.json(), json!({"pvName": "A", "status": "ok"}));
    let r = post(&fake, "/mgmt/bpl/getAllPVs", FORM, "pv=A*").await;
    assert_eq!(r.json(), json!(["A"]));
}

#[tokio::test]
async fn archive_pv_takes_query_form_and_json_settings_with_per_pv_precedence() {
    let fake = Fake::with(&[]);
    let body = json!([
        {"pv": "X:1", "samplingperiod": "2.5", "samplingmethod": "SCAN"},
        {"pv": "X:2", "samplingperiod": 0},
        {"pv": "X:3"},
        "X:4.VAL"
    ]);
    let r = post(
        &fake,
        "/mgmt/bpl/archivePV?samplingperiod=7",
        JSON,
        &body.to_string(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.json()[0],
        json!({"pvName": "X:1", "status": "Archive request submitted"})
    );
    assert_eq!(r.json()[3]["pvName"], "X:4");
    let specs = fake.archived();
    let periods: Vec<Option<f64>> = specs.iter().map(|s| s.period.map(|p| p.secs())).collect();
    assert_eq!(periods, [Some(2.5), Some(0.0), Some(7.0), Some(7.0)]);
    assert_eq!(specs[0].method, Some(SamplingMethod::Scan));
    assert_eq!(specs[1].method, None, "left to the policy");

    // A method without a period is ignored (Java: only a period overrides the policy),
    // but still checked.
    let fake = Fake::with(&[]);
    let r = get(&fake, "/mgmt/bpl/archivePV?pv=M:1&samplingmethod=SCAN").await;
    assert_eq!(r.status, StatusCode::OK);
    let body = json!([{"pv": "M:2", "samplingmethod": "SCAN"},
                      {"pv": "M:3", "samplingmethod": "SCAN", "samplingperiod": "5"}]);
    let r = post(&fake, "/mgmt/bpl/archivePV", JSON, &body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK);
    let methods: Vec<_> = fake.archived().iter().map(|s| s.method).collect();
    assert_eq!(methods, [None, None, Some(SamplingMethod::Scan)]);
    let r = get(&fake, "/mgmt/bpl/archivePV?pv=M:4&samplingmethod=SOMETIMES").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // A form body; the query's value comes first, as a servlet's getParameter.
    let fake = Fake::with(&[]);
    let r = post(
        &fake,
        "/mgmt/bpl/archivePV?samplingperiod=3",
        FORM,
        "pv=F:1,F:2&samplingperiod=4&samplingmethod=SCAN",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let specs = fake.archived();
    assert_eq!(specs.len(), 2);
    assert!(
        specs
            .iter()
            .all(|s| s.period.map(|p| p.secs()) == Some(3.0)
                && s.method == Some(SamplingMethod::Scan))
    );
    let again = post(&fake, "/mgmt/bpl/archivePV", FORM, "pv=F:1").await;
    assert_eq!(again.json()[0]["status"], "Already submitted");
}

#[tokio::test]
async fn a_bad_sampling_period_is_a_400_naming_it_and_archives_nothing() {
    let fake = Fake::with(&[]);
    for (text, shown) in [
        ("1e-30", "1e-30"),
        ("1e300", "1e300"),
        ("NaN", "NaN"),
        ("-1", "-1.0"),
        ("inf", "inf"),
        ("-inf", "-inf"),
        ("0.0001", "0.0001"),
        ("31536001", "31536001.0"),
    ] {
        let r = get(
            &fake,
            &format!("/mgmt/bpl/archivePV?pv=X&samplingperiod={text}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{text}");
        let m = r.message();
        assert!(
            m.contains(&format!("samplingperiod {shown} is out of range")),
            "{text}: {m}"
        );
        assert!(
            m.contains("0 (every update)") && m.contains("31536000"),
            "{m}"
        );
    }
    let r = get(&fake, "/mgmt/bpl/archivePV?pv=X&samplingperiod=abc").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("\"abc\""), "{}", r.message());
    // One protocol prefix at most, in lower case.
    for bad in ["ca://pva://X", "PVA://X", "pvx://X", "pva://pva://X"] {
        let r = get(&fake, &format!("/mgmt/bpl/archivePV?pv={bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            r.message().contains("one protocol prefix"),
            "{bad}: {}",
            r.message()
        );
    }
    // The same check for a JSON body (a number or a string) and a form body.
    let r = post(
        &fake,
        "/mgmt/bpl/archivePV",
        JSON,
        r#"[{"pv": "OK"}, {"pv": "Y", "samplingperiod": 1e300}]"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.message()
            .contains("PV Y: samplingperiod 1e300 is out of range"),
        "{}",
        r.message()
    );
    let r = post(
        &fake,
        "/mgmt/bpl/archivePV",
        JSON,
        r#"[{"pv": "Y", "samplingperiod": "NaN"}]"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = post(&fake, "/mgmt/bpl/archivePV", FORM, "pv=Y&samplingperiod=-1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        fake.archived().is_empty(),
        "nothing is archived when a period is refused"
    );
    // The ends of the range are accepted.
    let r = get(&fake, "/mgmt/bpl/archivePV?pv=Z&samplingperiod=0.001").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(&fake, "/mgmt/bpl/archivePV?pv=Z2&samplingperiod=31536000").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_problem() {
    let fake = Fake::with(&[]);
    for (ct, body, needle) in [
        (JSON, "[", "not valid JSON"),
        (JSON, r#"{"pv": "A"}"#, "must be a list"),
        (JSON, r#"[{"name": "A"}]"#, "item 0 has no string \"pv\""),
        (
            Some("application/octet-stream"),
            "A",
            "unsupported Content-Type",
        ),
        (None, "", "missing required parameter 'pv'"),
    ] {
        let r = post(&fake, "/mgmt/bpl/archivePV", ct, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(r.message().contains(needle), "{body}: {}", r.message());
    }
    let r = send(
        app(&fake),
        Request::post("/mgmt/bpl/getPVStatus")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(vec![b'A', 0xff, 0xfe]))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("UTF-8"));
    // Java answers GET and POST only.
    let r = send(
        app(&fake),
        Request::builder()
            .method(Method::PUT)
            .uri("/mgmt/bpl/getPVStatus?pv=A")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    // A GET with a JSON content type and no body (some clients send it on every request).
    let r = send(
        app(&fake),
        Request::get("/mgmt/bpl/getPVStatus?pv=A")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn the_body_limit_takes_a_bulk_archive_of_100_000_pvs_and_refuses_more_with_413() {
    let fake = Fake::with(&[]);
    // 100 000 PVs with 60-character names and both settings: within the limit.
    let items: Vec<Value> = (0..100_000)
        .map(|k| json!({"pv": format!("SITE:AREA:SYSTEM:DEVICE:SIGNAL:{k:0>29}"), "samplingperiod": "1.0", "samplingmethod": "MONITOR"}))
        .collect();
    let body = serde_json::to_string(&items).unwrap();
    assert!(
        body.len() > 10 << 20 && body.len() < MAX_BODY_BYTES,
        "{}",
        body.len()
    );
    let r = post(&fake, "/mgmt/bpl/archivePV", JSON, &body).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body[..200.min(r.body.len())])
    );
    assert_eq!(r.json().as_array().unwrap().len(), 100_000);

    // A declared length over the limit: refused before the body is read.
    let big = "A\n".repeat(MAX_BODY_BYTES / 2 + 1);
    let r = post(&fake, "/mgmt/bpl/getPVStatus", TEXT, &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.message().contains("larger than 16 MiB"),
        "{}",
        r.message()
    );
    // A chunked body (no length) that passes the limit while it is read.
    let chunk = bytes_of("B\n", 1 << 20);
    let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> =
        (0..17).map(|_| Ok(chunk.clone())).collect();
    let r = send(
        app(&fake),
        Request::post("/mgmt/bpl/getPVStatus")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from_stream(futures_stream(chunks)))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.message().contains("larger than 16 MiB"),
        "{}",
        r.message()
    );
}

fn bytes_of(pattern: &str, len: usize) -> axum::body::Bytes {
    axum::body::Bytes::from(pattern.repeat(len / pattern.len()))
}

/// A stream of ready items.
fn futures_stream<T: Send + 'static>(items: Vec<T>) -> impl futures_core::Stream<Item = T> + Send {
    struct Iter<T>(std::vec::IntoIter<T>);
    impl<T> futures_core::Stream for Iter<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    impl<T> Unpin for Iter<T> {}
    Iter(items.into_iter())
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn json_responses_are_gzipped_when_the_client_accepts_it() {
    let names: Vec<(String, PvState)> = (0..500)
        .map(|k| (format!("GZ:PV:{k:04}"), PvState::Archiving))
        .collect();
    let refs: Vec<(&str, PvState)> = names.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    let fake = Fake::with(&refs);
    let plain = get(&fake, "/mgmt/bpl/getAllPVs?limit=-1").await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(plain.headers.get(header::CONTENT_ENCODING).is_none());
    let r = send(
        app(&fake),
        Request::get("/mgmt/bpl/getAllPVs?limit=-1")
            .header(header::ACCEPT_ENCODING, "gzip, deflate")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_ENCODING], "gzip");
    assert!(
        r.body.len() * 4 < plain.body.len(),
        "{} vs {}",
        r.body.len(),
        plain.body.len()
    );
    assert_eq!(gunzip(&r.body), plain.body);
    // getPVStatus too (written into one buffer, then compressed).
    let r = send(
        app(&fake),
        Request::get("/mgmt/bpl/getPVStatus?pv=GZ:*")
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.headers[header::CONTENT_ENCODING], "gzip");
    let v: Value = serde_json::from_slice(&gunzip(&r.body)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 500);
}

#[tokio::test]
async fn compression_keeps_a_streamed_json_body_streaming() {
    // A JSON body whose second piece is sent only once the client has the first
    // compressed bytes: a layer that waited for the end of the body would never answer.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(1);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let router = with_layers(Router::new().route(
        "/stream.json",
        axum::routing::get(move || {
            let rx = rx.lock().unwrap().take().unwrap();
            async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    Body::from_stream(Receiver(rx)),
                )
            }
        }),
    ));
    let piece: String = (0..40_000)
        .map(|k| format!("{},", k * 7919 % 100_003))
        .collect();
    tx.send(Ok(format!("[{piece}").into())).await.unwrap();
    let resp = router
        .oneshot(
            Request::get("/stream.json")
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.headers()[header::CONTENT_ENCODING], "gzip");
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the first piece is compressed and sent before the body ends")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    let mut all = first.to_vec();
    tx.send(Ok("0]".into())).await.unwrap();
    drop(tx);
    while let Some(f) = body.frame().await {
        if let Ok(d) = f.unwrap().into_data() {
            all.extend_from_slice(&d);
        }
    }
    let v: Value = serde_json::from_slice(&gunzip(&all)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 40_001);
}

/// A body stream from a channel.
struct Receiver(tokio::sync::mpsc::Receiver<Result<axum::body::Bytes, std::io::Error>>);

impl futures_core::Stream for Receiver {
    type Item = Result<axum::body::Bytes, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[tokio::test]
async fn lifecycle_answers_have_the_java_shapes() {
    let fake = Fake::with(&[("P:1", PvState::Archiving), ("P:2", PvState::Paused)]);
    let r = get(&fake, "/mgmt/bpl/pauseArchivingPV?pv=P:2").await;
    assert_eq!(r.json(), json!({"validation": "PV P:2 is already paused"}));
    let r = get(&fake, "/mgmt/bpl/pauseArchivingPV?pv=P:1,NOPE").await;
    assert_eq!(
        r.json(),
        json!([
            {"pvName": "P:1", "status": "ok"},
            {"pvName": "NOPE", "validation": "PV NOPE is not being archived"}
        ])
    );
    let r = get(&fake, "/mgmt/bpl/pauseArchivingPV?pv=NOPE").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = post(&fake, "/mgmt/bpl/resumeArchivingPV", JSON, r#"["P:*"]"#).await;
    assert_eq!(
        r.json(),
        json!([{"pvName": "P:1", "status": "ok"}, {"pvName": "P:2", "status": "ok"}])
    );
    let r = get(&fake, "/mgmt/bpl/deletePV?pv=P:1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"validation": "We will not stop archiving PV P:1 if it is not paused. Please pause recording first."})
    );
    get(&fake, "/mgmt/bpl/pauseArchivingPV?pv=P:1").await;
    let r = post(&fake, "/mgmt/bpl/deletePV", FORM, "pv=P:1&deleteData=true").await;
    assert_eq!(
        r.json(),
        json!({"pvName": "P:1", "status": "ok", "desc": "Deleted PV P:1 and 3 data files"})
    );
    let r = get(&fake, "/mgmt/bpl/deletePV?pv=P:1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = get(&fake, "/mgmt/bpl/deletePV?pv=P:2&deleteData=maybe").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// deletePV of several PVs, in each body form Java's `DeletePV` reads
/// (`PVsMatchingParameter.getPVNamesFromPostBody`: JSON list of names or `{"pv"}` objects,
/// text one name a line, form `pv=a,b`) and a GET comma list or glob: one object, a line
/// of `validation` per PV, `status` ok only when every line is empty.
#[tokio::test]
async fn delete_pv_takes_lists_in_every_body_form_java_reads() {
    let paused = |names: &[&'static str]| {
        Fake::with(
            &names
                .iter()
                .map(|n| (*n, PvState::Paused))
                .collect::<Vec<_>>(),
        )
    };
    let ok = json!({"status": "ok", "validation": "\n\n"});
    for (ct, body) in [
        (JSON, r#"["D:1", "D:2"]"#),
        (JSON, r#"[{"pv": "D:1"}, {"pv": "D:2"}]"#),
        (TEXT, "D:1\nD:2\n"),
        (FORM, "pv=D:1,D:2"),
    ] {
        let fake = paused(&["D:1", "D:2", "D:3"]);
        let r = post(&fake, "/mgmt/bpl/deletePV?deleteData=true", ct, body).await;
        assert_eq!(r.status, StatusCode::OK, "{body}");
        assert_eq!(r.json(), ok, "{body}");
        assert!(
            fake.status("D:1").is_none() && fake.status("D:2").is_none(),
            "{body}"
        );
        assert!(fake.status("D:3").is_some(), "{body}: only the PVs listed");
    }
    let fake = paused(&["D:1", "D:2"]);
    let r = get(&fake, "/mgmt/bpl/deletePV?pv=D:*").await;
    assert_eq!(r.json(), ok);
    assert!(fake.status("D:1").is_none() && fake.status("D:2").is_none());

    // A PV not paused and an unknown one are named, the others deleted.
    let fake = Fake::with(&[("D:1", PvState::Paused), ("D:2", PvState::Archiving)]);
    let r = get(&fake, "/mgmt/bpl/deletePV?pv=D:1,D:2,NOPE").await;
    assert_eq!(
        r.json(),
        json!({"validation": "\nWe will not stop archiving PV D:2 if it is not paused. Please \
            pause recording first.\nPV NOPE is not being archived\n"})
    );
    assert!(fake.status("D:1").is_none() && fake.status("D:2").is_some());
}

/// The three calls a fresh user found answering 404, in Java's shapes: getStorageMetrics
/// (Java `StorageReport`: the getApplianceMetrics list), getApplianceProperties
/// (`GetApplianceProps`), getMetaGets (`MetaGet.getPendingMetaDetails`).
#[tokio::test]
async fn storage_metrics_appliance_properties_and_meta_gets_answer_as_java() {
    let mut waiting = status("pva://W:2", PvState::NeverConnected);
    waiting.counters.added_secs = 1_418_019_667;
    let fake = Fake::with(&[
        ("W:1", PvState::NeverConnected),
        ("C:1", PvState::Archiving),
    ]);
    fake.pvs
        .lock()
        .unwrap()
        .insert(waiting.name.clone(), waiting);

    let storage = get(&fake, "/mgmt/bpl/getStorageMetrics").await;
    assert_eq!(storage.status, StatusCode::OK);
    let metrics = get(&fake, "/mgmt/bpl/getApplianceMetrics").await;
    assert_eq!(storage.json(), metrics.json());
    let row = &storage.json()[0];
    assert_eq!(
        (&row["instance"], &row["pvCount"], &row["capacityUtilized"]),
        (&json!("fake0"), &json!("3"), &json!("N/A"))
    );

    let r = get(&fake, "/mgmt/bpl/getApplianceProperties").await;
    assert_eq!(r.json(), json!({"minimum_sampling_period": "0.001"}));

    let r = post(&fake, "/mgmt/bpl/getMetaGets", None, "").await;
    assert_eq!(
        r.json(),
        json!([
            {"pvName": "W:1", "appliance": "fake0", "isScheduled": "true",
             "scheduleStart": "Never", "usePVAccess": "false"},
            {"pvName": "W:2", "appliance": "fake0", "isScheduled": "true",
             "scheduleStart": "Dec/08/2014 06:21:07 UTC", "usePVAccess": "true"}
        ])
    );
}

/// The storage-rate guard's drops are in the reports an operator reads: their own
/// dropped-events report (Java's shape, PVs without drops left out, most first) and a
/// column of the storage-rate report on the PVs that dropped (absent on the others).
#[tokio::test]
async fn the_rate_guards_drops_are_in_the_dropped_events_and_storage_rate_reports() {
    let fake = Fake::with(&[
        ("R:NONE", PvState::Archiving),
        ("R:SOME", PvState::Archiving),
        ("R:MANY", PvState::Archiving),
    ]);
    for (pv, dropped, bytes) in [("R:SOME", 5, 1000), ("R:MANY", 70, 2000), ("R:NONE", 0, 10)] {
        let mut pvs = fake.pvs.lock().unwrap();
        let c = &mut pvs.get_mut(pv).unwrap().counters;
        c.dropped_rate_limit = dropped;
        c.bytes_stored = bytes;
        // Buffer overflows are another report's.
        c.dropped_buffer_overflow = 1;
    }
    let r = get(&fake, "/mgmt/bpl/getPVsByDroppedEventsRateLimit").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!([
            {"pvName": "R:MANY", "eventsDropped": "70"},
            {"pvName": "R:SOME", "eventsDropped": "5"}
        ])
    );
    let r = get(&fake, "/mgmt/bpl/getPVsByDroppedEventsRateLimit?limit=1").await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = get(&fake, "/mgmt/bpl/getStorageRateReport").await.json();
    let rows = r.as_array().unwrap();
    let dropped: Vec<(&str, Option<&str>)> = rows
        .iter()
        .map(|row| {
            (
                row["pvName"].as_str().unwrap(),
                row.get("droppedEventsRateLimit")
                    .map(|v| v.as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        dropped,
        [
            ("R:MANY", Some("70")),
            ("R:SOME", Some("5")),
            ("R:NONE", None)
        ]
    );
    assert!(rows[0].get("storageRate_KBperHour").is_some(), "{r}");
}

#[tokio::test]
async fn never_connected_and_all_pvs() {
    let fake = Fake::with(&[
        ("N:2", PvState::NeverConnected),
        ("N:1", PvState::NeverConnected),
        ("C:1", PvState::Archiving),
    ]);
    let r = post(&fake, "/mgmt/bpl/getNeverConnectedPVs", None, "").await;
    assert_eq!(
        r.json(),
        json!([
            {"pvName": "N:1", "requestTime": "Never", "startOfWorkflow": "Never",
             "currentState": "METAINFO_REQUESTED", "appliance": "fake0"},
            {"pvName": "N:2", "requestTime": "Never", "startOfWorkflow": "Never",
             "currentState": "METAINFO_REQUESTED", "appliance": "fake0"}
        ])
    );
    // Beyond Java: `regex` (the web UI's regex search) is matched by the server.
    let r = get(&fake, "/mgmt/bpl/getNeverConnectedPVs?regex=N:%5B2-9%5D").await;
    let names: Vec<_> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pvName"].clone())
        .collect();
    assert_eq!(names, [json!("N:2")]);
    let r = get(&fake, "/mgmt/bpl/getNeverConnectedPVs?regex=(").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Java lists the PVs with a type info: none still in its archive request.
    let r = get(&fake, "/mgmt/bpl/getAllPVs?regex=N.*&limit=1").await;
    assert_eq!(r.json(), json!([]));
    let r = get(&fake, "/mgmt/bpl/getAllPVs?regex=.*:1").await;
    assert_eq!(r.json(), json!(["C:1"]));
    // `pv`: a comma list of globs and names; a name is listed if it is archived.
    let r = get(&fake, "/mgmt/bpl/getAllPVs?pv=C:*,N:1,C:1").await;
    assert_eq!(r.json(), json!(["C:1", "C:1"]));
    let r = get(&fake, "/mgmt/bpl/getAllPVs?limit=many").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get(&fake, "/mgmt/bpl/getAllPVs?regex=(").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_call_with_the_wrong_http_method_is_a_405_saying_which_it_takes() {
    let fake = Fake::with(&[]);
    // putPVTypeInfo and importConfig are POST only, as in Java.
    let r = get(&fake, "/mgmt/bpl/putPVTypeInfo?pv=A").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(msg.contains("POST"), "{msg}");
}

/// The calls Java's appliances make of each other answer on a single appliance as the
/// cluster call each names; an `appliance` that is not this one is a 404, as
/// getApplianceInfo's.
#[tokio::test]
async fn the_for_this_appliance_calls_answer_for_this_appliance_only() {
    use archiver_registry::Registry;
    let fake = Fake::with(&[
        ("A", PvState::Archiving),
        ("B", PvState::Paused),
        ("N", PvState::NeverConnected),
    ]);
    let reg = fake.registry.clone().unwrap();
    let mut b = reg.get_type_info("B").unwrap().unwrap();
    b.paused = true;
    reg.put_type_info(&b).unwrap();

    let r = get(&fake, "/mgmt/bpl/getPVsForThisAppliance").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!(["A", "B"]));
    let r = get(&fake, "/mgmt/bpl/getPausedPVsForThisAppliance").await;
    assert_eq!(r.json(), json!(["B"]));
    let r = get(&fake, "/mgmt/bpl/getMatchingPVsForThisAppliance?pv=A*").await;
    assert_eq!(r.json(), json!(["A"]));
    let r = get(&fake, "/mgmt/bpl/getNeverConnectedPVsForThisAppliance").await;
    assert_eq!(
        r.json(),
        get(&fake, "/mgmt/bpl/getNeverConnectedPVs").await.json()
    );
    let export = get(&fake, "/mgmt/bpl/exportConfig").await.json();
    assert_eq!(export.as_array().unwrap().len(), 2);
    assert_eq!(
        get(&fake, "/mgmt/bpl/exportConfigForAppliance?appliance=fake0")
            .await
            .json(),
        export
    );
    for call in [
        "getApplianceMetricsForAppliance",
        "getInstanceMetricsForAppliance",
    ] {
        let r = get(&fake, &format!("/mgmt/bpl/{call}?appliance=fake0")).await;
        assert_eq!(r.status, StatusCode::OK, "{call}");
        assert_eq!(
            r.json(),
            get(&fake, "/mgmt/bpl/getApplianceMetrics").await.json(),
            "{call}"
        );
    }
    // Another appliance's name: 404, nothing answered for it.
    for call in [
        "getApplianceMetricsForAppliance",
        "getStorageMetricsForAppliance",
        "getInstanceMetricsForAppliance",
        "exportConfigForAppliance",
        "getPVsForThisAppliance",
    ] {
        let r = get(&fake, &format!("/mgmt/bpl/{call}?appliance=other")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{call}");
        assert_eq!(
            r.message(),
            "Cannot find appliance info for other",
            "{call}"
        );
    }
    let r = post(
        &fake,
        "/mgmt/bpl/importConfigForAppliance?appliance=other",
        JSON,
        "[]",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = post(&fake, "/mgmt/bpl/importConfigForAppliance", JSON, "[]").await;
    assert_eq!(r.json(), json!({"appliance": "fake0", "errorPVs": []}));
    // abortArchivingPVForThisAppliance is abortArchivingPV.
    let r = get(&fake, "/mgmt/bpl/abortArchivingPVForThisAppliance?pv=N").await;
    assert_eq!(
        r.json(),
        get(&fake, "/mgmt/bpl/abortArchivingPV?pv=N").await.json()
    );
    // webAppReady: an empty 200 for a web app of the appliance, else a 404 (Java).
    let r = get(&fake, "/mgmt/bpl/webAppReady?webapp=RETRIEVAL").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    for uri in ["/mgmt/bpl/webAppReady", "/mgmt/bpl/webAppReady?webapp=NOPE"] {
        assert_eq!(get(&fake, uri).await.status, StatusCode::NOT_FOUND, "{uri}");
    }
}

/// Every management call, POSTed a chunked body (no length) that passes the limit while it
/// is read, under each body type: 413 with the JSON message, never a 400 or a 500 (and
/// never the body buffered whole). `putPVTypeInfo` and `importConfig` read their body
/// as one document (not through `BplRequest`): they answered axum's plain-text 413.
#[tokio::test]
async fn every_post_route_refuses_an_oversized_chunked_body_with_413() {
    let fake = Fake::with(&[]);
    let chunk = bytes_of("[\"B\",", 1 << 20);
    for call in archiver_http::auth::WRITE_CALLS
        .iter()
        .chain(archiver_http::auth::READ_CALLS)
    {
        for content_type in [JSON, FORM, TEXT] {
            let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> =
                (0..17).map(|_| Ok(chunk.clone())).collect();
            let r = send(
                app(&fake),
                Request::post(format!("/mgmt/bpl/{call}?pv=A"))
                    .header(header::CONTENT_TYPE, content_type.unwrap())
                    .body(Body::from_stream(futures_stream(chunks)))
                    .unwrap(),
            )
            .await;
            let writes = archiver_http::auth::WRITE_CALLS.contains(call);
            if r.status == StatusCode::PAYLOAD_TOO_LARGE {
                assert!(
                    r.message().contains("larger than 16 MiB"),
                    "{call}: {}",
                    r.message()
                );
            } else {
                // only a read call that takes no body may answer otherwise (it never reads it)
                assert!(!writes, "{call} {content_type:?}: {}", r.status);
                assert_ne!(r.status, StatusCode::BAD_REQUEST, "{call} {content_type:?}");
            }
        }
    }
}

/// Found by a fresh-user test: getPVStatus matched every glob of its list before cutting
/// it at `limit`, so `limit=100` with 20,000 more globs ran into the 5 s pattern budget
/// (a 400) instead of answering the first 100 at once, as getAllPVs and Java's
/// `PVsMatchingParameter` do. The entries after the limit are not looked at: here a glob
/// too costly to compile.
#[tokio::test]
async fn get_pv_status_stops_matching_once_its_limit_is_reached() {
    let fake = Fake::with(&[("N:1", PvState::Archiving), ("N:2", PvState::Archiving)]);
    let costly = "?".repeat(100_000);
    let r = post(
        &fake,
        "/mgmt/bpl/getPVStatus",
        FORM,
        &format!("limit=1&pv=N:*,{costly}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(
        names_and_statuses(&r.json()),
        [("N:1".to_string(), "Being archived".to_string())]
    );
    // Looked at, the costly glob is refused with a short message naming it.
    let r = post(
        &fake,
        "/mgmt/bpl/getPVStatus",
        FORM,
        &format!("limit=2&pv=N:1,{costly}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("too costly") && msg.contains("(100000 characters)"),
        "{msg}"
    );
    assert!(msg.len() < 600, "{} bytes", msg.len());
}

/// Found by a fresh-user test: a 1,000,000-character PV name was echoed whole in its 400.
#[tokio::test]
async fn an_invalid_long_pv_name_gets_a_short_message() {
    let fake = Fake::with(&[]);
    let long = "A".repeat(1_000_000);
    for call in ["/mgmt/bpl/getPVTypeInfo", "/mgmt/bpl/getPVDetails"] {
        let r = post(&fake, call, FORM, &format!("pv={long}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{call}");
        let msg = r.json()["message"].as_str().unwrap().to_string();
        assert!(
            msg.contains("(1000000 characters)") && msg.len() < 600,
            "{call}: {msg}"
        );
    }
}
