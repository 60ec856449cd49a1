//! A deterministic generator of realistic sales data for the benchmark.
//!
//! The same `(records, seed)` always yields the same records in the same
//! order: every random choice comes from one [`SplitMix64`] stream seeded by
//! `seed`, and nothing depends on the clock, the machine or hash-map order.
//!
//! Shape (per million records, scaled linearly): 400k activities, 150k
//! orders, 100k leads, 60k deals with 150k stage changes, 30k customers
//! (about a quarter of them churn), 40k subscription changes, 30k inquiries and
//! 30k CSAT answers. On top of that, a fixed organisation: 20 teams in three
//! levels (2 regions, 6 areas, 12 squads), up to 200 reps (about 30 % change
//! team once), quarterly revenue quotas per rep, quarterly targets for
//! regions and areas, monthly company targets and monthly spend. Every instant
//! lies in the three years 2023-01-01 to 2025-12-31 (UTC); volumes grow over
//! time, and some reps sell much more than others.

use std::collections::BTreeMap;

use prost_types::Timestamp;

use salesmetrics::proto::v1::{self, record::Record as Kind};

/// First instant of the generated data: 2023-01-01T00:00:00Z.
pub const DATA_START_SECONDS: i64 = 1_672_531_200;
/// End of the generated data (exclusive): 2026-01-01T00:00:00Z.
pub const DATA_END_SECONDS: i64 = 1_767_225_600;
/// The reporting currency of every amount.
pub const CURRENCY: &str = "USD";
/// The default pipeline's stages, in order (the default tenant settings).
pub const PIPELINE: [&str; 4] = ["prospecting", "qualification", "proposal", "negotiation"];

/// Number of teams: 2 regions, 6 areas, 12 squads.
pub const TEAMS: usize = 20;
const REGIONS: usize = 2;
const AREAS: usize = 6;

/// A small, fast, well-mixed 64-bit PRNG (splitmix64, Steele et al. 2014).
/// Good enough for test data, and it needs no crate.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    /// The state: advanced by a fixed odd constant on every draw.
    state: u64,
}

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform integer in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform integer in [low, high].
    pub fn range(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An exponentially distributed value with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    /// An index drawn with the given cumulative weights (last = total).
    fn weighted(&mut self, cumulative: &[f64]) -> usize {
        let total = cumulative.last().copied().unwrap_or(0.0);
        let x = self.unit() * total;
        cumulative
            .partition_point(|c| *c <= x)
            .min(cumulative.len().saturating_sub(1))
    }
}

/// How many records of each scaled type a run generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PlannedCounts {
    /// Activities (40 % of the scale).
    pub activities: usize,
    /// Orders (15 %).
    pub orders: usize,
    /// Leads (10 %).
    pub leads: usize,
    /// Deals (6 %).
    pub deals: usize,
    /// Deal stage changes (15 %).
    pub deal_stage_changes: usize,
    /// Customers (3 %).
    pub customers: usize,
    /// Subscription changes (4 %).
    pub subscription_changes: usize,
    /// Inquiries (3 %).
    pub inquiries: usize,
    /// CSAT answers (3 %).
    pub csat_responses: usize,
    /// Reps: one per 500 records, at least 20, at most 200.
    pub reps: usize,
}

impl PlannedCounts {
    /// The counts for a scale of `records` (the organisation, targets and
    /// spend come on top, about 4 % at 100k and 0.4 % at 1M).
    pub fn for_scale(records: u64) -> Self {
        let share = |per_million: u64| ((records * per_million) / 1_000_000).max(1) as usize;
        PlannedCounts {
            activities: share(400_000),
            orders: share(150_000),
            leads: share(100_000),
            deals: share(60_000),
            deal_stage_changes: share(150_000),
            customers: share(30_000),
            subscription_changes: share(40_000),
            inquiries: share(30_000),
            csat_responses: share(30_000),
            reps: (records / 500).clamp(20, 200) as usize,
        }
    }
}

/// What the queries of the benchmark ask about, chosen from the data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueryTargets {
    /// A mid-level team (an area: it has squads below and a region above).
    pub team_id: String,
    /// A rep with plenty of data.
    pub rep_id: String,
}

