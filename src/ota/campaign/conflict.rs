//! The conflict rule (Alibaba): a batch campaign may not start while
//! another unfinished campaign of the same product takes devices from an
//! overlapping set of source versions to a different target version.

use super::effective_status;
use crate::model::{CampaignRecord, FirmwareRecord};
use crate::store::{StoreError, Tx};

/// Campaigns read per step of the check.
const STEP: usize = 1_000;

/// The source versions an older record takes devices from (`None`: any),
/// for records written before `CampaignPolicy::source_versions`.
fn sources_of(c: &CampaignRecord) -> Option<Vec<String>> {
    if let Some(v) = &c.policy.source_versions {
        return Some(v.clone());
    }
    let list = c.target.get("source_versions")?.as_array()?;
    Some(
        list.iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
    )
}

/// The id of the first unfinished campaign `fw` with `sources` (`None`:
/// any version) would conflict with.
pub fn find(
    tx: &mut (impl Tx + ?Sized),
    fw: &FirmwareRecord,
    sources: Option<&[String]>,
) -> Result<Option<u64>, StoreError> {
    let mut after = None;
    loop {
        let step = tx.campaigns(after, STEP)?;
        let Some(last) = step.last() else {
            return Ok(None);
        };
        after = Some(last.id);
        for c in &step {
            if c.product != fw.product || c.target_version == fw.version {
                continue;
            }
            let counts = tx.campaign_counts(c.id)?;
            if !effective_status(c, &counts).is_open() {
                continue;
            }
            let overlap = match (sources, sources_of(c)) {
                (None, _) | (_, None) => true,
                (Some(a), Some(b)) => a.iter().any(|v| b.contains(v)),
            };
            if overlap {
                return Ok(Some(c.id));
            }
        }
    }
}
