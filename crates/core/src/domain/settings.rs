//! Tenant settings with their defaults (docs/api.md lists them).

use chrono_tz::Tz;

/// The tenant used when authentication is off (the embedded quick start):
/// it exists implicitly and gets default settings on first use.
pub const DEFAULT_TENANT: &str = "default";

/// A pipeline stage and the probability that a deal in it is won.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineStage {
    /// Stage name, trimmed and lower-cased, unique in the pipeline.
    pub name: String,
    /// Win probability in [0, 1].
    pub win_probability: f64,
}

/// A tenant's settings, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSettings {
    /// Time zone that periods are read in.
    pub time_zone: Tz,
    /// ISO 4217 reporting currency.
    pub currency_code: String,
    /// First month of the fiscal year, 1–12.
    pub fiscal_year_start_month: u32,
    /// Ordered pipeline stages (non-empty).
    pub pipeline_stages: Vec<PipelineStage>,
    /// Gross margin in (0, 1], used by CLV.
    pub gross_margin: f64,
    /// Lowest CSAT score counted as satisfied (1–5).
    pub csat_satisfied_min_score: i32,
    /// Lead sources counted as referrals (trimmed, lower-cased).
    pub referral_sources: Vec<String>,
}

impl Default for TenantSettings {
    fn default() -> Self {
        let stage = |name: &str, win_probability| PipelineStage {
            name: name.to_string(),
            win_probability,
        };
        TenantSettings {
            time_zone: Tz::UTC,
            currency_code: "USD".to_string(),
            fiscal_year_start_month: 1,
            pipeline_stages: vec![
                stage("prospecting", 0.1),
                stage("qualification", 0.2),
                stage("proposal", 0.5),
                stage("negotiation", 0.8),
            ],
            gross_margin: 1.0,
            csat_satisfied_min_score: 4,
            referral_sources: vec!["referral".to_string()],
        }
    }
}
