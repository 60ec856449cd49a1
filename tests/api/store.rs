//! The storage conformance suite: one set of scenarios, run against SQLite
//! always and against PostgreSQL when `TEST_DATABASE_URL` is set, so both
//! backends are held to exactly the same observable behaviour.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate};
use salesmetrics::domain::*;
use salesmetrics::error::Error;
use salesmetrics::store::{Changes, Store, WriteOutcome, connect};

/// Runs each scenario (an `async fn(Arc<dyn Store>)` of this module) once per
/// backend, as `store::sqlite::<name>` and `store::postgres::<name>`.
macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, url) = crate::db::fresh_sqlite().await;
                    let store = salesmetrics::store::connect(&url).await.expect("connect");
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(url) = crate::db::fresh_postgres().await else { return };
                    let store = salesmetrics::store::connect(&url).await.expect("connect");
                    super::$name(store).await;
                    crate::db::drop_postgres(&url).await;
                }
            )*
        }
    };
}

store_suite!(
    round_trips_every_record_type,
    rewriting_a_batch_changes_nothing,
    version_rules,
    delete_is_idempotent_and_forgets_the_version,
    team_cycles_are_rejected,
    all_or_nothing_rolls_back_the_whole_batch,
    concurrent_writes_never_fail,
    settings_round_trip,
    unknown_tenant_is_not_found,
    export_pages_in_byte_order,
    a_load_lists_each_record_type_in_byte_order_of_id,
    tenants_are_isolated,
    large_batches_keep_order_and_versions,
    the_change_feed_lists_what_changed_after_a_version,
    team_trees_are_at_most_100_levels_deep,
);

