//! `archivePV`: start archiving PVs, with the Java response shape.

use archiver_appliance::{
    ArchiveOutcome, ArchiveSpec, SamplingMethod, SamplingPeriod, SharedAppliance,
};
use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::{api_error, normalize};
use crate::error::{ApiError, ApiResult};
use crate::extract::BplRequest;

/// One PV of the `archivePV` answer.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveReply {
    /// The PV name (normalised).
    pub pv_name: String,
    /// `Archive request submitted` or `Already submitted` (Java's strings).
    pub status: &'static str,
}

/// A sampling period parameter: checked by the appliance's policy (0, or 1 ms to 365
/// days); the 400 names the value and the range.
pub fn parse_period(text: &str) -> ApiResult<SamplingPeriod> {
    SamplingPeriod::parse(text).map_err(|e| ApiError::bad(e.to_string()))
}

/// A sampling method parameter: `MONITOR` or `SCAN` (`SamplingMethod::parse`); the 400
/// names the value.
pub fn parse_method(text: &str) -> ApiResult<SamplingMethod> {
    SamplingMethod::parse(text.trim()).ok_or_else(|| {
        ApiError::bad(format!(
            "samplingmethod must be MONITOR or SCAN, not {text:?}"
        ))
    })
}

/// Archive field names: a comma list or a JSON array of names like `HIHI`; the 400 names
/// the first that is not an archive field name (`policy::is_archive_field_name`).
pub fn parse_fields(text: &str) -> ApiResult<Vec<String>> {
    let names: Vec<String> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
            .map_err(|e| ApiError::bad(format!("archiveFields is not a JSON list of names: {e}")))?
    } else {
        text.split(',')
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect()
    };
    for n in &names {
        if !archiver_appliance::policy::is_archive_field_name(n) {
            return Err(ApiError::bad(format!("invalid archive field name {n:?}")));
        }
    }
    Ok(names)
}

/// `archivePV` (GET, POST): `pv` (comma list), `samplingperiod`, `samplingmethod`,
/// `controllingPV`, `policy`, `alias`, `appliance`, `archiveFields` (beyond Java:
/// per-PV archive fields, a comma list or a JSON list) as parameters; or a JSON list
/// (`[{"pv": …, "samplingperiod": …, "samplingmethod": …, "controllingPV": …, "policy": …,
/// "alias": …, "appliance": …}]` or names), a text list or a form body (see
/// [`BplRequest`]). A per-PV setting wins over the request's; what neither gives comes
/// from the policy (`policy` names one; otherwise the site's rules pick it); as in Java, a
/// `samplingmethod` without a `samplingperiod` is ignored. A name that is an alias of an
/// archived PV, or `PV.FIELD` for a stream field (`HIHI`...) of an archived PV, answers
/// "Already submitted" under the PV's name (the field joins its archive fields); see
/// `Appliance::archive_many`. `appliance`
/// must be this appliance's identity (one appliance, no cluster): another is a 400 naming
/// both. Everything is checked before anything is archived.
pub async fn archive_pv(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Json<Vec<ArchiveReply>>> {
    let entries = req.names()?;
    let default_period = req.get("samplingperiod").map(parse_period).transpose()?;
    let default_method = req.get("samplingmethod").map(parse_method).transpose()?;
    let mut specs = Vec::with_capacity(entries.len());
    for e in &entries {
        // the protocol prefix stays for the appliance (its policy chooses without one)
        let pv = normalize(&e.pv).map(|n| {
            match ["pva://", "ca://"]
                .iter()
                .find(|p| e.pv.trim().starts_with(**p))
            {
                Some(p) => format!("{p}{n}"),
                None => n,
            }
        })?;
        let period = match e.fields.get("samplingperiod") {
            Some(t) => Some(parse_period(t).map_err(|err| with_pv(err, &pv))?),
            None => default_period,
        };
        let method = match e.fields.get("samplingmethod") {
            Some(t) => Some(parse_method(t).map_err(|err| with_pv(err, &pv))?),
            None => default_method,
        }
        // Java overrides the policy only when a sampling period is given: a method alone
        // is checked, then ignored (`ArchivePVAction`: `overridePolicyParams` is
        // "samplingperiod given"; the policy's method and period apply).
        .filter(|_| period.is_some());
        // A per-PV JSON key (lower-cased by the extractor), else the request's parameter.
        let param = |key: &str| {
            e.fields
                .get(&key.to_ascii_lowercase())
                .map(String::as_str)
                .or(req.get(key))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let archive_fields = match param("archiveFields") {
            None => Vec::new(),
            Some(t) => parse_fields(t)?,
        };
        if let Some(a) = param("appliance")
            && a != app.identity()
        {
            return Err(ApiError::bad(format!(
                "PV {pv}: appliance {a:?} is not this appliance ({:?}); this archiver is a \
                 single appliance",
                app.identity()
            )));
        }
        let controlling_pv = param("controllingPV")
            .map(|c| normalize(c).map_err(|err| with_pv(err, &pv)))
            .transpose()?;
        let alias = param("alias")
            .map(|a| normalize(a).map_err(|err| with_pv(err, &pv)))
            .transpose()?;
        if alias.as_deref() == Some(pv.as_str()) {
            return Err(ApiError::bad(format!(
                "PV {pv}: an alias cannot be the PV itself"
            )));
        }
        specs.push(ArchiveSpec {
            pv,
            method,
            period,
            archive_fields,
            policy: param("policy").map(String::from),
            controlling_pv,
            alias,
        });
    }
    let results = app.archive(specs).await.map_err(api_error)?;
    Ok(Json(
        results
            .into_iter()
            .map(|r| ArchiveReply {
                pv_name: r.pv,
                status: match r.outcome {
                    ArchiveOutcome::Submitted => "Archive request submitted",
                    ArchiveOutcome::AlreadySubmitted => "Already submitted",
                },
            })
            .collect(),
    ))
}

/// `err`, for the PV `pv` of a list.
fn with_pv(err: ApiError, pv: &str) -> ApiError {
    match err {
        ApiError::BadRequest(m) => ApiError::bad(format!("PV {pv}: {m}")),
        other => other,
    }
}
