//! The pipeline: deals created, the open pipeline at the end of the period
//! (plain and weighted by stage), its coverage of the remaining revenue
//! target, and the funnel of the period's deals (served as
//! `KpiBundle.funnel` and the STAGE breakdown, not as a value).

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::domain::TargetMetric;

use crate::kpi::calc::{Calc, Rolled};
use crate::kpi::catalog::{Category::Performance, Direction::*, KpiDef, Unit::*, kpi};
use crate::kpi::engine::{FunnelRow, WON};
use crate::kpi::rollup::{STAGE_BITS, STAGES_OVERFLOW, STAGES_WON};
use crate::kpi::value::KpiValue;

/// deals_created … pipeline_coverage, in catalog order.
pub(crate) const PIPELINE: &[KpiDef] = &[
    kpi(
        "deals_created",
        "Deals created",
        Performance,
        Count,
        HigherIsBetter,
        "count(deals : created_at in P) (sales opportunities)",
        |c, k| k.whole(c.source.deals_created(c)),
    ),
    kpi(
        "pipeline_value",
        "Pipeline value",
        Performance,
        Money,
        HigherIsBetter,
        "sum(deal.amount : deals open at end of P)",
        |c, k| k.whole(c.pipeline_value()),
    ),
    kpi(
        "weighted_pipeline_value",
        "Weighted pipeline value",
        Performance,
        Money,
        HigherIsBetter,
        "sum(deal.amount x win probability of its stage at end : deals open at end of P); unknown stage counts 0",
        |c, k| k.real(c.weighted_pipeline_value(), None),
    ),
    kpi(
        "pipeline_coverage",
        "Pipeline coverage",
        Performance,
        Ratio,
        HigherIsBetter,
        "pipeline_value / (revenue_target - revenue); undefined when there is no revenue target or the remainder is <= 0",
        pipeline_coverage,
    ),
];

/// pipeline_coverage = pipeline_value ÷ (revenue_target − revenue);
/// undefined when there is no target or the remainder ≤ 0 (then with the
/// numerator and denominator, so a client sees by how much it is met).
fn pipeline_coverage(c: &Calc<'_, '_>, k: &KpiDef) -> KpiValue {
    let (target, any, _) = c.target(TargetMetric::Revenue);
    let pipeline = c.pipeline_value();
    let remainder = target - c.revenue() as f64;
    if !any {
        k.undefined("the scope has no revenue target overlapping the period")
    } else if remainder <= 0.0 {
        let mut v = k.undefined("the revenue target is already met (remainder ≤ 0)");
        v.numerator = Some(pipeline as f64);
        v.denominator = Some(remainder);
        v
    } else {
        k.ratio(pipeline as f64, remainder, "")
    }
}

/// How the pipeline figures are read (production: [`Rolled`]).
pub(crate) trait PipelineSource {
    /// deals_created = count(deals : created_at ∈ P), owner at created_at.
    fn deals_created(&self, c: &Calc<'_, '_>) -> i128;
    /// sum(amount : deals open at end), owner at end.
    fn pipeline_value(&self, c: &Calc<'_, '_>) -> i128;
    /// sum(amount : deals open at end whose stage at end is `stage`).
    fn open_amount_in_stage(&self, c: &Calc<'_, '_>, stage: &str) -> i128;
    /// Calls `count(is_won, highest)` once per deal of the funnel cohort
    /// (created in P, owner at created_at): whether it is WON, and its
    /// highest pipeline index (`last` when WON, see [`Calc::highest_stage`]).
    fn count_funnel(
        &self,
        c: &Calc<'_, '_>,
        position: &HashMap<&str, usize>,
        last: usize,
        count: &mut dyn FnMut(bool, usize),
    );
}

impl PipelineSource for Rolled {
    fn deals_created(&self, c: &Calc<'_, '_>) -> i128 {
        c.total(&c.index.deals.by_created, &c.index.deals.rollups.created)
            .0
    }

    fn pipeline_value(&self, c: &Calc<'_, '_>) -> i128 {
        c.stock_at(&c.index.deals.rollups.open_deals, c.p.end)[1]
    }

    fn open_amount_in_stage(&self, c: &Calc<'_, '_>, stage: &str) -> i128 {
        c.index
            .deals
            .rollups
            .open_by_stage
            .get(stage)
            .map_or(0, |stocks| c.stock_at(stocks, c.p.end)[0])
    }