/// An instant with nanosecond precision, to catch any rounding on the way.
fn at(secs: i64, nanos: u32) -> Instant {
    DateTime::from_timestamp(secs, nanos).expect("valid instant")
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

fn s(v: &str) -> String {
    v.to_string()
}

fn some(v: &str) -> Option<String> {
    Some(v.to_string())
}

const T0: i64 = 1_709_251_200; // 2024-03-01T00:00:00Z

/// Two records of every type: one with every optional field set (and a
/// version), one with every optional field absent. Ids put uppercase before
/// lowercase to pin byte order.
fn every_record_type() -> Vec<Record> {
    vec![
        Record::Team(Team {
            id: s("team-b").into(),
            version: Some(3),
            name: s("Team B").into(),
            parent_team_id: some("team-a").map(Into::into),
        }),
        Record::Team(Team {
            id: s("team-a").into(),
            version: None,
            name: s("Team A").into(),
            parent_team_id: None,
        }),
        Record::TeamMembership(TeamMembership {
            id: s("m-1").into(),
            version: Some(1),
            rep_id: s("rep-1").into(),
            team_id: some("team-a").map(Into::into),
            effective_at: at(T0, 1),
        }),
        Record::TeamMembership(TeamMembership {
            id: s("M-2").into(),
            version: None,
            rep_id: s("rep-1").into(),
            team_id: None,
            effective_at: at(T0 + 86_400, 999_999_999),
        }),
        Record::Rep(Rep {
            id: s("rep-1").into(),
            version: Some(i64::MAX),
            name: s("Ada Lovelace").into(),
            email: some("ada@example.com").map(Into::into),
        }),
        Record::Rep(Rep {
            id: s("Rep-2").into(),
            version: None,
            name: s("Grace Hopper ✓").into(),
            email: None,
        }),
        Record::Customer(Customer {
            id: s("c-1").into(),
            version: Some(0),
            acquired_at: at(T0, 123_456_789),
            churned_at: Some(at(T0 + 1000, 1)),
            owner_rep_id: some("rep-1").map(Into::into),
            source: some("referral").map(Into::into),
            name: some("Acme").map(Into::into),
        }),
        Record::Customer(Customer {
            id: s("C-2").into(),
            version: None,
            acquired_at: at(946_684_800, 0), // 2000-01-01, the lower bound
            churned_at: None,
            owner_rep_id: None,
            source: None,
            name: None,
        }),
        Record::Lead(Lead {
            id: s("l-1").into(),
            version: Some(-5),
            source: s("web").into(),
            created_at: at(T0, 5),
            owner_rep_id: some("rep-1").map(Into::into),
            first_response_at: Some(at(T0 + 60, 6)),
            converted_at: Some(at(T0 + 3600, 7)),
            customer_id: some("c-1").map(Into::into),
        }),
        Record::Lead(Lead {
            id: s("L-2").into(),
            version: None,
            source: s("referral").into(),
            created_at: at(4_102_444_799, 999_999_999), // just before 2100
            owner_rep_id: None,
            first_response_at: None,
            converted_at: None,
            customer_id: None,
        }),
        Record::Deal(Deal {
            id: s("d-1").into(),
            version: Some(2),
            amount: 700_000,
            created_at: at(T0, 10),
            status: DealStatus::Won,
            closed_at: Some(at(T0 + 1_641_600, 11)),
            stage: some("negotiation").map(Into::into),
            owner_rep_id: some("rep-1").map(Into::into),
            customer_id: some("c-1").map(Into::into),
            lead_id: some("l-1").map(Into::into),
        }),
        Record::Deal(Deal {
            id: s("D-2").into(),
            version: None,
            amount: 0,
            created_at: at(T0, 12),
            status: DealStatus::Open,
            closed_at: None,
            stage: None,
            owner_rep_id: None,
            customer_id: None,
            lead_id: None,
        }),
        Record::Deal(Deal {
            id: s("d-3").into(),
            version: None,
            amount: i64::MAX,
            created_at: at(T0, 13),
            status: DealStatus::Lost,
            closed_at: Some(at(T0, 13)),
            stage: some("qualification").map(Into::into),
            owner_rep_id: None,
            customer_id: None,
            lead_id: None,
        }),
        Record::DealStageChange(DealStageChange {
            id: s("s-1").into(),
            version: Some(1),
            deal_id: s("d-1").into(),
            stage: s("proposal").into(),
            entered_at: at(T0 + 10, 14),
        }),
        Record::DealStageChange(DealStageChange {
            id: s("S-2").into(),
            version: None,
            deal_id: s("d-1").into(),
            stage: s("prospecting").into(),
            entered_at: at(T0 + 5, 15),
        }),
        Record::Order(Order {
            id: s("o-1").into(),
            version: Some(9),
            amount: 12_345,
            ordered_at: at(T0 + 20, 16),
            kind: OrderKind::CrossSell,
            customer_id: some("c-1").map(Into::into),
            rep_id: some("rep-1").map(Into::into),
            deal_id: some("d-1").map(Into::into),
        }),
        Record::Order(Order {
            id: s("O-2").into(),
            version: None,
            amount: 1,
            ordered_at: at(T0 + 21, 17),
            kind: OrderKind::New,
            customer_id: None,
            rep_id: None,
            deal_id: None,
        }),
        Record::Order(Order {
            id: s("o-3").into(),
            version: None,
            amount: 2,
            ordered_at: at(T0 + 22, 18),
            kind: OrderKind::Upsell,
            customer_id: None,
            rep_id: None,
            deal_id: None,
        }),
        Record::Order(Order {
            id: s("o-4").into(),
            version: None,
            amount: 3,
            ordered_at: at(T0 + 23, 19),
            kind: OrderKind::Renewal,
            customer_id: None,
            rep_id: None,
            deal_id: None,
        }),
        Record::SubscriptionChange(SubscriptionChange {
            id: s("x-1").into(),
            version: Some(1),
            subscription_id: s("sub-1").into(),
            customer_id: s("c-1").into(),
            mrr: 50_000,
            effective_at: at(T0 + 30, 20),
        }),
        Record::SubscriptionChange(SubscriptionChange {
            id: s("X-2").into(),
            version: None,
            subscription_id: s("sub-1").into(),
            customer_id: s("c-1").into(),
            mrr: 0,
            effective_at: at(T0 + 31, 21),
        }),
        Record::Inquiry(Inquiry {
            id: s("i-1").into(),
            version: Some(4),
            channel: s("email").into(),
            received_at: at(T0 + 40, 22),
            first_response_at: Some(at(T0 + 41, 23)),
            customer_id: some("c-1").map(Into::into),
            rep_id: some("rep-1").map(Into::into),
        }),
        Record::Inquiry(Inquiry {
            id: s("I-2").into(),
            version: None,
            channel: s("chat").into(),
            received_at: at(T0 + 42, 24),
            first_response_at: None,
            customer_id: None,
            rep_id: None,
        }),
        Record::CsatResponse(CsatResponse {
            id: s("q-1").into(),
            version: Some(1),
            score: 5,
            responded_at: at(T0 + 50, 25),
            customer_id: some("c-1").map(Into::into),
            rep_id: some("rep-1").map(Into::into),
        }),
        Record::CsatResponse(CsatResponse {
            id: s("Q-2").into(),
            version: None,
            score: 1,
            responded_at: at(T0 + 51, 26),
            customer_id: None,
            rep_id: None,
        }),
        Record::Target(Target {
            id: s("t-1").into(),
            version: Some(1),
            metric: TargetMetric::Revenue,
            value: 1_000_000,
            start_date: date(2024, 1, 1),
            end_date: date(2025, 1, 1),
            scope: TargetScope::Company,
        }),
        Record::Target(Target {
            id: s("T-2").into(),
            version: None,
            metric: TargetMetric::Bookings,
            value: 0,
            start_date: date(2024, 2, 29),
            end_date: date(2024, 3, 1),
            scope: TargetScope::Team(s("team-a")),
        }),
        Record::Target(Target {
            id: s("t-3").into(),
            version: None,
            metric: TargetMetric::NewCustomers,
            value: 7,
            start_date: date(2099, 12, 30),
            end_date: date(2099, 12, 31),
            scope: TargetScope::Rep(s("rep-1")),
        }),
        Record::Target(Target {
            id: s("t-4").into(),
            version: None,
            metric: TargetMetric::DealsWon,
            value: 3,
            start_date: date(2000, 1, 1),
            end_date: date(2000, 2, 1),
            scope: TargetScope::Company,
        }),
        Record::Spend(Spend {
            id: s("p-1").into(),
            version: Some(1),
            category: SpendCategory::Marketing,
            amount: 99_999,
            start_date: date(2024, 3, 1),
            end_date: date(2024, 4, 1),
            team_id: some("team-a").map(Into::into),
        }),
        Record::Spend(Spend {
            id: s("P-2").into(),
            version: None,
            category: SpendCategory::Sales,
            amount: 0,
            start_date: date(2024, 3, 1),
            end_date: date(2024, 3, 2),
            team_id: None,
        }),
    ]
    .into_iter()
    .chain(ActivityType::ALL.iter().enumerate().map(|(i, t)| {
        let full = i % 2 == 0;
        Record::Activity(Activity {
            id: format!("{}-{i}", if full { "a" } else { "A" }).into(),
            version: full.then_some(i as i64),
            rep_id: s("rep-1").into(),
            activity_type: *t,
            occurred_at: at(T0 + 100 + i as i64, 27 + i as u32),
            duration_seconds: full.then_some(60 * i as i64),
            lead_id: full.then(|| s("l-1")).map(Into::into),
            deal_id: full.then(|| s("d-1")).map(Into::into),
            customer_id: full.then(|| s("c-1")).map(Into::into),
        })
    }))
    .collect()
}

/// `records` as the store must return them: grouped by type, each list in
/// byte order of id.
fn expected_dataset(records: &[Record]) -> Dataset {
    let mut sorted = records.to_vec();
    sorted.sort_by(|a, b| a.id().as_bytes().cmp(b.id().as_bytes()));
    let mut dataset = Dataset::default();
    for record in sorted {
        dataset.push(record);
    }
    dataset
}

fn all_accepted(n: usize) -> Vec<WriteOutcome> {
    vec![WriteOutcome::Accepted; n]
}

/// Every record of one type, read through `export` one page of `page` at a time.
async fn export_all(
    store: &dyn Store,
    tenant: &str,
    record_type: RecordType,
    page: u32,
) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    loop {
        let after = out.last().map(|r| r.id().to_string());
        let batch = store
            .export(tenant, record_type, after.as_deref(), page)
            .await
            .expect("export");
        let done = batch.len() < page as usize;
        assert!(batch.len() <= page as usize);
        out.extend(batch);
        if done {
            return out;
        }
    }
}

