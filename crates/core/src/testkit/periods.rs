//! Period boundaries: orders either side of both New York boundaries of
//! March 2024 (a month that starts in EST and ends in EDT), and a fiscal
//! year starting in April with an annual target. Values computed by hand.

use chrono_tz::Tz;

use crate::domain::*;

use super::build::*;

/// Orders either side of the America/New_York boundaries of March 2024.
pub fn new_york_orders() -> Vec<Record> {
    vec![
        sale("before", 1, "2024-03-01T04:59:59Z", None), // Feb 29 23:59:59 EST
        sale("first", 10, "2024-03-01T05:00:00Z", None), // Mar 1 00:00 EST
        sale("last", 100, "2024-04-01T03:59:59Z", None), // Mar 31 23:59:59 EDT
        sale("after", 1000, "2024-04-01T04:00:00Z", None), // Apr 1 00:00 EDT
    ]
}

/// The zone [`new_york_orders`] are read in.
pub const NEW_YORK: Tz = chrono_tz::America::New_York;

/// The default settings with [`NEW_YORK`] as the tenant's zone.
pub fn new_york_settings() -> TenantSettings {
    TenantSettings {
        time_zone: NEW_YORK,
        ..TenantSettings::default()
    }
}

/// March 2024 revenue of [`new_york_orders`] in New York: first 10 + last 100.
pub const NEW_YORK_MARCH_REVENUE: f64 = 110.0;

/// February 2024 revenue of [`new_york_orders`] in New York: before 1.
pub const NEW_YORK_FEBRUARY_REVENUE: f64 = 1.0;

/// March 2024 revenue of [`new_york_orders`] in UTC: before 1 + first 10.
pub const UTC_MARCH_REVENUE: f64 = 11.0;

/// An annual revenue target for the fiscal year 2023-04-01..2024-04-01 and
/// orders either side of both its boundaries.
pub fn fiscal_year() -> Vec<Record> {
    vec![
        // An annual target for the fiscal year, wholly inside it.
        target(
            "fy",
            TargetMetric::Revenue,
            1200,
            date(2023, 4, 1),
            date(2024, 4, 1),
            TargetScope::Company,
        ),
        sale("a", 100, "2023-03-31T23:59:59Z", None),
        sale("b", 200, "2023-04-01T00:00:00Z", None),
        sale("c", 300, "2024-03-31T12:00:00Z", None),
        sale("d", 400, "2024-04-01T00:00:00Z", None),
    ]
}

/// The default settings with a fiscal year starting in April.
pub fn fiscal_year_settings() -> TenantSettings {
    TenantSettings {
        fiscal_year_start_month: 4,
        ..TenantSettings::default()
    }
}

/// [`fiscal_year`] in the fiscal year containing 2024-03-15
/// (2023-04-01..2024-04-01), COMPANY.
pub const FISCAL_YEAR: &[super::Expected] = &[
    // b 200 + c 300
    ("revenue", Some(500.0)),
    ("revenue_target", Some(1200.0)),
    // previous fiscal year: order a only → (500 − 100) ÷ 100
    ("revenue_growth", Some(4.0)),
];

/// [`fiscal_year`] in the fiscal quarter containing 2024-03-15 (fiscal Q4,
/// 2024-01-01..2024-04-01), COMPANY.
pub const FISCAL_Q4: &[super::Expected] = &[
    // 91 of the target's 366 days
    ("revenue_target", Some(1200.0 * 91.0 / 366.0)),
    // c
    ("revenue", Some(300.0)),
];
