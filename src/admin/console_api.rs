//! The admin handlers the web console (`crate::console`) calls in-process,
//! so its pages show what the API answers and its forms go through the
//! API's own validation. Re-exports only: the handler modules stay private
//! to `admin`.

pub(crate) mod firmware {
    pub(crate) use crate::admin::firmware::{delete, list, show, upload};
}

pub(crate) mod campaigns {
    pub(crate) use crate::admin::campaigns::{cancel, create, devices, list, show};
}

pub(crate) mod devices {
    pub(crate) use crate::admin::devices::{history, show};
}

pub(crate) mod campaign_rules {
    pub(crate) use crate::admin::campaign_rules::{resume, retry};
}

pub(crate) mod audit {
    pub(crate) use crate::admin::audit::list;
}