fn rep(id: &str, version: Option<i64>, name: &str) -> Record {
    Record::Rep(Rep {
        id: s(id).into(),
        version,
        name: s(name).into(),
        email: None,
    })
}

fn team(id: &str, parent: Option<&str>) -> Record {
    Record::Team(Team {
        id: s(id).into(),
        version: None,
        name: format!("Team {id}").into(),
        parent_team_id: parent.map(s).map(Into::into),
    })
}

fn order(id: &str, amount: i64) -> Record {
    Record::Order(Order {
        id: s(id).into(),
        version: None,
        amount,
        ordered_at: at(T0, 0),
        kind: OrderKind::New,
        customer_id: None,
        rep_id: None,
        deal_id: None,
    })
}

fn rejected_cycle() -> impl Fn(&WriteOutcome) -> bool {
    |o| matches!(o, WriteOutcome::Rejected { field, .. } if field == "team.parent_team_id")
}

async fn round_trips_every_record_type(store: Arc<dyn Store>) {
    store.ensure_tenant("t1").await.unwrap();
    let records = every_record_type();
    let outcomes = store.write("t1", &records, true).await.unwrap();
    assert_eq!(outcomes, all_accepted(records.len()));

    let expected = expected_dataset(&records);
    assert_eq!(store.load_dataset("t1").await.unwrap(), expected);

    for record_type in RecordType::ALL {
        let of_type = records_of(expected.clone(), record_type);
        assert!(!of_type.is_empty(), "fixture covers {record_type:?}");
        assert_eq!(
            export_all(&*store, "t1", record_type, 1).await,
            of_type,
            "{record_type:?} one by one"
        );
        assert_eq!(
            export_all(&*store, "t1", record_type, 1000).await,
            of_type,
            "{record_type:?} in one page"
        );
    }
}

/// The dataset's records of one type, in their stored order.
fn records_of(d: Dataset, record_type: RecordType) -> Vec<Record> {
    {
        match record_type {
            RecordType::Team => d.teams.into_iter().map(Record::Team).collect(),
            RecordType::TeamMembership => d
                .team_memberships
                .into_iter()
                .map(Record::TeamMembership)
                .collect(),
            RecordType::Rep => d.reps.into_iter().map(Record::Rep).collect(),
            RecordType::Customer => d.customers.into_iter().map(Record::Customer).collect(),
            RecordType::Lead => d.leads.into_iter().map(Record::Lead).collect(),
            RecordType::Deal => d.deals.into_iter().map(Record::Deal).collect(),
            RecordType::DealStageChange => d
                .deal_stage_changes
                .into_iter()
                .map(Record::DealStageChange)
                .collect(),
            RecordType::Order => d.orders.into_iter().map(Record::Order).collect(),
            RecordType::SubscriptionChange => d
                .subscription_changes
                .into_iter()
                .map(Record::SubscriptionChange)
                .collect(),
            RecordType::Activity => d.activities.into_iter().map(Record::Activity).collect(),
            RecordType::Inquiry => d.inquiries.into_iter().map(Record::Inquiry).collect(),
            RecordType::CsatResponse => d
                .csat_responses
                .into_iter()
                .map(Record::CsatResponse)
                .collect(),
            RecordType::Target => d.targets.into_iter().map(Record::Target).collect(),
            RecordType::Spend => d.spends.into_iter().map(Record::Spend).collect(),
        }
    }
}

