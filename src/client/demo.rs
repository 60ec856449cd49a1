//! `salesmetrics demo`: loads a realistic, deterministic sample dataset ending
//! today, then prints the company KPIs of the last full month.
//!
//! The data is generated, not shipped: a fixed-seed generator places a year of
//! records relative to the current month, so the numbers are the same for
//! every run in the same month. Ids are fixed (`demo-…`), so running it twice
//! (with `--force`) replaces the records instead of adding more.
//!
//! It refuses a tenant that already has records: sample data mixed into real
//! data would make every KPI wrong and is tedious to take out again.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use clap::Args;
use prost_types::Timestamp;

use super::format::currency_exponent;
use super::period::PeriodArg;
use super::{Clients, ConnectOptions, status_error, tenant_currency};
use crate::api::convert::time::{date_to_proto, timestamp_to_proto};
use crate::proto::v1::{
    self, ActivityType, Comparison, DealStatus, Granularity, IngestBatchRequest, OrderKind,
    ScopeKind, SpendCategory, TargetMetric, record::Record as R,
};

/// Options of `salesmetrics demo`.
#[derive(Debug, Args)]
#[command(
    after_long_help = "Loads 3 teams under one sales org, 10 reps, about 150 customers,
600 leads, 300 deals with stage history, orders, subscriptions, activities,
inquiries, CSAT answers, monthly targets and spend, covering the last 12 months
up to today, into the server's tenant (in its currency). Then prints the
company KPIs of the last full month compared with the month before.

Example:
  salesmetrics serve &
  salesmetrics demo
  salesmetrics breakdown --period 2025-03 --by rep"
)]
pub struct DemoArgs {
    #[command(flatten)]
    pub connect: ConnectOptions,
    /// Load the sample data even though the tenant already has records (they
    /// are mixed with the sample; the demo's own records are replaced).
    #[arg(long)]
    pub force: bool,
}

/// A small deterministic pseudo-random generator (xorshift64*), so the demo
/// data is the same on every machine without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[lo, hi]`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

fn ts(t: DateTime<Utc>) -> Option<Timestamp> {
    Some(timestamp_to_proto(t))
}

