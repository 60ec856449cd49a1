//! Leads: the cohort of leads created in the period (attributed at
//! created_at), its conversion and first-response time whenever they
//! happened, and referrals. The LEAD_SOURCE breakdown reads the same
//! figures per source.

use std::collections::BTreeSet;

use crate::kpi::calc::{Calc, Rolled, nanos_to_seconds};
use crate::kpi::catalog::{Category::Leads, Direction::*, KpiDef, Unit, Unit::*, kpi};
use crate::kpi::value::KpiValue;

/// leads_created … referrals, in catalog order.
pub(crate) const LEADS: &[KpiDef] = &[
    kpi(
        "leads_created",
        "Leads created",
        Leads,
        Count,
        HigherIsBetter,
        "count(leads : created_at in P)",
        |c, _| c.lead_figures().created_value(),
    ),
    kpi(
        "lead_conversion_rate",
        "Lead conversion rate",
        Leads,
        Ratio,
        HigherIsBetter,
        "count(leads : created_at in P, converted_at set) / leads_created (the period's leads, converted at any time)",
        |c, _| c.lead_figures().conversion_rate(),
    ),
    kpi(
        "lead_response_time",
        "Lead response time",
        Leads,
        DurationSeconds,
        LowerIsBetter,
        "mean(first_response_at - created_at : created_at in P, first_response_at set)",
        |c, _| c.lead_figures().response_time(),
    ),
    kpi(
        "referrals",
        "Referrals",
        Leads,
        Count,
        HigherIsBetter,
        "count(leads : created_at in P, source in referral_sources)",
        |c, k| k.whole(c.source.referrals(c)),
    ),
];

/// Counts and sums over a set of leads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LeadFigures {
    pub(crate) created: i128,
    pub(crate) converted: i128,
    /// Leads with a first response.
    pub(crate) responded: i128,
    /// Σ first_response_at − created_at over those, in nanoseconds.
    pub(crate) response_nanos: i128,
}

impl LeadFigures {
    /// leads_created = count(leads : created_at ∈ P)
    fn created_value(&self) -> KpiValue {
        KpiValue::whole("leads_created", Unit::Count, self.created)
    }

    /// lead_conversion_rate = count(created_at ∈ P, converted_at set) ÷ leads_created
    fn conversion_rate(&self) -> KpiValue {
        KpiValue::ratio(
            "lead_conversion_rate",
            Unit::Ratio,
            self.converted as f64,
            self.created as f64,
            "no leads were created in the period",
        )
    }

    /// lead_response_time = mean(first_response_at − created_at : created_at ∈ P, responded)
    fn response_time(&self) -> KpiValue {
        KpiValue::ratio(
            "lead_response_time",
            Unit::DurationSeconds,
            nanos_to_seconds(self.response_nanos),
            self.responded as f64,
            "no lead created in the period has a first response",
        )
    }
}

/// How the lead figures are read (production: [`Rolled`]).
pub(crate) trait LeadSource {
    /// The figures of the scope's leads created in P (owner at created_at),
    /// of one source or of all when `None`.
    fn lead_figures(&self, c: &Calc<'_, '_>, source: Option<&str>) -> LeadFigures;
    /// referrals = count(leads : created_at ∈ P, source ∈ referral_sources).
    fn referrals(&self, c: &Calc<'_, '_>) -> i128;
}

impl LeadSource for Rolled {
    fn lead_figures(&self, c: &Calc<'_, '_>, source: Option<&str>) -> LeadFigures {
        let (created, [converted, responded, response_nanos]) = match source {
            None => c.total(&c.index.leads.by_created, &c.index.leads.figures),
            Some(source) => match c.index.leads.by_source.get(source) {
                Some((by_time, rollup)) => c.total(by_time, rollup),
                None => return LeadFigures::default(),
            },
        };
        LeadFigures {
            created,
            converted,
            responded,
            response_nanos,
        }
    }

    fn referrals(&self, c: &Calc<'_, '_>) -> i128 {
        // A source listed twice is one source: its leads count once.
        let sources = &c.engine.settings().referral_sources;
        let distinct: BTreeSet<&str> = sources.iter().map(String::as_str).collect();
        distinct
            .into_iter()
            .map(|s| self.lead_figures(c, Some(s)).created)
            .sum()
    }
}

impl Calc<'_, '_> {
    /// The figures of the scope's leads created in P, once per (scope, period).
    fn lead_figures(&self) -> LeadFigures {
        *self
            .memo
            .leads
            .get_or_init(|| self.source.lead_figures(self, None))
    }

    /// LEAD_SOURCE row values over the scope's leads created in P (of one
    /// source, or all when `None`).
    pub(crate) fn lead_values(&self, source: Option<&str>) -> Vec<KpiValue> {
        let leads = match source {
            None => self.lead_figures(),
            Some(source) => self.source.lead_figures(self, Some(source)),
        };
        vec![
            leads.created_value(),
            leads.conversion_rate(),
            leads.response_time(),
        ]
    }
}