async fn rewriting_a_batch_changes_nothing(store: Arc<dyn Store>) {
    store.ensure_tenant("t1").await.unwrap();
    let records = every_record_type();
    // Versioned records of the retry are stale; unversioned ones are
    // rewritten with identical values.
    let expected_retry: Vec<WriteOutcome> = records
        .iter()
        .map(|r| {
            if r.version().is_some() {
                WriteOutcome::Stale
            } else {
                WriteOutcome::Accepted
            }
        })
        .collect();
    store.write("t1", &records, false).await.unwrap();
    let before = store.load_dataset("t1").await.unwrap();
    let outcomes = store.write("t1", &records, false).await.unwrap();
    assert_eq!(outcomes, expected_retry);
    assert_eq!(store.load_dataset("t1").await.unwrap(), before);
    assert_eq!(before, expected_dataset(&records));
}

async fn version_rules(store: Arc<dyn Store>) {
    use WriteOutcome::{Accepted, Stale};
    store.ensure_tenant("t1").await.unwrap();
    let name_of = |d: Dataset| {
        let r = &d.reps[0];
        (r.name.to_string(), r.version)
    };
    let w = |records: Vec<Record>| {
        let store = store.clone();
        async move { store.write("t1", &records, false).await.unwrap() }
    };

    assert_eq!(w(vec![rep("r1", Some(5), "v5")]).await, [Accepted]);
    assert_eq!(w(vec![rep("r1", Some(5), "v5 again")]).await, [Stale]);
    assert_eq!(w(vec![rep("r1", Some(4), "v4")]).await, [Stale]);
    assert_eq!(
        name_of(store.load_dataset("t1").await.unwrap()),
        (s("v5"), Some(5))
    );
    assert_eq!(w(vec![rep("r1", Some(6), "v6")]).await, [Accepted]);
    assert_eq!(
        name_of(store.load_dataset("t1").await.unwrap()),
        (s("v6"), Some(6))
    );
    // No version: always replaces, and the stored version becomes NULL...
    assert_eq!(w(vec![rep("r1", None, "unversioned")]).await, [Accepted]);
    assert_eq!(
        name_of(store.load_dataset("t1").await.unwrap()),
        (s("unversioned"), None)
    );
    // ...so any version is accepted afterwards.
    assert_eq!(w(vec![rep("r1", Some(1), "v1")]).await, [Accepted]);
    assert_eq!(
        name_of(store.load_dataset("t1").await.unwrap()),
        (s("v1"), Some(1))
    );
    // Within a batch, later records see earlier ones.
    assert_eq!(
        w(vec![
            rep("r1", Some(10), "v10"),
            rep("r1", Some(9), "v9"),
            rep("r1", Some(10), "v10 again"),
            rep("r1", Some(11), "v11"),
        ])
        .await,
        [Accepted, Stale, Stale, Accepted]
    );
    assert_eq!(
        name_of(store.load_dataset("t1").await.unwrap()),
        (s("v11"), Some(11))
    );
    assert_eq!(
        w(vec![rep("r2", None, "first"), rep("r2", None, "second")]).await,
        [Accepted, Accepted]
    );
    let reps = store.load_dataset("t1").await.unwrap().reps;
    assert_eq!(reps.len(), 2);
    assert_eq!(
        (reps[1].id.as_str(), reps[1].name.as_str()),
        ("r2", "second")
    );
    // Versions are per (type, id): a Rep's version does not affect an Order.
    let mut versioned_order = order("r1", 5);
    if let Record::Order(o) = &mut versioned_order {
        o.version = Some(1);
    }
    assert_eq!(w(vec![versioned_order]).await, [Accepted]);
}

async fn delete_is_idempotent_and_forgets_the_version(store: Arc<dyn Store>) {
    store.ensure_tenant("t1").await.unwrap();
    store
        .write(
            "t1",
            &[
                rep("r1", Some(5), "one"),
                rep("r2", None, "two"),
                order("r1", 7),
            ],
            false,
        )
        .await
        .unwrap();
    let ids = vec![s("r1"), s("r2"), s("r3"), s("r1")];
    assert_eq!(store.delete("t1", RecordType::Rep, &ids).await.unwrap(), 2);
    assert_eq!(store.delete("t1", RecordType::Rep, &ids).await.unwrap(), 0);
    let dataset = store.load_dataset("t1").await.unwrap();
    assert!(dataset.reps.is_empty());
    // Other types with the same id are untouched.
    assert_eq!(dataset.orders.len(), 1);
    // The version is forgotten: a lower version recreates the record.
    assert_eq!(
        store
            .write("t1", &[rep("r1", Some(1), "again")], false)
            .await
            .unwrap(),
        [WriteOutcome::Accepted]
    );
    assert_eq!(
        store.export("t1", RecordType::Rep, None, 10).await.unwrap(),
        [rep("r1", Some(1), "again")]
    );
    assert_eq!(store.delete("t1", RecordType::Rep, &[]).await.unwrap(), 0);
}

