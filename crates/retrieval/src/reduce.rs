//! [`PostProcessorReducer`]: the post-processors as ETL's [`Reducer`], so that a store
//! whose URL caches some (`pp=mean_3600`) gets their results written as partitions are
//! moved into it, and retrieval reads those instead of computing them (Java
//! `PlainStoragePlugin` with `pp=`).

use archiver_pb::{PayloadType, Sample, Timestamp};
use archiver_storage::Reducer;

use crate::error::RetrievalError;
use crate::plan::StreamDesc;
use crate::postprocess::{Output, PostProcessorSpec, build};

/// Runs a post-processor spec (`mean_3600`, `firstSample_3600`, ...) over one partition's
/// samples, as a request of that spec over the partition's range would.
#[derive(Debug, Clone, Copy, Default)]
pub struct PostProcessorReducer;

/// What a post-processor emits, kept.
struct Collected {
    payload_type: PayloadType,
    samples: Vec<Sample>,
}

impl Output for Collected {
    fn sample(&mut self, s: &Sample) -> Result<(), RetrievalError> {
        self.samples.push(s.clone());
        Ok(())
    }

    fn retype(&mut self, payload_type: PayloadType, _element_count: u32) {
        if self.samples.is_empty() {
            self.payload_type = payload_type;
        }
    }
}

impl Reducer for PostProcessorReducer {
    fn reduce(
        &self,
        post_processor: &str,
        payload_type: PayloadType,
        input: &[Sample],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<(PayloadType, Vec<Sample>), String> {
        let spec = PostProcessorSpec::parse(post_processor).map_err(|e| e.to_string())?;
        let mut pp = build(&spec);
        let element_count = input.first().map_or(1, |s| {
            u32::try_from(s.value.element_count()).unwrap_or(u32::MAX)
        });
        let mut desc = StreamDesc {
            name: String::new(),
            payload_type,
            element_count,
            headers: Vec::new(),
            from,
            to,
        };
        pp.begin_pv(&mut desc).map_err(|e| e.to_string())?;
        let mut out = Collected {
            payload_type: desc.payload_type,
            samples: Vec::new(),
        };
        for s in input {
            pp.sample(s, &mut out).map_err(|e| e.to_string())?;
        }
        pp.end_pv(&mut out).map_err(|e| e.to_string())?;
        Ok((out.payload_type, out.samples))
    }
}
