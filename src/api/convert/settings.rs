//! Tenant settings: proto ↔ domain, every invalid field reported at once.

use chrono_tz::Tz;

use super::{FieldViolation, quote};
use crate::domain;
use crate::domain::rules::{
    MAX_SETTINGS_LIST_LEN, MAX_TEXT_LEN, is_currency_code, normalize_category,
};
use crate::proto::v1 as pb;

/// Converts proto settings at `base` (e.g. `settings`) into validated domain
/// settings, reporting every invalid field at once. Stage names and referral
/// sources are trimmed and lower-cased; stage names must be unique after
/// that, repeated referral sources are kept once.
pub fn settings_from_proto(
    base: &str,
    s: pb::TenantSettings,
) -> Result<domain::TenantSettings, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let mut bad = |field: String, reason: String| {
        violations.push(FieldViolation::new(format!("{base}.{field}"), reason));
    };

    let time_zone = if s.time_zone.is_empty() {
        bad("time_zone".into(), "is required".into());
        None
    } else {
        match s.time_zone.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                bad(
                    "time_zone".into(),
                    format!("{} is not an IANA time zone name", quote(&s.time_zone)),
                );
                None
            }
        }
    };

    if !is_currency_code(&s.currency_code) {
        let reason = if s.currency_code.is_empty() {
            "is required".to_string()
        } else {
            format!(
                "{} is not an active ISO 4217 currency code (three upper-case letters, e.g. USD)",
                quote(&s.currency_code)
            )
        };
        bad("currency_code".into(), reason);
    }

    let fiscal_year_start_month = match u32::try_from(s.fiscal_year_start_month) {
        Ok(m @ 1..=12) => m,
        _ => {
            bad(
                "fiscal_year_start_month".into(),
                format!("must be within 1..=12, got {}", s.fiscal_year_start_month),
            );
            1
        }
    };

    if s.pipeline_stages.is_empty() {
        bad(
            "pipeline_stages".into(),
            "must contain at least one stage".into(),
        );
    } else if s.pipeline_stages.len() > MAX_SETTINGS_LIST_LEN {
        bad(
            "pipeline_stages".into(),
            format!(
                "has {} stages; at most {MAX_SETTINGS_LIST_LEN} are allowed",
                s.pipeline_stages.len()
            ),
        );
    }
    let mut pipeline_stages: Vec<domain::PipelineStage> = Vec::new();
    for (i, stage) in s.pipeline_stages.iter().enumerate() {
        let name = normalize_category(&stage.name);
        let name_field = format!("pipeline_stages[{i}].name");
        if name.is_empty() {
            bad(name_field, "is required and must not be blank".into());
        } else if name.chars().count() > MAX_TEXT_LEN {
            bad(
                name_field,
                format!("must be at most {MAX_TEXT_LEN} characters"),
            );
        } else if pipeline_stages.iter().any(|s| s.name == name) {
            bad(
                name_field,
                format!("duplicates the stage name {}", quote(&name)),
            );
        }
        let p = stage.win_probability;
        if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
            bad(
                format!("pipeline_stages[{i}].win_probability"),
                format!("must be a number within [0, 1], got {p}"),
            );
        }
        pipeline_stages.push(domain::PipelineStage {
            name,
            win_probability: p,
        });
    }

    let gross_margin = s.gross_margin;
    if !(gross_margin.is_finite() && gross_margin > 0.0 && gross_margin <= 1.0) {
        bad(
            "gross_margin".into(),
            format!("must be a number within (0, 1], got {gross_margin}"),
        );
    }

    if !(1..=5).contains(&s.csat_satisfied_min_score) {
        bad(
            "csat_satisfied_min_score".into(),
            format!("must be within 1..=5, got {}", s.csat_satisfied_min_score),
        );
    }

    if s.referral_sources.len() > MAX_SETTINGS_LIST_LEN {
        bad(
            "referral_sources".into(),
            format!(
                "has {} entries; at most {MAX_SETTINGS_LIST_LEN} are allowed",
                s.referral_sources.len()
            ),
        );
    }
    let mut referral_sources: Vec<String> = Vec::new();
    for (i, source) in s.referral_sources.iter().enumerate() {
        let source = normalize_category(source);
        if source.is_empty() {
            bad(format!("referral_sources[{i}]"), "must not be blank".into());
        } else if source.chars().count() > MAX_TEXT_LEN {
            bad(
                format!("referral_sources[{i}]"),
                format!("must be at most {MAX_TEXT_LEN} characters"),
            );
        } else if !referral_sources.contains(&source) {
            referral_sources.push(source);
        }
    }

    match time_zone {
        Some(time_zone) if violations.is_empty() => Ok(domain::TenantSettings {
            time_zone,
            currency_code: s.currency_code,
            fiscal_year_start_month,
            pipeline_stages,
            gross_margin,
            csat_satisfied_min_score: s.csat_satisfied_min_score,
            referral_sources,
        }),
        _ => Err(violations),
    }
}

/// Converts domain settings into their proto form.
pub fn settings_to_proto(s: &domain::TenantSettings) -> pb::TenantSettings {
    pb::TenantSettings {
        time_zone: s.time_zone.name().to_string(),
        currency_code: s.currency_code.clone(),
        fiscal_year_start_month: i32::try_from(s.fiscal_year_start_month).unwrap_or(1),
        pipeline_stages: s
            .pipeline_stages
            .iter()
            .map(|p| pb::PipelineStage {
                name: p.name.clone(),
                win_probability: p.win_probability,
            })
            .collect(),
        gross_margin: s.gross_margin,
        csat_satisfied_min_score: s.csat_satisfied_min_score,
        referral_sources: s.referral_sources.clone(),
    }
}