/// The generated records, in ingest order (organisation first).
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Every record.
    pub records: Vec<v1::Record>,
    /// The scaled counts that were planned.
    pub planned: PlannedCounts,
    /// Scope ids for the queries.
    pub targets: QueryTargets,
}

impl Generated {
    /// Number of records of each type, keyed by the record's proto field name.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for record in &self.records {
            *counts.entry(kind_name(record)).or_insert(0) += 1;
        }
        counts
    }
}

/// The proto field name of a record's type, e.g. `deal_stage_change`.
pub fn kind_name(record: &v1::Record) -> &'static str {
    match &record.record {
        Some(Kind::Team(_)) => "team",
        Some(Kind::TeamMembership(_)) => "team_membership",
        Some(Kind::Rep(_)) => "rep",
        Some(Kind::Customer(_)) => "customer",
        Some(Kind::Lead(_)) => "lead",
        Some(Kind::Deal(_)) => "deal",
        Some(Kind::DealStageChange(_)) => "deal_stage_change",
        Some(Kind::Order(_)) => "order",
        Some(Kind::SubscriptionChange(_)) => "subscription_change",
        Some(Kind::Activity(_)) => "activity",
        Some(Kind::Inquiry(_)) => "inquiry",
        Some(Kind::CsatResponse(_)) => "csat_response",
        Some(Kind::Target(_)) => "target",
        Some(Kind::Spend(_)) => "spend",
        None => "empty",
    }
}

/// Generates about `records` records (see the module docs) from `seed`.
pub fn generate(records: u64, seed: u64) -> Generated {
    let planned = PlannedCounts::for_scale(records);
    let mut g = Generator {
        rng: SplitMix64::new(seed),
        out: Vec::with_capacity(records as usize + records as usize / 20 + 4096),
        rep_weights: Vec::new(),
        rep_leaf: Vec::new(),
    };
    g.organisation(planned.reps);
    let customers = g.customers(planned.customers);
    g.subscription_changes(planned.subscription_changes, &customers);
    g.leads(planned.leads, customers.len());
    let deals = g.deals(planned.deals, planned.leads, customers.len());
    g.deal_stage_changes(planned.deal_stage_changes, &deals);
    let revenue = g.orders(planned.orders, customers.len(), &deals);
    g.activities(
        planned.activities,
        planned.leads,
        deals.len(),
        customers.len(),
    );
    g.inquiries(planned.inquiries, customers.len());
    g.csat_responses(planned.csat_responses, customers.len());
    g.targets(&revenue);
    g.spend();
    Generated {
        records: g.out,
        planned,
        targets: QueryTargets {
            team_id: team_id(REGIONS),
            rep_id: rep_id(0),
        },
    }
}

/// A generated customer, remembered for its subscriptions.
struct CustomerFacts {
    acquired_at: i64,
    churned_at: Option<i64>,
}

/// A generated deal, remembered for its stage history and orders.
struct DealFacts {
    created_at: i64,
    cycle_seconds: i64,
    won: bool,
}

/// Revenue per (rep, quarter index since 2023-Q1), used to set realistic quotas.
type RevenueByRepQuarter = BTreeMap<(usize, usize), i64>;

struct Generator {
    rng: SplitMix64,
    out: Vec<v1::Record>,
    /// Cumulative selling weights of the reps (some sell far more).
    rep_weights: Vec<f64>,
    /// Each rep's first squad, by team index.
    rep_leaf: Vec<usize>,
}

fn team_id(index: usize) -> String {
    format!("team-{index:02}")
}

fn rep_id(index: usize) -> String {
    format!("rep-{index:04}")
}

fn customer_id(index: usize) -> String {
    format!("cus-{index:07}")
}

fn deal_id(index: usize) -> String {
    format!("deal-{index:07}")
}

fn lead_id(index: usize) -> String {
    format!("lead-{index:07}")
}