async fn team_cycles_are_rejected(store: Arc<dyn Store>) {
    use WriteOutcome::Accepted;
    store.ensure_tenant("t1").await.unwrap();
    let is_cycle = rejected_cycle();

    // Self-parent.
    let outcomes = store
        .write("t1", &[team("a", Some("a"))], false)
        .await
        .unwrap();
    assert!(is_cycle(&outcomes[0]), "{outcomes:?}");
    assert!(store.load_dataset("t1").await.unwrap().teams.is_empty());

    // A three-team cycle closed within one batch: a → c (unknown yet, so a
    // root), b → a, then c → b would make c its own ancestor.
    let outcomes = store
        .write(
            "t1",
            &[
                team("a", Some("c")),
                team("b", Some("a")),
                team("c", Some("b")),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!(outcomes[..2], [Accepted, Accepted]);
    assert!(is_cycle(&outcomes[2]), "{outcomes:?}");
    assert_eq!(
        store.load_dataset("t1").await.unwrap().teams,
        expected_dataset(&[team("a", Some("c")), team("b", Some("a"))]).teams
    );

    // Closing it against stored teams is rejected too; c as a root is fine.
    let outcomes = store
        .write("t1", &[team("c", Some("b"))], false)
        .await
        .unwrap();
    assert!(is_cycle(&outcomes[0]), "{outcomes:?}");
    assert_eq!(
        store.write("t1", &[team("c", None)], false).await.unwrap(),
        [Accepted]
    );
    // Re-parenting a team under its own descendant: a's descendant is b.
    let outcomes = store
        .write("t1", &[team("a", Some("b"))], false)
        .await
        .unwrap();
    assert!(is_cycle(&outcomes[0]), "{outcomes:?}");
    // A rejected write is not seen by later records of the batch: had a → b
    // been applied, b → a would close a cycle; as it was not, b → a stays a
    // valid re-write (a → c → root).
    let outcomes = store
        .write("t1", &[team("a", Some("b")), team("b", Some("a"))], false)
        .await
        .unwrap();
    assert!(is_cycle(&outcomes[0]), "{outcomes:?}");
    assert_eq!(outcomes[1], Accepted);

    // A deleted parent makes its child a root: with a deleted, b (child of a)
    // is a root, so c → b is fine. Recreating a under c is not: its old child
    // b would make it its own ancestor (a → c → b → a).
    assert_eq!(
        store
            .delete("t1", RecordType::Team, &[s("a")])
            .await
            .unwrap(),
        1
    );
    let outcomes = store
        .write("t1", &[team("c", Some("b")), team("a", Some("c"))], false)
        .await
        .unwrap();
    assert_eq!(outcomes[0], Accepted);
    assert!(is_cycle(&outcomes[1]), "{outcomes:?}");
    assert_eq!(
        store.load_dataset("t1").await.unwrap().teams,
        expected_dataset(&[team("b", Some("a")), team("c", Some("b"))]).teams
    );
}

async fn all_or_nothing_rolls_back_the_whole_batch(store: Arc<dyn Store>) {
    store.ensure_tenant("t1").await.unwrap();
    store
        .write("t1", &[team("x", None), team("y", Some("x"))], false)
        .await
        .unwrap();
    let before = store.load_dataset("t1").await.unwrap();
    let batch = [
        rep("r1", None, "rep"),
        team("z", Some("y")),
        team("x", Some("z")), // x → z → y → x
        order("o1", 5),
    ];
    let outcomes = store.write("t1", &batch, true).await.unwrap();
    assert_eq!(outcomes.len(), 4);
    assert_eq!(
        outcomes[..2],
        [WriteOutcome::Accepted, WriteOutcome::Accepted]
    );
    assert!(rejected_cycle()(&outcomes[2]), "{outcomes:?}");
    assert_eq!(outcomes[3], WriteOutcome::Accepted);
    assert_eq!(store.load_dataset("t1").await.unwrap(), before);

    // Without all_or_nothing the valid records commit.
    let outcomes = store.write("t1", &batch, false).await.unwrap();
    assert!(rejected_cycle()(&outcomes[2]), "{outcomes:?}");
    let after = store.load_dataset("t1").await.unwrap();
    assert_eq!(after.reps.len(), 1);
    assert_eq!(after.orders.len(), 1);
    assert_eq!(
        after.teams,
        expected_dataset(&[team("x", None), team("y", Some("x")), team("z", Some("y"))]).teams
    );
}

async fn concurrent_writes_never_fail(store: Arc<dyn Store>) {
    const TASKS: usize = 8;
    const BATCHES: usize = 10;
    const PER_BATCH: usize = 25;
    store.ensure_tenant("t1").await.unwrap();
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for batch in 0..BATCHES {
                let mut records: Vec<Record> = (0..PER_BATCH)
                    .map(|i| order(&format!("o-{task}-{batch}-{i}"), 1 + i as i64))
                    .collect();
                // Every task also rewrites shared ids and the team tree.
                records.push(rep("shared", None, &format!("task {task}")));
                records.push(team(&format!("team-{task}"), Some("team-root")));
                let outcomes = store.write("t1", &records, false).await.expect("write");
                assert_eq!(outcomes, all_accepted(records.len()));
                store.load_dataset("t1").await.expect("read meanwhile");
            }
        }));
    }
    for handle in handles {
        handle.await.expect("task");
    }
    let dataset = store.load_dataset("t1").await.unwrap();
    assert_eq!(dataset.orders.len(), TASKS * BATCHES * PER_BATCH);
    let total: i64 = dataset.orders.iter().map(|o| o.amount).sum();
    let per_batch: i64 = (1..=PER_BATCH as i64).sum();
    assert_eq!(total, per_batch * (TASKS * BATCHES) as i64);
    assert_eq!(dataset.reps.len(), 1);
    assert_eq!(dataset.teams.len(), TASKS);
}

