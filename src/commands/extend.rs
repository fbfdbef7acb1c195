//! `extend`: move a run's expiry (its `aiven-ephemeral-expires` tags, and its leases on
//! shared services), from the API's clock.

use crate::error::{Result, Status};
use crate::progress::Reporter;
use crate::settings;

pub async fn extend(args: &settings::Extend, reporter: &Reporter) -> Result<Status> {
    crate::engine::extend::extend(args, reporter).await
}
