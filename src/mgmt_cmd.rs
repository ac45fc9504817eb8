//! `archiver mgmt CALL`: runs a management call of a running archiver over many PVs with
//! progress and a summary — the long operations an operator runs from the command line
//! (`consolidateDataForPV`, `reapplyPolicies`, `pauseArchivingPV`, `deletePVData`...).
//! The PVs (globs expanded by the server's `getAllPVs`) are sent in batches as JSON lists;
//! each batch's per-PV answers are tallied by their `status` (a refusal by its
//! `validation`); a progress line goes to stderr at most once a second and the summary to
//! stdout. The HTTP client is hyper's (already in the binary through axum).

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::progress::{EVERY, Progress};

/// `archiver mgmt` arguments.
#[derive(Debug, clap::Args)]
pub struct MgmtArgs {
    /// The management call (`consolidateDataForPV`, `reapplyPolicies`, `pauseArchivingPV`,
    /// `resumeArchivingPV`, `deletePVData`, `changeArchivalParameters`...).
    pub call: String,
    /// PV names or globs (`SIM:*`), repeatable; expanded by the server's getAllPVs.
    #[arg(long = "pv", value_name = "NAME|GLOB", required = true)]
    pub pvs: Vec<String>,
    /// A parameter of the call, repeatable (`--param storage=LTS`, `--param dryrun=true`).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// The archiver's address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:17665")]
    pub server: String,
    /// The archiver's API key (its `api_key`), sent as `Authorization: Bearer <key>`; the
    /// default is the ARCHIVER_API_KEY environment variable. Needed for the calls that
    /// change something when the archiver is bound beyond loopback.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// PVs per request.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub batch: usize,
}

/// Runs `archiver mgmt`; the exit code is 1 when a PV was refused.
pub fn run(args: &MgmtArgs) -> Result<u8> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if !args.call.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!(
            "{:?} is not a management call name (such as consolidateDataForPV)",
            args.call
        );
    }
    let mut query = String::new();
    for p in &args.params {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--param {p:?}: expected KEY=VALUE");
        };
        query.push('&');
        query.push_str(&encode(k));
        query.push('=');
        query.push_str(&encode(v));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let server = Server {
        addr: &args.server,
        key: args
            .api_key
            .clone()
            .or_else(|| std::env::var("ARCHIVER_API_KEY").ok()),
    };
    rt.block_on(async {
        let names = expand(&server, &args.pvs).await?;
        if names.is_empty() {
            bail!("no archived PV matches {}", args.pvs.join(" "));
        }
        let started = Instant::now();
        let mut progress = Progress::of("mgmt", "PVs done", Some(names.len() as u64), EVERY);
        let mut tally: BTreeMap<String, u64> = BTreeMap::new();
        let mut refused: Vec<String> = Vec::new();
        for batch in names.chunks(args.batch) {
            let body = serde_json::to_vec(batch)?;
            let path = format!("/mgmt/bpl/{}?{}", args.call, query.trim_start_matches('&'));
            let answer = request(&server, "POST", &path, Some(body)).await?;
            let rows = match answer {
                Value::Array(rows) => rows,
                one => vec![one],
            };
            for (i, r) in rows.iter().enumerate() {
                // A refusal may not name its PV: the answers are in the request's order.
                let pv = r["pvName"]
                    .as_str()
                    .or_else(|| (rows.len() == batch.len()).then(|| batch[i].as_str()))
                    .unwrap_or("?");
                if let Some(why) = r["validation"].as_str() {
                    refused.push(format!("{pv}: {why}"));
                } else {
                    let status = r["status"].as_str().unwrap_or("answered").to_string();
                    *tally.entry(status).or_default() += 1;
                }
            }
            progress.add(batch.len() as u64, &mut std::io::stderr());
        }
        let counts: Vec<String> = tally.iter().map(|(s, n)| format!("{n} {s}")).collect();
        println!(
            "{} of {} PVs in {:.1} s: {}{}",
            args.call,
            names.len(),
            started.elapsed().as_secs_f64(),
            if counts.is_empty() {
                "none answered".to_string()
            } else {
                counts.join(", ")
            },
            if refused.is_empty() {
                String::new()
            } else {
                format!(", {} refused", refused.len())
            }
        );
        for r in refused.iter().take(20) {
            println!("  refused {r}");
        }
        if refused.len() > 20 {
            println!("  ... and {} more", refused.len() - 20);
        }
        Ok(u8::from(!refused.is_empty()))
    })
}

/// The archiver to call: its address and API key.
struct Server<'a> {
    addr: &'a str,
    key: Option<String>,
}

/// The archived PVs named by `pvs` (globs through getAllPVs), each once, in order.
async fn expand(server: &Server<'_>, pvs: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for p in pvs {
        let names = if p.contains(['*', '?']) {
            let answer = request(
                server,
                "GET",
                &format!("/mgmt/bpl/getAllPVs?pv={}&limit=-1", encode(p)),
                None,
            )
            .await?;
            serde_json::from_value::<Vec<String>>(answer)
                .context("getAllPVs did not answer a list of names")?
        } else {
            vec![p.clone()]
        };
        for n in names {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    Ok(out)
}

/// One HTTP/1.1 request to `server`; the answer's JSON, or an error with the server's
/// message for a status other than 200.
async fn request(
    server: &Server<'_>,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Value> {
    let stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .with_context(|| format!("cannot connect to the archiver at {}", server.addr))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, server.addr)
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(key) = &server.key {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let resp = sender
        .send_request(req)
        .await
        .with_context(|| format!("{method} {path}"))?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "{method} {path}: {status}: {}",
            String::from_utf8_lossy(&bytes).trim()
        );
    }
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{method} {path}: the answer is not JSON"))
}

/// `text` percent-encoded for a query string (unreserved characters kept).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_text_is_percent_encoded() {
        assert_eq!(super::encode("SIM:A B{1}*"), "SIM%3AA%20B%7B1%7D*");
    }
}