async fn settings_round_trip(store: Arc<dyn Store>) {
    store.ensure_tenant("t1").await.unwrap();
    assert_eq!(
        store.tenant_settings("t1").await.unwrap(),
        TenantSettings::default()
    );
    let custom = TenantSettings {
        time_zone: chrono_tz::America::New_York,
        currency_code: s("EUR"),
        fiscal_year_start_month: 4,
        pipeline_stages: vec![
            PipelineStage {
                name: s("discovery"),
                win_probability: 0.0,
            },
            PipelineStage {
                name: s("demo"),
                win_probability: 1.0 / 3.0,
            },
            PipelineStage {
                name: s("contract"),
                win_probability: 1.0,
            },
        ],
        gross_margin: 0.1 + 0.2,
        csat_satisfied_min_score: 5,
        referral_sources: vec![s("referral"), s("partner")],
    };
    store.update_tenant_settings("t1", &custom).await.unwrap();
    assert_eq!(store.tenant_settings("t1").await.unwrap(), custom);
    // ensure_tenant on an existing tenant keeps its settings.
    store.ensure_tenant("t1").await.unwrap();
    assert_eq!(store.tenant_settings("t1").await.unwrap(), custom);
    // Tenants do not share settings.
    store.ensure_tenant("t2").await.unwrap();
    assert_eq!(
        store.tenant_settings("t2").await.unwrap(),
        TenantSettings::default()
    );
}

async fn unknown_tenant_is_not_found(store: Arc<dyn Store>) {
    assert!(matches!(
        store.tenant_settings("nobody").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store
            .update_tenant_settings("nobody", &TenantSettings::default())
            .await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.write("nobody", &[rep("r1", None, "x")], false).await,
        Err(Error::NotFound(_))
    ));
    store.ping().await.unwrap();
}

