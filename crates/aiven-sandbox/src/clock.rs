//! The sandbox's clock: the machine's, shifted by `clock_offset_secs` (the API's clock
//! need not agree with the client's).

use time::OffsetDateTime;

pub fn now(offset_secs: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::seconds(offset_secs)
}
