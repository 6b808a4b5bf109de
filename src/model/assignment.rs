//! Firmware assignment (ThingsBoard style): the image a product's devices,
//! or one device, should run. One slot per firmware `kind` (`firmware`,
//! `software`); a device's own assignment beats its product's.

use serde::{Deserialize, Serialize};

use super::{CampaignId, FirmwareId};
use crate::time::Timestamp;

/// Whom an assignment is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AssignmentScope {
    Product(String),
    Device(String),
}

impl AssignmentScope {
    /// `product/NAME` or `device/NAME` (audit targets, campaign targets).
    pub fn label(&self) -> String {
        match self {
            AssignmentScope::Product(p) => format!("product/{p}"),
            AssignmentScope::Device(d) => format!("device/{d}"),
        }
    }

    /// The store key: scope tag and name.
    pub fn key(&self) -> (u8, &str) {
        match self {
            AssignmentScope::Product(p) => (0, p),
            AssignmentScope::Device(d) => (1, d),
        }
    }
}

/// One assigned image and the campaign that carries its tasks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Assigned {
    pub firmware: FirmwareId,
    pub version: String,
    /// The campaign whose tasks bring devices to `version`; devices that
    /// turn up later get their task in it too.
    pub campaign: CampaignId,
    pub set_at: Timestamp,
}

/// The assignments of one product or device, per kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Assignments {
    #[serde(default)]
    pub firmware: Option<Assigned>,
    #[serde(default)]
    pub software: Option<Assigned>,
}

impl Assignments {
    pub fn slot(&self, software: bool) -> Option<&Assigned> {
        if software {
            self.software.as_ref()
        } else {
            self.firmware.as_ref()
        }
    }

    pub fn slot_mut(&mut self, software: bool) -> &mut Option<Assigned> {
        if software {
            &mut self.software
        } else {
            &mut self.firmware
        }
    }

    pub fn is_empty(&self) -> bool {
        self.firmware.is_none() && self.software.is_none()
    }
}