fn add_months(date: NaiveDate, months: i32) -> NaiveDate {
    let index = date.year() * 12 + date.month0() as i32 + months;
    NaiveDate::from_ymd_opt(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1)
        .expect("valid month")
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

/// The generated dataset.
pub struct DemoData {
    /// Every record, in an order that keeps references readable (teams first).
    pub records: Vec<v1::Record>,
    /// First day of the last full month.
    pub last_full_month: NaiveDate,
}

const REPS: [(&str, &str, &str); 10] = [
    ("demo-rep-01", "Alice Martin", "demo-team-emea"),
    ("demo-rep-02", "Bruno Keller", "demo-team-emea"),
    ("demo-rep-03", "Chiara Rossi", "demo-team-emea"),
    ("demo-rep-04", "Dmitri Ivanov", "demo-team-emea"),
    ("demo-rep-05", "Emma Johnson", "demo-team-americas"),
    ("demo-rep-06", "Felipe Souza", "demo-team-americas"),
    ("demo-rep-07", "Grace Lee", "demo-team-americas"),
    ("demo-rep-08", "Hannah Brown", "demo-team-americas"),
    ("demo-rep-09", "Ichiro Sato", "demo-team-apac"),
    ("demo-rep-10", "Jia Wen", "demo-team-apac"),
];

/// Generates the demo dataset for the month of `today`, amounts in `currency`.
pub fn generate(today: NaiveDate, currency: &str) -> DemoData {
    let mut rng = Rng(0x5A1E_5D3E_0000_2025);
    let scale = 10i64.pow(currency_exponent(currency));
    let money = |major: i64| {
        Some(v1::Money {
            currency_code: currency.to_string(),
            minor_units: major * scale,
        })
    };
    let this_month = today.with_day(1).expect("day 1");
    let start_date = add_months(this_month, -12);
    let start = midnight(start_date);
    let now = midnight(today);
    let span = (now - start).num_seconds();
    let mut records = Vec::new();
    let mut push = |r: R| records.push(v1::Record { record: Some(r) });

    // Teams: one sales org with three regions.
    push(R::Team(v1::Team {
        id: "demo-team-sales".into(),
        name: "Sales".into(),
        ..Default::default()
    }));
    for (id, name) in [
        ("demo-team-emea", "EMEA"),
        ("demo-team-americas", "Americas"),
        ("demo-team-apac", "APAC"),
    ] {
        push(R::Team(v1::Team {
            id: id.into(),
            name: name.into(),
            parent_team_id: "demo-team-sales".into(),
            ..Default::default()
        }));
    }
    let joined = start - Duration::days(60);
    for (id, name, team) in REPS {
        let email = format!(
            "{}@example.com",
            name.split(' ').next().unwrap_or(id).to_ascii_lowercase()
        );
        push(R::Rep(v1::Rep {
            id: id.into(),
            name: name.into(),
            email,
            ..Default::default()
        }));
        push(R::TeamMembership(v1::TeamMembership {
            id: format!("{id}-joins"),
            rep_id: id.into(),
            team_id: team.into(),
            effective_at: ts(joined),
            ..Default::default()
        }));
    }
    // Dmitri moves from EMEA to the Americas half a year ago.
    push(R::TeamMembership(v1::TeamMembership {
        id: "demo-rep-04-moves".into(),
        rep_id: "demo-rep-04".into(),
        team_id: "demo-team-americas".into(),
        effective_at: ts(midnight(add_months(this_month, -6)) + Duration::hours(9)),
        ..Default::default()
    }));
    let rep_ids: Vec<&str> = REPS.iter().map(|r| r.0).collect();
    let random_instant = |rng: &mut Rng| start + Duration::seconds(rng.range(0, span - 1));
    // Working hours make the data look real: 8:00 to 18:00 UTC.
    let when = |rng: &mut Rng| {
        let t = random_instant(rng);
        midnight(t.date_naive()) + Duration::minutes(rng.range(8 * 60, 18 * 60 - 1))
    };

    // Customers, with a subscription each.
    let sources = ["referral", "website", "outbound", "event", "partner"];
    let mut customers = Vec::new();
    for i in 1..=150 {
        let id = format!("demo-customer-{i:03}");
        let acquired = if i <= 40 {
            start - Duration::days(rng.range(30, 700))
        } else {
            when(&mut rng)
        };
        let churned = (rng.chance(12))
            .then(|| acquired + Duration::days(rng.range(60, 500)))
            .filter(|c| *c < now);
        let owner = *rng.pick(&rep_ids);
        push(R::Customer(v1::Customer {
            id: id.clone(),
            acquired_at: ts(acquired),
            churned_at: churned.and_then(ts),
            owner_rep_id: owner.into(),
            source: rng.pick(&sources).to_string(),
            name: format!("Customer {i:03}"),
            ..Default::default()
        }));
        let sub = format!("demo-sub-{i:03}");
        let mrr = rng.range(2, 40) * 50;
        push(R::SubscriptionChange(v1::SubscriptionChange {
            id: format!("{sub}-start"),
            subscription_id: sub.clone(),
            customer_id: id.clone(),
            mrr: money(mrr),
            effective_at: ts(acquired),
            ..Default::default()
        }));
        let change_at = acquired + Duration::days(rng.range(30, 300));
        if churned.is_none() && change_at < now && rng.chance(35) {
            let factor = if rng.chance(75) { 150 } else { 60 };
            push(R::SubscriptionChange(v1::SubscriptionChange {
                id: format!("{sub}-change"),
                subscription_id: sub.clone(),
                customer_id: id.clone(),
                mrr: money(mrr * factor / 100),
                effective_at: ts(change_at),
                ..Default::default()
            }));
        }
        if let Some(churned) = churned {
            push(R::SubscriptionChange(v1::SubscriptionChange {
                id: format!("{sub}-cancel"),
                subscription_id: sub,
                customer_id: id.clone(),
                mrr: money(0),
                effective_at: ts(churned),
                ..Default::default()
            }));
        }
        customers.push((id, owner, acquired));
    }

    // Leads: a third converts.
    for i in 1..=600 {
        let created = when(&mut rng);
        let responded = rng
            .chance(90)
            .then(|| created + Duration::minutes(rng.range(5, 48 * 60)))
            .filter(|t| *t < now);
        let converted = rng
            .chance(30)
            .then(|| created + Duration::days(rng.range(3, 60)))
            .filter(|t| *t < now);
        let customer = converted
            .map(|_| rng.pick(&customers).0.clone())
            .unwrap_or_default();
        push(R::Lead(v1::Lead {
            id: format!("demo-lead-{i:04}"),
            source: rng.pick(&sources).to_string(),
            created_at: ts(created),
            owner_rep_id: rng.pick(&rep_ids).to_string(),
            first_response_at: responded.and_then(ts),
            converted_at: converted.and_then(ts),
            customer_id: customer,
            ..Default::default()
        }));
    }

    // Deals with stage history; won deals become orders.
    let stages = ["prospecting", "qualification", "proposal", "negotiation"];
    let mut order_number = 0;
    for i in 1..=300 {
        let id = format!("demo-deal-{i:03}");
        let created = when(&mut rng);
        let amount = rng.range(20, 500) * 100;
        let owner = *rng.pick(&rep_ids);
        let (customer, _, _) = rng.pick(&customers).clone();
        let cycle = Duration::days(rng.range(10, 90));
        let closes = created + cycle;
        let roll = rng.range(0, 99);
        let status = if closes >= now || roll < 25 {
            DealStatus::Open
        } else if roll < 62 {
            DealStatus::Won
        } else {
            DealStatus::Lost
        };
        let furthest = match status {
            DealStatus::Won => 3,
            _ => rng.range(0, 3) as usize,
        };
        for (k, stage) in stages.iter().enumerate().take(furthest + 1) {
            let entered = created + cycle * k as i32 / 4;
            if entered >= now {
                break;
            }
            push(R::DealStageChange(v1::DealStageChange {
                id: format!("{id}-{k}"),
                deal_id: id.clone(),
                stage: stage.to_string(),
                entered_at: ts(entered),
                ..Default::default()
            }));
        }
        let closed = (status != DealStatus::Open).then_some(closes);
        push(R::Deal(v1::Deal {
            id: id.clone(),
            amount: money(amount),
            created_at: ts(created),
            status: status as i32,
            closed_at: closed.and_then(ts),
            stage: stages[furthest].to_string(),
            owner_rep_id: owner.into(),
            customer_id: customer.clone(),
            ..Default::default()
        }));
        if status == DealStatus::Won {
            order_number += 1;
            push(R::Order(v1::Order {
                id: format!("demo-order-{order_number:04}"),
                amount: money(amount),
                ordered_at: ts(closes),
                kind: if rng.chance(70) {
                    OrderKind::New
                } else {
                    OrderKind::Upsell
                } as i32,
                customer_id: customer,
                rep_id: owner.into(),
                deal_id: id,
                ..Default::default()
            }));
        }
    }
    // Repeat business without a deal.
    let kinds = [
        OrderKind::Renewal,
        OrderKind::Upsell,
        OrderKind::CrossSell,
        OrderKind::Renewal,
    ];
    for _ in 0..450 {
        order_number += 1;
        let (customer, owner, acquired) = rng.pick(&customers).clone();
        let at = when(&mut rng);
        if at <= acquired {
            continue;
        }
        push(R::Order(v1::Order {
            id: format!("demo-order-{order_number:04}"),
            amount: money(rng.range(4, 120) * 50),
            ordered_at: ts(at),
            kind: *rng.pick(&kinds) as i32,
            customer_id: customer,
            rep_id: owner.into(),
            ..Default::default()
        }));
    }

    // Activities.
    let types = [
        (ActivityType::Call, 40, 5, 30),
        (ActivityType::Email, 30, 2, 10),
        (ActivityType::Meeting, 12, 30, 90),
        (ActivityType::FollowUp, 8, 5, 20),
        (ActivityType::Proposal, 4, 30, 120),
        (ActivityType::Demo, 4, 30, 60),
        (ActivityType::NetworkingEvent, 1, 120, 240),
        (ActivityType::Social, 1, 2, 10),
    ];
    for i in 1..=3000 {
        let roll = rng.range(0, 99);
        let mut acc = 0;
        let &(kind, _, lo, hi) = types
            .iter()
            .find(|t| {
                acc += t.1;
                roll < acc
            })
            .unwrap_or(&types[0]);
        push(R::Activity(v1::Activity {
            id: format!("demo-activity-{i:04}"),
            rep_id: rng.pick(&rep_ids).to_string(),
            r#type: kind as i32,
            occurred_at: ts(when(&mut rng)),
            duration_seconds: Some(rng.range(lo, hi) * 60),
            ..Default::default()
        }));
    }

    // Inquiries and CSAT.
    let channels = ["email", "phone", "chat"];
    for i in 1..=300 {
        let received = when(&mut rng);
        let (customer, owner, _) = rng.pick(&customers).clone();
        let responded = rng
            .chance(95)
            .then(|| received + Duration::minutes(rng.range(10, 36 * 60)))
            .filter(|t| *t < now);
        push(R::Inquiry(v1::Inquiry {
            id: format!("demo-inquiry-{i:03}"),
            channel: rng.pick(&channels).to_string(),
            received_at: ts(received),
            first_response_at: responded.and_then(ts),
            customer_id: customer,
            rep_id: owner.into(),
            ..Default::default()
        }));
    }
    let scores = [5, 5, 5, 4, 4, 4, 4, 3, 2, 1];
    for i in 1..=250 {
        let (customer, owner, _) = rng.pick(&customers).clone();
        push(R::CsatResponse(v1::CsatResponse {
            id: format!("demo-csat-{i:03}"),
            score: *rng.pick(&scores),
            responded_at: ts(when(&mut rng)),
            customer_id: customer,
            rep_id: owner.into(),
            ..Default::default()
        }));
    }

    // Monthly targets and spend, from a year ago to the end of this month.
    for m in -12..=0 {
        let month = add_months(this_month, m);
        let next = add_months(month, 1);
        let key = format!("{:04}-{:02}", month.year(), month.month());
        let target = |id: String, metric: TargetMetric, value: i64| v1::Target {
            id,
            metric: metric as i32,
            value,
            start_date: Some(date_to_proto(month)),
            end_date: Some(date_to_proto(next)),
            ..Default::default()
        };
        push(R::Target(v1::Target {
            company: true,
            ..target(
                format!("demo-target-revenue-{key}"),
                TargetMetric::Revenue,
                110_000 * scale,
            )
        }));
        push(R::Target(v1::Target {
            company: true,
            ..target(
                format!("demo-target-bookings-{key}"),
                TargetMetric::Bookings,
                80_000 * scale,
            )
        }));
        push(R::Target(v1::Target {
            company: true,
            ..target(
                format!("demo-target-customers-{key}"),
                TargetMetric::NewCustomers,
                10,
            )
        }));
        for rep in &rep_ids {
            push(R::Target(v1::Target {
                rep_id: rep.to_string(),
                ..target(
                    format!("{rep}-quota-{key}"),
                    TargetMetric::Revenue,
                    11_000 * scale,
                )
            }));
        }
        for (category, amount, name) in [
            (SpendCategory::Marketing, 18_000, "marketing"),
            (SpendCategory::Sales, 12_000, "sales"),
        ] {
            push(R::Spend(v1::Spend {
                id: format!("demo-spend-{name}-{key}"),
                category: category as i32,
                amount: money(amount),
                start_date: Some(date_to_proto(month)),
                end_date: Some(date_to_proto(next)),
                ..Default::default()
            }));
        }
    }
    DemoData {
        records,
        last_full_month: add_months(this_month, -1),
    }
}

/// Runs `salesmetrics demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut clients = args.connect.connect().await?;
    if !args.force
        && let Some(kind) = first_stored_type(&mut clients).await?
    {
        anyhow::bail!(
            "the tenant already has data ({kind} records): demo would mix sample records \
             into it, so nothing was loaded. Use an empty tenant, or --force to load the \
             sample anyway."
        );
    }
    let currency = tenant_currency(&mut clients).await?;
    let data = generate(Utc::now().date_naive(), &currency);
    eprintln!(
        "loading {} demo records into {} ...",
        data.records.len(),
        args.connect.server
    );
    load(&mut clients, data.records).await?;
    let period = PeriodArg::Calendar {
        granularity: Granularity::Month,
        start: data.last_full_month,
    };
    let scope = v1::Scope {
        kind: ScopeKind::Company as i32,
        id: String::new(),
    };
    let bundle = super::kpis::fetch_kpis(
        &mut clients,
        scope,
        period,
        Vec::new(),
        Comparison::PreviousPeriod,
        None,
    )
    .await?;
    println!(
        "{}",
        super::kpis::bundle_text(&bundle, &Default::default(), false)
    );
    let month = format!(
        "{:04}-{:02}",
        data.last_full_month.year(),
        data.last_full_month.month()
    );
    println!("Try next:");
    println!("  salesmetrics breakdown --period {month} --by rep");
    println!(
        "  salesmetrics breakdown --period {month} --by team --kpi revenue,win_rate,revenue_target_attainment"
    );
    println!(
        "  salesmetrics series --from {} --count 12 --kpi revenue,mrr,win_rate",
        {
            let first = add_months(data.last_full_month, -11);
            format!("{:04}-{:02}", first.year(), first.month())
        }
    );
    Ok(())
}

