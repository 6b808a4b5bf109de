//! A device's task pointers, kept apart from its `DeviceRecord` so that
//! creating a campaign over a million devices writes these small rows, not
//! every device record (issue 10 benchmark). Read and written only through
//! `ota::assignment::{active, set_active}` and the campaign bulk queue.

use serde::{Deserialize, Serialize};

use super::CampaignId;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceTasks {
    /// Campaign id of the unfinished firmware task, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<CampaignId>,
    /// Campaign id of the unfinished software task (firmware of `kind`
    /// `software`), if any: a device holds one task of each kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software: Option<CampaignId>,
    /// Campaign id of the most recent task of either kind, finished or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<CampaignId>,
}

impl DeviceTasks {
    /// The unfinished task of one kind.
    pub fn active(&self, software: bool) -> Option<CampaignId> {
        if software {
            self.software
        } else {
            self.firmware
        }
    }

    /// Points one kind's slot at `campaign` (which, when set, also becomes
    /// the latest task) or clears it.
    pub fn set_active(&mut self, software: bool, campaign: Option<CampaignId>) {
        if software {
            self.software = campaign;
        } else {
            self.firmware = campaign;
        }
        if campaign.is_some() {
            self.last = campaign;
        }
    }

    /// The task a device page shows: the unfinished firmware task, else
    /// the latest.
    pub fn shown(&self) -> Option<CampaignId> {
        self.firmware.or(self.last)
    }

    pub fn is_empty(&self) -> bool {
        *self == DeviceTasks::default()
    }
}