async fn export_pages_in_byte_order(store: Arc<dyn Store>) {
    store.ensure_tenant("t1").await.unwrap();
    let ids = [
        "b", "B", "a", "A", "_x", "-1", "0", ".z", ":q", "a.b", "a-b", "Z9", "z",
    ];
    let records: Vec<Record> = ids.iter().map(|id| rep(id, None, id)).collect();
    store.write("t1", &records, false).await.unwrap();
    let mut expected: Vec<&str> = ids.to_vec();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for page in [1, 2, 5, 100] {
        let got: Vec<String> = export_all(&*store, "t1", RecordType::Rep, page)
            .await
            .iter()
            .map(|r| r.id().to_string())
            .collect();
        assert_eq!(got, expected, "page size {page}");
    }
    let after_a: Vec<String> = store
        .export("t1", RecordType::Rep, Some("a"), 3)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id().to_string())
        .collect();
    assert_eq!(after_a, ["a-b", "a.b", "b"]);
    assert!(
        store
            .export("t1", RecordType::Rep, None, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// However the database stores the rows (here written one batch each, in
/// reverse, and the first rewritten last, so a table scan finds them out of
/// order), a full load lists every record type in byte order of id, as
/// catch-ups expect.
async fn a_load_lists_each_record_type_in_byte_order_of_id(store: Arc<dyn Store>) {
    store.ensure_tenant("t1").await.unwrap();
    let ids = ["z", "b", "a.b", "a-b", "_x", "Z9", "B", "A", "-1"];
    for id in ids {
        store
            .write("t1", &[order(id, 1), rep(id, None, id)], false)
            .await
            .unwrap();
    }
    store.write("t1", &[order("z", 2)], false).await.unwrap();
    let mut expected = ids.to_vec();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let data = store.load_dataset("t1").await.unwrap();
    let order_ids: Vec<&str> = data.orders.iter().map(|o| o.id.as_str()).collect();
    let rep_ids: Vec<&str> = data.reps.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(order_ids, expected);
    assert_eq!(rep_ids, expected);
    let z = data.orders.iter().find(|o| o.id == "z").unwrap();
    assert_eq!(z.amount, 2);
}

async fn tenants_are_isolated(store: Arc<dyn Store>) {
    store.ensure_tenant("t1").await.unwrap();
    store.ensure_tenant("t2").await.unwrap();
    store
        .write("t1", &[rep("r1", Some(5), "one"), team("a", None)], false)
        .await
        .unwrap();
    // Same ids in another tenant: no version clash, no team tree shared.
    let outcomes = store
        .write(
            "t2",
            &[
                rep("r1", Some(1), "other"),
                team("b", Some("a")),
                team("a", Some("b")),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        outcomes[..2],
        [WriteOutcome::Accepted, WriteOutcome::Accepted]
    );
    assert!(rejected_cycle()(&outcomes[2]), "{outcomes:?}");
    assert_eq!(
        store.load_dataset("t1").await.unwrap().reps,
        expected_dataset(&[rep("r1", Some(5), "one")]).reps
    );
    assert_eq!(
        store
            .delete("t2", RecordType::Rep, &[s("r1")])
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.load_dataset("t1").await.unwrap().reps.len(), 1);
    assert!(store.load_dataset("t3").await.unwrap() == Dataset::default());
}

#[tokio::test]
async fn connect_rejects_unknown_schemes() {
    for url in [
        "mysql://localhost/x",
        "salesmetrics.db",
        "",
        "sqlite::memory:",
        "sqlite://x.db?mode=memory",
    ] {
        match connect(url).await {
            Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "database_url"),
            Err(other) => panic!("{url}: unexpected error {other:?}"),
            Ok(_) => panic!("{url}: connected"),
        }
    }
}

#[tokio::test]
async fn connect_creates_the_sqlite_file_and_reopens_it() {
    let (dir, url) = crate::db::fresh_sqlite().await;
    let store = connect(&url).await.unwrap();
    assert!(dir.path().join("salesmetrics.db").exists());
    store.ensure_tenant("t1").await.unwrap();
    store
        .write("t1", &[rep("r1", None, "kept")], false)
        .await
        .unwrap();
    drop(store);
    // Reopening applies no migration twice and finds the data.
    let store = connect(&url).await.unwrap();
    assert_eq!(
        store.load_dataset("t1").await.unwrap().reps,
        expected_dataset(&[rep("r1", None, "kept")]).reps
    );
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    // Port 1 on localhost refuses connections.
    match connect("postgres://postgres@127.0.0.1:1/none").await {
        Err(Error::Unavailable(_)) => {}
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(_) => panic!("connected to nothing"),
    }
}

/// Batches longer than one multi-row statement, with duplicates and stale
/// records at and around statement boundaries, keep the per-record rules.
async fn large_batches_keep_order_and_versions(store: Arc<dyn Store>) {
    use WriteOutcome::{Accepted, Stale};
    store.ensure_tenant("t1").await.unwrap();
    let id = |i: usize| format!("r{i:04}");
    let mut batch: Vec<Record> = (0..1200).map(|i| rep(&id(i), Some(1), "v1")).collect();
    let mut expected = all_accepted(1200);
    // A higher version of an earlier id, right at a statement boundary...
    batch.insert(500, rep(&id(10), Some(2), "v2"));
    expected.insert(500, Accepted);
    // ...a stale one (same version) a little later...
    batch.insert(700, rep(&id(499), Some(1), "stale"));
    expected.insert(700, Stale);
    // ...and an unversioned rewrite of an id written earlier in the same run.
    batch.insert(900, rep(&id(800), None, "unversioned"));
    expected.insert(900, Accepted);
    assert_eq!(store.write("t1", &batch, false).await.unwrap(), expected);

    let reps = store.load_dataset("t1").await.unwrap().reps;
    assert_eq!(reps.len(), 1200);
    let find = |i: usize| reps.iter().find(|r| r.id == id(i)).unwrap();
    assert_eq!((find(10).name.as_str(), find(10).version), ("v2", Some(2)));
    assert_eq!(
        (find(499).name.as_str(), find(499).version),
        ("v1", Some(1))
    );
    assert_eq!(
        (find(800).name.as_str(), find(800).version),
        ("unversioned", None)
    );
    assert_eq!(
        (find(1199).name.as_str(), find(1199).version),
        ("v1", Some(1))
    );

    // The whole batch again: versioned records are stale except r0800 v1 (at
    // 802), which finds the stored version NULL (left by the unversioned
    // write) and so replaces it, before the unversioned rewrite at 900.
    let again = store.write("t1", &batch, false).await.unwrap();
    let accepted: Vec<usize> = again
        .iter()
        .enumerate()
        .filter(|(_, o)| **o == Accepted)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(accepted, [802, 900]);
    assert_eq!(store.load_dataset("t1").await.unwrap().reps, reps);
}

/// The change feed: after version V it lists exactly the records written
/// after V (as they are now) and the deletions after V; applying it to the
/// dataset loaded at V gives the dataset loaded now.
async fn the_change_feed_lists_what_changed_after_a_version(store: Arc<dyn Store>) {
    store.ensure_tenant("t1").await.unwrap();
    let unknown = store.changes_since("nobody", 0).await.unwrap();
    assert_eq!(unknown, Some(Changes::default()));

    store
        .write(
            "t1",
            &[order("o1", 1), order("o2", 2), rep("r1", Some(5), "one")],
            false,
        )
        .await
        .unwrap();
    let (v1, at_v1) = store.load_versioned("t1").await.unwrap();
    assert_eq!(v1, 1);
    // Written, stale (changes nothing, bumps nothing), deleted.
    store.write("t1", &[order("o3", 3)], false).await.unwrap();
    assert_eq!(
        store
            .write("t1", &[rep("r1", Some(4), "older")], false)
            .await
            .unwrap(),
        [WriteOutcome::Stale]
    );
    store.write("t1", &[order("o2", 22)], false).await.unwrap();
    assert_eq!(
        store
            .delete("t1", RecordType::Order, &[s("o1"), s("nope")])
            .await
            .unwrap(),
        1
    );

    let changes = store
        .changes_since("t1", v1)
        .await
        .unwrap()
        .expect("not pruned");
    assert_eq!(changes.version, 4);
    assert_eq!(changes.deleted, [(RecordType::Order, s("o1"))]);
    assert_eq!(changes.upserts, [order("o2", 22), order("o3", 3)]);
    let mut caught_up = at_v1;
    caught_up.apply_changes(&changes.deleted, changes.upserts);
    assert_eq!(caught_up, store.load_dataset("t1").await.unwrap());

    // Everything since the beginning: every record as it is now.
    let all = store
        .changes_since("t1", 0)
        .await
        .unwrap()
        .expect("not pruned");
    // (Record types in declaration order, reps before orders; ids in order.)
    assert_eq!(
        all.upserts,
        [rep("r1", Some(5), "one"), order("o2", 22), order("o3", 3)]
    );
    assert_eq!(all.deleted, [(RecordType::Order, s("o1"))]);
    // Nothing after the current version.
    let none = store
        .changes_since("t1", 4)
        .await
        .unwrap()
        .expect("not pruned");
    assert_eq!(
        (none.version, none.deleted.len(), none.upserts.len()),
        (4, 0, 0)
    );

    // Re-created after its deletion: listed as written, not as deleted.
    store.write("t1", &[order("o1", 11)], false).await.unwrap();
    let again = store
        .changes_since("t1", 4)
        .await
        .unwrap()
        .expect("not pruned");
    assert_eq!((again.version, again.deleted.len()), (5, 0));
    assert_eq!(again.upserts, [order("o1", 11)]);
    // Other tenants see none of it.
    store.ensure_tenant("t2").await.unwrap();
    let other = store
        .changes_since("t2", 0)
        .await
        .unwrap()
        .expect("not pruned");
    assert_eq!(other, Changes::default());
}

/// A chain of 2 000 teams in one batch, each the parent of the next: the
/// first 100 levels are written; the 101st team (c100) is refused with a
/// clear reason, so c101, whose parent c100 is then unknown, starts a new
/// root, and so on — every 101st team refused, 19 in all. Each check walks
/// at most 100 levels, so the batch costs time in proportion to its size.
async fn team_trees_are_at_most_100_levels_deep(store: Arc<dyn Store>) {
    store.ensure_tenant("t1").await.unwrap();
    let chain: Vec<Record> = (0..2_000)
        .map(|i| {
            let parent = (i > 0).then(|| format!("c{}", i - 1));
            team(&format!("c{i}"), parent.as_deref())
        })
        .collect();
    let outcomes = store.write("t1", &chain, false).await.unwrap();
    let refused: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, WriteOutcome::Rejected { .. }))
        .map(|(i, _)| i)
        .collect();
    let expected: Vec<usize> = (0..2_000).filter(|i| i % 101 == 100).collect();
    assert_eq!(refused, expected);
    assert_eq!(refused.len(), 19);
    let WriteOutcome::Rejected { field, reason } = &outcomes[100] else {
        panic!("c100 is refused")
    };
    assert_eq!(field, "team.parent_team_id");
    assert!(
        reason.contains("at most 100 levels deep"),
        "a reason that names the limit: {reason}"
    );
    // Level 100 exactly is fine; a 101st level under it is not.
    assert_eq!(
        store
            .write("t1", &[team("leaf", Some("c99"))], false)
            .await
            .unwrap(),
        [WriteOutcome::Rejected {
            field: s("team.parent_team_id"),
            reason: s(
                "team \"leaf\" would be more than 100 levels deep under \"c99\"; team trees may be at most 100 levels deep"
            ),
        }]
    );
    assert_eq!(
        store
            .write("t1", &[team("leaf", Some("c98"))], false)
            .await
            .unwrap(),
        [WriteOutcome::Accepted]
    );
}