    fn count_funnel(
        &self,
        c: &Calc<'_, '_>,
        position: &HashMap<&str, usize>,
        last: usize,
        count: &mut dyn FnMut(bool, usize),
    ) {
        let rollups = &c.index.deals.rollups;
        let mut label_position = [None; STAGE_BITS];
        for (name, &bit) in &rollups.stage_labels {
            if let Some(slot) = label_position.get_mut(bit as usize) {
                *slot = position.get(name).copied();
            }
        }
        let by_created = &c.index.deals.by_created;
        for (rep, r) in c.ranges(by_created) {
            let deals = by_created.list(rep);
            let first = r.start;
            let masks = rollups.created_stages.list(rep).get(r).unwrap_or_default();
            // The masks alone, without reading the deals, except when
            // a deal has stages beyond the bits.
            for (i, &mask) in masks.iter().enumerate() {
                let is_won = mask & STAGES_WON != 0;
                let highest = if is_won {
                    last
                } else if mask & STAGES_OVERFLOW != 0 {
                    match deals.record(first + i) {
                        Some(d) => c.highest_stage(d, position),
                        None => 0,
                    }
                } else {
                    let mut highest = 0;
                    let mut bits = mask;
                    while bits != 0 {
                        let bit = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        if let Some(&Some(p)) = label_position.get(bit) {
                            highest = highest.max(p);
                        }
                    }
                    highest
                };
                count(is_won, highest);
            }
        }
    }
}

impl Calc<'_, '_> {
    /// sum(amount : open at end)
    fn pipeline_value(&self) -> i128 {
        *self
            .memo
            .pipeline_value
            .get_or_init(|| self.source.pipeline_value(self))
    }

    /// weighted_pipeline_value = Σ amount × probability(stage at end) over
    /// the deals open at end: per stage of the pipeline (the first stage of
    /// a name wins, as a search would), probability × the stage's open
    /// amount, summed in pipeline order. Stages outside the pipeline have
    /// probability 0.
    fn weighted_pipeline_value(&self) -> f64 {
        let mut seen: HashSet<&str> = HashSet::default();
        let mut total = 0.0;
        for stage in &self.engine.settings().pipeline_stages {
            let name = stage.name.as_str();
            if !seen.insert(name) {
                continue;
            }
            let amount = self.source.open_amount_in_stage(self, name);
            total += amount as f64 * stage.win_probability;
        }
        total
    }

    /// The highest pipeline index among the stages a deal was ever in (its
    /// stage changes and its own stage); 0 when none is in the pipeline.
    pub(crate) fn highest_stage(
        &self,
        d: &crate::domain::Deal,
        position: &HashMap<&str, usize>,
    ) -> usize {
        let history = self
            .index
            .deals
            .stage_changes
            .of(d.id.as_str())
            .iter()
            .map(|s| s.stage.as_str());
        history
            .chain(d.stage.as_deref())
            .filter_map(|s| position.get(s).copied())
            .max()
            .unwrap_or(0)
    }

    /// The funnel of deals created in P (see `funnel` in docs/kpis.md).
    pub(crate) fn funnel(&self) -> Vec<FunnelRow> {
        let stages = &self.engine.settings().pipeline_stages;
        let n = stages.len();
        let position: HashMap<&str, usize> = stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        // Deals of the cohort per highest stage index reached (WON: the
        // last stage), and the WON ones.
        let mut at_highest = vec![0i64; n];
        let mut won = 0i64;
        let mut count = |is_won: bool, highest: usize| {
            if let Some(slot) = at_highest.get_mut(highest) {
                *slot += 1;
            }
            won += i64::from(is_won);
        };
        let last = n.saturating_sub(1);
        self.source.count_funnel(self, &position, last, &mut count);
        // reached[k] for k in 0..=n: deals whose highest index is ≥ k;
        // reached[n] = WON deals of the cohort.
        let mut reached = vec![0i64; n + 1];
        let mut running = 0;
        for k in (0..n).rev() {
            running += at_highest[k];
            reached[k] = running;
        }
        reached[n] = won;
        let mut rows: Vec<FunnelRow> = Vec::with_capacity(n + 1);
        for k in 0..=n {
            let stage = stages.get(k).map_or(WON, |s| s.name.as_str()).to_string();
            // leakage(k) = 1 − reached(k+1) ÷ reached(k)
            let leakage = match (reached.get(k), reached.get(k + 1)) {
                (Some(&here), Some(&next)) if k < n && here > 0 => {
                    Some(1.0 - next as f64 / here as f64)
                }
                _ => None,
            };
            rows.push(FunnelRow {
                index: k,
                stage,
                reached: reached.get(k).copied().unwrap_or(0),
                leakage,
            });
        }
        rows
    }
}