/// The first record type of which the tenant has records (a readable name,
/// e.g. `order`), or `None` when the tenant is empty.
async fn first_stored_type(clients: &mut Clients) -> anyhow::Result<Option<String>> {
    for value in 1..=14 {
        let Ok(kind) = v1::RecordType::try_from(value) else {
            continue;
        };
        let mut stream = clients
            .ingest
            .export_records(v1::ExportRecordsRequest { record_type: value })
            .await
            .map_err(|status| status_error("ExportRecords", status))?
            .into_inner();
        // The first non-empty chunk answers; the rest of the stream is dropped.
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|status| status_error("ExportRecords", status))?
        {
            if !chunk.records.is_empty() {
                let name = kind
                    .as_str_name()
                    .trim_start_matches("RECORD_TYPE_")
                    .to_ascii_lowercase()
                    .replace('_', " ");
                return Ok(Some(name));
            }
        }
    }
    Ok(None)
}

/// Sends records in unary batches; fails with the first reasons if any is rejected.
async fn load(clients: &mut Clients, records: Vec<v1::Record>) -> anyhow::Result<()> {
    let mut rejected = Vec::new();
    for chunk in records.chunks(2000) {
        let result = clients
            .ingest
            .ingest_batch(IngestBatchRequest {
                records: chunk.to_vec(),
                all_or_nothing: false,
            })
            .await
            .map_err(|status| status_error("IngestBatch", status))?
            .into_inner()
            .result
            .unwrap_or_default();
        rejected.extend(
            result
                .results
                .into_iter()
                .filter(|r| r.outcome == v1::RecordOutcome::Rejected as i32)
                .map(|r| format!("{} {}: {}", r.id, r.field_path, r.reason)),
        );
    }
    if !rejected.is_empty() {
        anyhow::bail!(
            "the server rejected {} demo records, e.g.: {}",
            rejected.len(),
            rejected[..rejected.len().min(5)].join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dataset_is_deterministic_and_ends_before_today() {
        let today = NaiveDate::from_ymd_opt(2025, 6, 17).unwrap();
        let a = generate(today, "USD");
        let b = generate(today, "USD");
        assert_eq!(a.records, b.records);
        assert_eq!(
            a.last_full_month,
            NaiveDate::from_ymd_opt(2025, 5, 1).unwrap()
        );
        assert!(a.records.len() > 5000, "{}", a.records.len());
        let now = midnight(today).timestamp();
        let orders: Vec<&v1::Order> = a
            .records
            .iter()
            .filter_map(|r| match &r.record {
                Some(R::Order(o)) => Some(o),
                _ => None,
            })
            .collect();
        assert!(
            orders
                .iter()
                .all(|o| o.ordered_at.as_ref().unwrap().seconds < now)
        );
        assert!(
            orders
                .iter()
                .all(|o| o.amount.as_ref().unwrap().minor_units > 0)
        );
        // Every month of the last year has orders.
        let may = midnight(a.last_full_month).timestamp();
        assert!(
            orders
                .iter()
                .any(|o| o.ordered_at.as_ref().unwrap().seconds >= may)
        );
    }

    #[test]
    fn months_are_added_across_years() {
        let jan = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        assert_eq!(
            add_months(jan, -1),
            NaiveDate::from_ymd_opt(2024, 12, 1).unwrap()
        );
        assert_eq!(
            add_months(jan, -13),
            NaiveDate::from_ymd_opt(2023, 12, 1).unwrap()
        );
        assert_eq!(
            add_months(jan, 12),
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
        );
    }
}