fn timestamp(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn money(minor_units: i64) -> Option<v1::Money> {
    Some(v1::Money {
        currency_code: CURRENCY.to_string(),
        minor_units,
    })
}

fn date(year: i32, month: i32, day: i32) -> Option<v1::Date> {
    Some(v1::Date { year, month, day })
}

/// The first day of the month `months` after January 2023.
fn month_start(months: usize) -> Option<v1::Date> {
    date(2023 + (months / 12) as i32, (months % 12) as i32 + 1, 1)
}

impl Generator {
    fn push(&mut self, kind: Kind) {
        self.out.push(v1::Record { record: Some(kind) });
    }

    /// An instant in the data range; density grows over time (a growing business).
    fn instant(&mut self) -> i64 {
        let span = (DATA_END_SECONDS - DATA_START_SECONDS) as f64;
        let u = self.rng.unit();
        let x = if self.rng.chance(0.5) { u } else { u.sqrt() };
        DATA_START_SECONDS + ((x * span) as i64).min(span as i64 - 1)
    }

    /// `start + delay`, or `None` when it falls after the data range.
    fn later(start: i64, delay_seconds: f64) -> Option<i64> {
        let t = start + delay_seconds.max(1.0) as i64;
        (t < DATA_END_SECONDS).then_some(t)
    }

    fn rep(&mut self) -> usize {
        self.rng.weighted(&self.rep_weights)
    }

    fn maybe_rep(&mut self, p: f64) -> String {
        if self.rng.chance(p) {
            rep_id(self.rep())
        } else {
            String::new()
        }
    }

    fn maybe(&mut self, p: f64, count: usize, id: fn(usize) -> String) -> String {
        if count > 0 && self.rng.chance(p) {
            id(self.rng.below(count as u64) as usize)
        } else {
            String::new()
        }
    }

    /// Teams, reps and their memberships.
    fn organisation(&mut self, reps: usize) {
        for index in 0..TEAMS {
            let (name, parent) = if index < REGIONS {
                (format!("Region {}", index + 1), String::new())
            } else if index < REGIONS + AREAS {
                let area = index - REGIONS;
                (format!("Area {}", area + 1), team_id(area % REGIONS))
            } else {
                let squad = index - REGIONS - AREAS;
                (
                    format!("Squad {}", squad + 1),
                    team_id(REGIONS + squad % AREAS),
                )
            };
            self.push(Kind::Team(v1::Team {
                id: team_id(index),
                name,
                parent_team_id: parent,
                ..Default::default()
            }));
        }
        let squads = TEAMS - REGIONS - AREAS;
        let mut total = 0.0;
        for index in 0..reps {
            self.push(Kind::Rep(v1::Rep {
                id: rep_id(index),
                name: format!("Rep {}", index + 1),
                email: format!("rep{}@example.com", index + 1),
                ..Default::default()
            }));
            // Selling weight: a long tail, rep 0 the strongest.
            total += 1.0 / (1.0 + index as f64 * 0.05) * (0.5 + self.rng.unit());
            self.rep_weights.push(total);
            self.rep_leaf.push(index % squads + REGIONS + AREAS);
        }
        let mut membership = 0;
        let before_data = DATA_START_SECONDS - 31 * 86_400;
        for index in 0..reps {
            let first_team = self.rep_leaf[index];
            self.push(Kind::TeamMembership(v1::TeamMembership {
                id: format!("mem-{membership:05}"),
                rep_id: rep_id(index),
                team_id: team_id(first_team),
                effective_at: timestamp(before_data + index as i64 * 60),
                ..Default::default()
            }));
            membership += 1;
            if self.rng.chance(0.3) {
                let moved_to = REGIONS + AREAS + self.rng.below(squads as u64) as usize;
                let at = self.instant();
                self.push(Kind::TeamMembership(v1::TeamMembership {
                    id: format!("mem-{membership:05}"),
                    rep_id: rep_id(index),
                    team_id: team_id(moved_to),
                    effective_at: timestamp(at),
                    ..Default::default()
                }));
                membership += 1;
            }
        }
    }

    fn customers(&mut self, count: usize) -> Vec<CustomerFacts> {
        const SOURCES: [&str; 5] = ["referral", "web", "outbound", "partner", "event"];
        let mut facts = Vec::with_capacity(count);
        for index in 0..count {
            let acquired_at = self.instant();
            let churned_at = if self.rng.chance(0.35) {
                Self::later(acquired_at, self.rng.exponential(300.0 * 86_400.0))
            } else {
                None
            };
            let owner = self.maybe_rep(0.95);
            let source = SOURCES[self.rng.below(SOURCES.len() as u64) as usize];
            self.push(Kind::Customer(v1::Customer {
                id: customer_id(index),
                acquired_at: timestamp(acquired_at),
                churned_at: churned_at.and_then(timestamp),
                owner_rep_id: owner,
                source: source.to_string(),
                name: format!("Customer {}", index + 1),
                ..Default::default()
            }));
            facts.push(CustomerFacts {
                acquired_at,
                churned_at,
            });
        }
        facts
    }

    /// Round 0 starts a subscription per customer at acquisition; round 1
    /// cancels it at churn (or changes its price); later rounds change prices.
    fn subscription_changes(&mut self, count: usize, customers: &[CustomerFacts]) {
        if customers.is_empty() {
            return;
        }
        let mut mrr: Vec<i64> = vec![0; customers.len()];
        for index in 0..count {
            let c = index % customers.len();
            let round = index / customers.len();
            let facts = &customers[c];
            let (effective_at, new_mrr) = if round == 0 {
                (facts.acquired_at, self.rng.range(20, 500) * 1_000)
            } else if let (1, Some(churned_at)) = (round, facts.churned_at) {
                (churned_at, 0)
            } else {
                let until = facts.churned_at.unwrap_or(DATA_END_SECONDS);
                let at = self
                    .rng
                    .range(facts.acquired_at, (until - 1).max(facts.acquired_at));
                let factor = 0.6 + self.rng.unit();
                (
                    at,
                    ((mrr[c].max(10_000) as f64) * factor) as i64 / 100 * 100,
                )
            };
            mrr[c] = new_mrr;
            self.push(Kind::SubscriptionChange(v1::SubscriptionChange {
                id: format!("sub-{index:07}"),
                subscription_id: format!("subscription-{c:07}"),
                customer_id: customer_id(c),
                mrr: money(new_mrr),
                effective_at: timestamp(effective_at),
                ..Default::default()
            }));
        }
    }

    fn leads(&mut self, count: usize, customers: usize) {
        const SOURCES: [(&str, f64); 6] = [
            ("web", 0.35),
            ("referral", 0.15),
            ("outbound", 0.2),
            ("event", 0.1),
            ("partner", 0.1),
            ("paid_search", 0.1),
        ];
        let cumulative = cumulative(&SOURCES.map(|(_, w)| w));
        for index in 0..count {
            let created_at = self.instant();
            let source = SOURCES[self.rng.weighted(&cumulative)].0;
            let first_response_at = if self.rng.chance(0.9) {
                Self::later(created_at, self.rng.exponential(4.0 * 3_600.0))
            } else {
                None
            };
            let converted_at = if self.rng.chance(0.2) {
                Self::later(created_at, self.rng.exponential(20.0 * 86_400.0))
            } else {
                None
            };
            let customer = if converted_at.is_some() {
                self.maybe(0.8, customers, customer_id)
            } else {
                String::new()
            };
            let owner = self.maybe_rep(0.9);
            self.push(Kind::Lead(v1::Lead {
                id: lead_id(index),
                source: source.to_string(),
                created_at: timestamp(created_at),
                owner_rep_id: owner,
                first_response_at: first_response_at.and_then(timestamp),
                converted_at: converted_at.and_then(timestamp),
                customer_id: customer,
                ..Default::default()
            }));
        }
    }

    fn deals(&mut self, count: usize, leads: usize, customers: usize) -> Vec<DealFacts> {
        let mut facts = Vec::with_capacity(count);
        for index in 0..count {
            let created_at = self.instant();
            let cycle_seconds = (self.rng.exponential(45.0 * 86_400.0) as i64).max(3_600);
            let closes_in_range = created_at + cycle_seconds < DATA_END_SECONDS;
            let roll = self.rng.unit();
            let (status, closed_at) = if closes_in_range && roll < 0.35 {
                (v1::DealStatus::Won, timestamp(created_at + cycle_seconds))
            } else if closes_in_range && roll < 0.85 {
                (v1::DealStatus::Lost, timestamp(created_at + cycle_seconds))
            } else {
                (v1::DealStatus::Open, None)
            };
            let amount = (self.rng.exponential(8_000.0) as i64 + 500) * 100;
            let owner = self.maybe_rep(0.97);
            let customer = self.maybe(0.7, customers, customer_id);
            let lead = self.maybe(0.5, leads, lead_id);
            // `stage` is filled in by deal_stage_changes: the last stage
            // that the deal's history enters.
            self.push(Kind::Deal(v1::Deal {
                id: deal_id(index),
                amount: money(amount),
                created_at: timestamp(created_at),
                status: status as i32,
                closed_at,
                stage: String::new(),
                owner_rep_id: owner,
                customer_id: customer,
                lead_id: lead,
                ..Default::default()
            }));
            facts.push(DealFacts {
                created_at,
                cycle_seconds,
                won: status == v1::DealStatus::Won,
            });
        }
        facts
    }

    /// Round r of the stage changes moves deal d into stage r (capped at the
    /// last stage), a quarter of its cycle apart.
    fn deal_stage_changes(&mut self, count: usize, deals: &[DealFacts]) {
        if deals.is_empty() {
            return;
        }
        // Set each deal's `stage` field to the last stage its history enters.
        let first_deal = self
            .out
            .iter()
            .position(|r| matches!(r.record, Some(Kind::Deal(_))))
            .unwrap_or(0);
        for (d, record) in self.out[first_deal..first_deal + deals.len()]
            .iter_mut()
            .enumerate()
        {
            let rounds = count / deals.len() + usize::from(d < count % deals.len());
            if let Some(Kind::Deal(deal)) = &mut record.record {
                deal.stage = if rounds == 0 {
                    PIPELINE[0].to_string()
                } else {
                    PIPELINE[(rounds - 1).min(PIPELINE.len() - 1)].to_string()
                };
            }
        }
        for index in 0..count {
            let d = index % deals.len();
            let round = index / deals.len();
            let facts = &deals[d];
            let stage = PIPELINE[round.min(PIPELINE.len() - 1)];
            let entered_at = (facts.created_at
                + facts.cycle_seconds * round as i64 / PIPELINE.len() as i64)
                .min(DATA_END_SECONDS - 1);
            self.push(Kind::DealStageChange(v1::DealStageChange {
                id: format!("dsc-{index:07}"),
                deal_id: deal_id(d),
                stage: stage.to_string(),
                entered_at: timestamp(entered_at),
                ..Default::default()
            }));
        }
    }

    fn orders(
        &mut self,
        count: usize,
        customers: usize,
        deals: &[DealFacts],
    ) -> RevenueByRepQuarter {
        let won: Vec<usize> = (0..deals.len()).filter(|d| deals[*d].won).collect();
        let mut revenue = RevenueByRepQuarter::new();
        for index in 0..count {
            let ordered_at = self.instant();
            let kind = match self.rng.below(10) {
                0..=4 => v1::OrderKind::New,
                5 | 6 => v1::OrderKind::Upsell,
                7 => v1::OrderKind::CrossSell,
                _ => v1::OrderKind::Renewal,
            };
            let amount = (self.rng.exponential(1_200.0) as i64 + 20) * 100;
            let customer = self.maybe(0.95, customers, customer_id);
            let rep = self.rng.chance(0.9).then(|| self.rep());
            let deal = if !won.is_empty() && self.rng.chance(0.3) {
                deal_id(won[self.rng.below(won.len() as u64) as usize])
            } else {
                String::new()
            };
            if let Some(rep) = rep {
                *revenue.entry((rep, quarter_of(ordered_at))).or_insert(0) += amount;
            }
            self.push(Kind::Order(v1::Order {
                id: format!("ord-{index:07}"),
                amount: money(amount),
                ordered_at: timestamp(ordered_at),
                kind: kind as i32,
                customer_id: customer,
                rep_id: rep.map(rep_id).unwrap_or_default(),
                deal_id: deal,
                ..Default::default()
            }));
        }
        revenue
    }

    fn activities(&mut self, count: usize, leads: usize, deals: usize, customers: usize) {
        const TYPES: [(v1::ActivityType, f64); 8] = [
            (v1::ActivityType::Call, 0.3),
            (v1::ActivityType::Email, 0.3),
            (v1::ActivityType::Meeting, 0.1),
            (v1::ActivityType::FollowUp, 0.12),
            (v1::ActivityType::Proposal, 0.05),
            (v1::ActivityType::Demo, 0.05),
            (v1::ActivityType::NetworkingEvent, 0.03),
            (v1::ActivityType::Social, 0.05),
        ];
        let cumulative = cumulative(&TYPES.map(|(_, w)| w));
        for index in 0..count {
            let occurred_at = self.instant();
            let activity_type = TYPES[self.rng.weighted(&cumulative)].0;
            let duration_seconds = self
                .rng
                .chance(0.8)
                .then(|| self.rng.exponential(900.0) as i64);
            let rep = self.rep();
            let lead = self.maybe(0.3, leads, lead_id);
            let deal = self.maybe(0.3, deals, deal_id);
            let customer = self.maybe(0.3, customers, customer_id);
            self.push(Kind::Activity(v1::Activity {
                id: format!("act-{index:08}"),
                rep_id: rep_id(rep),
                r#type: activity_type as i32,
                occurred_at: timestamp(occurred_at),
                duration_seconds,
                lead_id: lead,
                deal_id: deal,
                customer_id: customer,
                ..Default::default()
            }));
        }
    }

    fn inquiries(&mut self, count: usize, customers: usize) {
        const CHANNELS: [&str; 4] = ["email", "phone", "chat", "web_form"];
        for index in 0..count {
            let received_at = self.instant();
            let channel = CHANNELS[self.rng.below(CHANNELS.len() as u64) as usize];
            let first_response_at = if self.rng.chance(0.85) {
                Self::later(received_at, self.rng.exponential(6.0 * 3_600.0))
            } else {
                None
            };
            let customer = self.maybe(0.8, customers, customer_id);
            let rep = self.maybe_rep(0.9);
            self.push(Kind::Inquiry(v1::Inquiry {
                id: format!("inq-{index:07}"),
                channel: channel.to_string(),
                received_at: timestamp(received_at),
                first_response_at: first_response_at.and_then(timestamp),
                customer_id: customer,
                rep_id: rep,
                ..Default::default()
            }));
        }
    }

    fn csat_responses(&mut self, count: usize, customers: usize) {
        let cumulative = cumulative(&[0.05, 0.07, 0.18, 0.35, 0.35]);
        for index in 0..count {
            let responded_at = self.instant();
            let score = self.rng.weighted(&cumulative) as i32 + 1;
            let customer = self.maybe(0.9, customers, customer_id);
            let rep = self.maybe_rep(0.85);
            self.push(Kind::CsatResponse(v1::CsatResponse {
                id: format!("csat-{index:07}"),
                score,
                responded_at: timestamp(responded_at),
                customer_id: customer,
                rep_id: rep,
                ..Default::default()
            }));
        }
    }

    /// Quarterly quotas per rep (near what each actually sold), quarterly
    /// revenue and bookings targets for regions and areas, monthly company
    /// targets of every metric.
    fn targets(&mut self, revenue: &RevenueByRepQuarter) {
        let reps = self.rep_weights.len();
        let mut index = 0;
        let mut target = |g: &mut Generator,
                          metric: v1::TargetMetric,
                          value: i64,
                          months: (usize, usize),
                          scope: (bool, String, String)| {
            g.push(Kind::Target(v1::Target {
                id: format!("tgt-{index:05}"),
                metric: metric as i32,
                value: value.max(0),
                start_date: month_start(months.0),
                end_date: month_start(months.1),
                company: scope.0,
                team_id: scope.1,
                rep_id: scope.2,
                ..Default::default()
            }));
            index += 1;
        };
        let mut company_quarter = [0i64; 12];
        for ((_, quarter), amount) in revenue {
            company_quarter[*quarter] += amount;
        }
        for rep in 0..reps {
            for quarter in 0..12 {
                let sold = revenue.get(&(rep, quarter)).copied().unwrap_or(0);
                let factor = 0.8 + 0.4 * self.rng.unit();
                let quota = ((sold.max(100_000) as f64) * factor) as i64 / 100 * 100;
                target(
                    self,
                    v1::TargetMetric::Revenue,
                    quota,
                    (quarter * 3, quarter * 3 + 3),
                    (false, String::new(), rep_id(rep)),
                );
            }
        }
        for team in 0..REGIONS + AREAS {
            let share = if team < REGIONS {
                0.5
            } else {
                1.0 / AREAS as f64
            };
            for (quarter, company) in company_quarter.iter().enumerate() {
                for metric in [v1::TargetMetric::Revenue, v1::TargetMetric::Bookings] {
                    let factor = 0.9 + 0.3 * self.rng.unit();
                    target(
                        self,
                        metric,
                        ((*company as f64) * share * factor) as i64 / 100 * 100,
                        (quarter * 3, quarter * 3 + 3),
                        (false, team_id(team), String::new()),
                    );
                }
            }
        }
        for month in 0..36 {
            let quarter_revenue = company_quarter[month / 3];
            let values = [
                (v1::TargetMetric::Revenue, quarter_revenue / 3),
                (v1::TargetMetric::Bookings, quarter_revenue / 2),
                (v1::TargetMetric::NewCustomers, 10 + self.rng.range(0, 40)),
                (v1::TargetMetric::DealsWon, 20 + self.rng.range(0, 80)),
            ];
            for (metric, value) in values {
                target(
                    self,
                    metric,
                    value,
                    (month, month + 1),
                    (true, String::new(), String::new()),
                );
            }
        }
    }

    /// Monthly sales spend per squad and monthly company marketing spend.
    fn spend(&mut self) {
        let mut index = 0;
        for month in 0..36 {
            for team in std::iter::once(None).chain((REGIONS + AREAS..TEAMS).map(Some)) {
                let (category, amount) = match team {
                    None => (v1::SpendCategory::Marketing, self.rng.range(20_000, 80_000)),
                    Some(_) => (v1::SpendCategory::Sales, self.rng.range(5_000, 25_000)),
                };
                self.push(Kind::Spend(v1::Spend {
                    id: format!("spend-{index:05}"),
                    category: category as i32,
                    amount: money(amount * 100),
                    start_date: month_start(month),
                    end_date: month_start(month + 1),
                    team_id: team.map(team_id).unwrap_or_default(),
                    ..Default::default()
                }));
                index += 1;
            }
        }
    }
}

/// Quarter index since 2023-Q1 (0..12) of an instant in the data range.
fn quarter_of(seconds: i64) -> usize {
    // Good enough for quotas: 91.3-day quarters drift by at most a day or so.
    let days = (seconds - DATA_START_SECONDS) / 86_400;
    ((days as f64 / 91.31) as usize).min(11)
}

fn cumulative(weights: &[f64]) -> Vec<f64> {
    let mut total = 0.0;
    weights
        .iter()
        .map(|w| {
            total += w;
            total
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_records_other_seed_other_records() {
        let a = generate(3_000, 7);
        let b = generate(3_000, 7);
        let c = generate(3_000, 8);
        assert_eq!(a, b);
        assert_ne!(a.records, c.records);
    }

    #[test]
    fn counts_follow_the_plan() {
        let generated = generate(10_000, 1);
        let counts = generated.counts();
        let planned = generated.planned;
        assert_eq!(counts["activity"], planned.activities);
        assert_eq!(counts["order"], planned.orders);
        assert_eq!(counts["deal_stage_change"], planned.deal_stage_changes);
        assert_eq!(counts["subscription_change"], planned.subscription_changes);
        assert_eq!(counts["team"], TEAMS);
        assert_eq!(counts["rep"], planned.reps);
    }

    #[test]
    fn instants_lie_in_the_data_range() {
        let generated = generate(5_000, 3);
        for record in &generated.records {
            if let Some(Kind::Order(order)) = &record.record {
                let t = order.ordered_at.as_ref().map(|t| t.seconds).unwrap_or(0);
                assert!((DATA_START_SECONDS..DATA_END_SECONDS).contains(&t));
            }
        }
    }
}
