//! IngestService and AdminService over real gRPC, on SQLite and (with
//! `TEST_DATABASE_URL`) PostgreSQL: round trips, idempotence, versions,
//! deletion, one case per validation rule, all-or-nothing batches, streaming
//! and tenant settings.

use prost_types::Timestamp;
use salesmetrics::config::ServeConfig;
use salesmetrics::proto::v1 as pb;
use salesmetrics::proto::v1::record::Record as R;
use tonic::Code;
use tonic_types::StatusExt;

use super::db;
use super::harness::{TestServer, backend_tests};

/// 2024-03-01T00:00:00Z.
const T0: i64 = 1_709_251_200;

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn usd(minor_units: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency_code: "USD".into(),
        minor_units,
    })
}

fn date(year: i32, month: i32, day: i32) -> Option<pb::Date> {
    Some(pb::Date { year, month, day })
}

fn rec(r: R) -> pb::Record {
    pb::Record { record: Some(r) }
}

fn team(id: &str, version: Option<i64>, name: &str, parent: &str) -> pb::Record {
    rec(R::Team(pb::Team {
        id: id.into(),
        version,
        name: name.into(),
        parent_team_id: parent.into(),
    }))
}

fn rep(id: &str, version: Option<i64>, name: &str) -> pb::Record {
    rec(R::Rep(pb::Rep {
        id: id.into(),
        version,
        name: name.into(),
        email: format!("{id}@example.com"),
    }))
}

fn order(id: &str, amount: i64) -> pb::Record {
    rec(R::Order(pb::Order {
        id: id.into(),
        amount: usd(amount),
        ordered_at: ts(T0),
        kind: pb::OrderKind::New as i32,
        customer_id: "c1".into(),
        rep_id: "r1".into(),
        deal_id: String::new(),
        ..Default::default()
    }))
}

/// One record of every type with every optional field set, already in the
/// normalised form the service stores (so export must return it unchanged).
fn one_of_each() -> Vec<pb::Record> {
    vec![
        team("t1", Some(1), "Team One", "t0"),
        rec(R::TeamMembership(pb::TeamMembership {
            id: "m1".into(),
            version: Some(2),
            rep_id: "r1".into(),
            team_id: "t1".into(),
            effective_at: Some(Timestamp {
                seconds: T0,
                nanos: 123_456_789,
            }),
        })),
        rep("r1", None, "Ann Example"),
        rec(R::Customer(pb::Customer {
            id: "c1".into(),
            acquired_at: ts(T0),
            churned_at: ts(T0 + 86_400),
            owner_rep_id: "r1".into(),
            source: "referral".into(),
            name: "ACME Corp".into(),
            ..Default::default()
        })),
        rec(R::Lead(pb::Lead {
            id: "l1".into(),
            source: "web".into(),
            created_at: ts(T0),
            owner_rep_id: "r1".into(),
            first_response_at: ts(T0 + 60),
            converted_at: ts(T0 + 3600),
            customer_id: "c1".into(),
            ..Default::default()
        })),
        rec(R::Deal(pb::Deal {
            id: "d1".into(),
            amount: usd(700_000),
            created_at: ts(T0),
            status: pb::DealStatus::Won as i32,
            closed_at: ts(T0 + 19 * 86_400),
            stage: "proposal".into(),
            owner_rep_id: "r1".into(),
            customer_id: "c1".into(),
            lead_id: "l1".into(),
            ..Default::default()
        })),
        rec(R::DealStageChange(pb::DealStageChange {
            id: "s1".into(),
            deal_id: "d1".into(),
            stage: "prospecting".into(),
            entered_at: ts(T0 + 1),
            ..Default::default()
        })),
        rec(R::Order(pb::Order {
            id: "o1".into(),
            amount: usd(12_345),
            ordered_at: ts(T0 + 2),
            kind: pb::OrderKind::CrossSell as i32,
            customer_id: "c1".into(),
            rep_id: "r1".into(),
            deal_id: "d1".into(),
            ..Default::default()
        })),
        rec(R::SubscriptionChange(pb::SubscriptionChange {
            id: "sc1".into(),
            subscription_id: "sub1".into(),
            customer_id: "c1".into(),
            mrr: usd(9_900),
            effective_at: ts(T0 + 3),
            ..Default::default()
        })),
        rec(R::Activity(pb::Activity {
            id: "a1".into(),
            rep_id: "r1".into(),
            r#type: pb::ActivityType::NetworkingEvent as i32,
            occurred_at: ts(T0 + 4),
            duration_seconds: Some(1800),
            lead_id: "l1".into(),
            deal_id: "d1".into(),
            customer_id: "c1".into(),
            ..Default::default()
        })),
        rec(R::Inquiry(pb::Inquiry {
            id: "i1".into(),
            channel: "email".into(),
            received_at: ts(T0 + 5),
            first_response_at: ts(T0 + 65),
            customer_id: "c1".into(),
            rep_id: "r1".into(),
            ..Default::default()
        })),
        rec(R::CsatResponse(pb::CsatResponse {
            id: "q1".into(),
            score: 4,
            responded_at: ts(T0 + 6),
            customer_id: "c1".into(),
            rep_id: "r1".into(),
            ..Default::default()
        })),
        rec(R::Target(pb::Target {
            id: "g1".into(),
            metric: pb::TargetMetric::Revenue as i32,
            value: 5_000_000,
            start_date: date(2024, 1, 1),
            end_date: date(2024, 4, 1),
            company: false,
            team_id: "t1".into(),
            rep_id: String::new(),
            ..Default::default()
        })),
        rec(R::Spend(pb::Spend {
            id: "p1".into(),
            category: pb::SpendCategory::Sales as i32,
            amount: usd(250_000),
            start_date: date(2024, 3, 1),
            end_date: date(2024, 4, 1),
            team_id: "t1".into(),
            ..Default::default()
        })),
    ]
}

/// The record type of a record, for export requests.
fn type_of(r: &pb::Record) -> pb::RecordType {
    use pb::RecordType as T;
    match r.record.as_ref() {
        Some(R::Team(_)) => T::Team,
        Some(R::TeamMembership(_)) => T::TeamMembership,
        Some(R::Rep(_)) => T::Rep,
        Some(R::Customer(_)) => T::Customer,
        Some(R::Lead(_)) => T::Lead,
        Some(R::Deal(_)) => T::Deal,
        Some(R::DealStageChange(_)) => T::DealStageChange,
        Some(R::Order(_)) => T::Order,
        Some(R::SubscriptionChange(_)) => T::SubscriptionChange,
        Some(R::Activity(_)) => T::Activity,
        Some(R::Inquiry(_)) => T::Inquiry,
        Some(R::CsatResponse(_)) => T::CsatResponse,
        Some(R::Target(_)) => T::Target,
        Some(R::Spend(_)) => T::Spend,
        None => T::Unspecified,
    }
}

async fn ingest(
    server: &TestServer,
    records: Vec<pb::Record>,
    all_or_nothing: bool,
) -> Result<pb::BatchResult, tonic::Status> {
    let response = server
        .ingest()
        .await
        .ingest_batch(pb::IngestBatchRequest {
            records,
            all_or_nothing,
        })
        .await?;
    Ok(response.into_inner().result.unwrap_or_default())
}

async fn export(server: &TestServer, record_type: pb::RecordType) -> Vec<pb::Record> {
    let mut stream = server
        .ingest()
        .await
        .export_records(pb::ExportRecordsRequest {
            record_type: record_type as i32,
        })
        .await
        .expect("export")
        .into_inner();
    let mut records = Vec::new();
    while let Some(page) = stream.message().await.expect("export page") {
        records.extend(page.records);
    }
    records
}

fn outcomes(result: &pb::BatchResult) -> Vec<pb::RecordOutcome> {
    result
        .results
        .iter()
        .map(|r| pb::RecordOutcome::try_from(r.outcome).unwrap_or_default())
        .collect()
}

backend_tests! {
    /// Every record type goes in and comes back out field for field; ingesting
    /// the same batch again changes nothing.
    #[tokio::test]
    async fn every_record_type_round_trips_and_reingest_is_a_no_op(server: TestServer) {
        let records = one_of_each();
        let result = ingest(&server, records.clone(), true)
            .await
            .expect("ingest");
        assert_eq!(result.accepted_count, 14, "{}", server.backend);
        assert_eq!((result.stale_count, result.rejected_count), (0, 0));
        for (i, r) in result.results.iter().enumerate() {
            assert_eq!(r.index as usize, i);
            assert_eq!(r.record_type, type_of(&records[i]) as i32);
        }
        for record in &records {
            let exported = export(&server, type_of(record)).await;
            assert_eq!(exported, vec![record.clone()], "{}", server.backend);
        }

        // Retrying the batch: versioned records are stale, the others are
        // replaced by themselves; the stored data is unchanged.
        let again = ingest(&server, records.clone(), false)
            .await
            .expect("re-ingest");
        assert_eq!(
            (
                again.accepted_count,
                again.stale_count,
                again.rejected_count
            ),
            (12, 2, 0)
        );
        for record in &records {
            assert_eq!(export(&server, type_of(record)).await, vec![record.clone()]);
        }
        server.stop().await;
    }
}

backend_tests! {
    /// A version not greater than the stored one is skipped as stale; a greater one wins.
    #[tokio::test]
    async fn versions_skip_stale_writes(server: TestServer) {
        ingest(&server, vec![rep("r1", Some(5), "Five")], false)
            .await
            .expect("v5");
        let result = ingest(
            &server,
            vec![rep("r1", Some(5), "Five again"), rep("r1", Some(4), "Four")],
            false,
        )
        .await
        .expect("stale");
        assert_eq!(
            outcomes(&result),
            [pb::RecordOutcome::Stale, pb::RecordOutcome::Stale],
            "{}",
            server.backend
        );
        assert_eq!(
            export(&server, pb::RecordType::Rep).await,
            vec![rep("r1", Some(5), "Five")]
        );

        let result = ingest(&server, vec![rep("r1", Some(6), "Six")], false)
            .await
            .expect("v6");
        assert_eq!(outcomes(&result), [pb::RecordOutcome::Accepted]);
        assert_eq!(
            export(&server, pb::RecordType::Rep).await,
            vec![rep("r1", Some(6), "Six")]
        );
        server.stop().await;
    }
}

backend_tests! {
    /// Deleting is idempotent and forgets the version, so the id can be recreated.
    #[tokio::test]
    async fn delete_is_idempotent_and_the_id_can_be_recreated(server: TestServer) {
        let mut client = server.ingest().await;
        ingest(
            &server,
            vec![rep("r1", Some(10), "Ann"), rep("r2", None, "Bob")],
            false,
        )
        .await
        .expect("ingest");
        let delete = |ids: Vec<&str>| pb::DeleteRecordsRequest {
            record_type: pb::RecordType::Rep as i32,
            ids: ids.into_iter().map(String::from).collect(),
        };
        let first = client
            .delete_records(delete(vec!["r1", "r2", "r3"]))
            .await
            .expect("delete");
        assert_eq!(first.into_inner().deleted_count, 2, "{}", server.backend);
        let second = client
            .delete_records(delete(vec!["r1", "r2", "r3"]))
            .await
            .expect("again");
        assert_eq!(second.into_inner().deleted_count, 0);
        assert!(export(&server, pb::RecordType::Rep).await.is_empty());

        let result = ingest(&server, vec![rep("r1", Some(1), "Ann")], false)
            .await
            .expect("recreate");
        assert_eq!(outcomes(&result), [pb::RecordOutcome::Accepted]);
        assert_eq!(
            export(&server, pb::RecordType::Rep).await,
            vec![rep("r1", Some(1), "Ann")]
        );

        let err = client
            .delete_records(pb::DeleteRecordsRequest {
                record_type: 0,
                ids: vec!["r1".into()],
            })
            .await
            .expect_err("type required");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(
            violations(&err),
            [("record_type".to_string(), "is required".to_string())]
        );
        let err = client
            .delete_records(delete(vec!["ok", "not ok"]))
            .await
            .expect_err("bad id");
        assert_eq!(violations(&err)[0].0, "ids[1]");

        let err = client
            .export_records(pb::ExportRecordsRequest { record_type: 0 })
            .await
            .expect_err("export type required");
        assert_eq!(violations(&err)[0].0, "record_type");
        server.stop().await;
    }
}

/// Export pages through more records than one page holds, in id order.
#[tokio::test]
async fn export_pages_through_every_record_in_id_order() {
    let server = TestServer::sqlite().await;
    let orders: Vec<pb::Record> = (0..1234)
        .map(|i| order(&format!("o{i:05}"), 100 + i))
        .collect();
    ingest(&server, orders.clone(), true).await.expect("ingest");
    assert_eq!(export(&server, pb::RecordType::Order).await, orders);
    server.stop().await;
}

/// (field path, reason) pairs of a status's `BadRequest` details.
fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|br| {
            br.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

fn with_order(f: impl FnOnce(&mut pb::Order)) -> pb::Record {
    let mut r = one_of_each().swap_remove(7);
    if let Some(R::Order(o)) = r.record.as_mut() {
        f(o);
    }
    r
}

fn with<M>(index: usize, pick: fn(&mut R) -> Option<&mut M>, f: impl FnOnce(&mut M)) -> pb::Record {
    let mut r = one_of_each().swap_remove(index);
    if let Some(m) = r.record.as_mut().and_then(pick) {
        f(m);
    }
    r
}

macro_rules! case {
    ($variant:ident, $idx:expr, |$m:ident| $body:expr) => {
        with(
            $idx,
            |r| match r {
                R::$variant(m) => Some(m),
                _ => None,
            },
            |$m: &mut pb::$variant| {
                $body;
            },
        )
    };
}

/// One case per validation rule: (record, field path at index 1, reason fragment).
fn rule_cases() -> Vec<(pb::Record, &'static str, &'static str)> {
    vec![
        (
            case!(Rep, 2, |m| m.id = String::new()),
            "records[1].rep.id",
            "is required",
        ),
        (
            case!(Rep, 2, |m| m.id = "x".repeat(129)),
            "records[1].rep.id",
            "at most 128 characters",
        ),
        (
            case!(Rep, 2, |m| m.id = "a/b".into()),
            "records[1].rep.id",
            "only A-Z",
        ),
        (
            case!(Deal, 5, |m| m.customer_id = "c 1".into()),
            "records[1].deal.customer_id",
            "only A-Z",
        ),
        (
            case!(Rep, 2, |m| m.name = " ".into()),
            "records[1].rep.name",
            "must not be blank",
        ),
        (
            case!(Team, 0, |m| m.name = String::new()),
            "records[1].team.name",
            "is required",
        ),
        (
            case!(Rep, 2, |m| m.email = "e".repeat(300)),
            "records[1].rep.email",
            "at most 256",
        ),
        (
            case!(TeamMembership, 1, |m| m.rep_id = String::new()),
            "records[1].team_membership.rep_id",
            "is required",
        ),
        (
            case!(TeamMembership, 1, |m| m.effective_at = None),
            "records[1].team_membership.effective_at",
            "is required",
        ),
        (
            case!(Customer, 3, |m| m.acquired_at = ts(946_684_799)),
            "records[1].customer.acquired_at",
            "2000-01-01T00:00:00Z",
        ),
        (
            case!(Customer, 3, |m| m.acquired_at = ts(4_102_444_800)),
            "records[1].customer.acquired_at",
            "2100-01-01T00:00:00Z",
        ),
        (
            with_order(|m| {
                m.ordered_at = Some(Timestamp {
                    seconds: T0,
                    nanos: 1_000_000_000,
                })
            }),
            "records[1].order.ordered_at",
            "nanos",
        ),
        (
            case!(Customer, 3, |m| m.churned_at = ts(T0 - 1)),
            "records[1].customer.churned_at",
            "must not be before acquired_at",
        ),
        (
            case!(Lead, 4, |m| m.source = "  ".into()),
            "records[1].lead.source",
            "is required",
        ),
        (
            case!(Lead, 4, |m| m.first_response_at = ts(T0 - 1)),
            "records[1].lead.first_response_at",
            "must not be before created_at",
        ),
        (
            case!(Lead, 4, |m| m.converted_at = ts(T0 - 1)),
            "records[1].lead.converted_at",
            "must not be before created_at",
        ),
        (
            case!(Deal, 5, |m| m.amount = None),
            "records[1].deal.amount",
            "is required",
        ),
        (
            case!(Deal, 5, |m| m.amount = Some(pb::Money {
                currency_code: "EUR".into(),
                minor_units: 1
            })),
            "records[1].deal.amount.currency_code",
            "tenant's currency USD",
        ),
        (
            case!(Deal, 5, |m| m.amount = usd(-1)),
            "records[1].deal.amount",
            ">= 0",
        ),
        (
            case!(Deal, 5, |m| m.status = 0),
            "records[1].deal.status",
            "is required",
        ),
        (
            case!(Deal, 5, |m| m.status = 17),
            "records[1].deal.status",
            "unknown value 17",
        ),
        (
            case!(Deal, 5, |m| m.closed_at = None),
            "records[1].deal.closed_at",
            "required when the status is WON or LOST",
        ),
        (
            case!(Deal, 5, |m| m.status = pb::DealStatus::Open as i32),
            "records[1].deal.closed_at",
            "must be absent while the deal is OPEN",
        ),
        (
            case!(Deal, 5, |m| m.closed_at = ts(T0 - 1)),
            "records[1].deal.closed_at",
            "must not be before created_at",
        ),
        (
            case!(DealStageChange, 6, |m| m.stage = String::new()),
            "records[1].deal_stage_change.stage",
            "is required",
        ),
        (
            case!(DealStageChange, 6, |m| m.deal_id = String::new()),
            "records[1].deal_stage_change.deal_id",
            "is required",
        ),
        (
            with_order(|m| m.amount = usd(0)),
            "records[1].order.amount",
            "> 0",
        ),
        (
            with_order(|m| m.kind = 9),
            "records[1].order.kind",
            "unknown value 9",
        ),
        (
            case!(SubscriptionChange, 8, |m| m.mrr = usd(-1)),
            "records[1].subscription_change.mrr",
            ">= 0",
        ),
        (
            case!(SubscriptionChange, 8, |m| m.customer_id = String::new()),
            "records[1].subscription_change.customer_id",
            "is required",
        ),
        (
            case!(Activity, 9, |m| m.r#type = 0),
            "records[1].activity.type",
            "is required",
        ),
        (
            case!(Activity, 9, |m| m.duration_seconds = Some(-5)),
            "records[1].activity.duration_seconds",
            ">= 0",
        ),
        (
            case!(Inquiry, 10, |m| m.channel = String::new()),
            "records[1].inquiry.channel",
            "is required",
        ),
        (
            case!(Inquiry, 10, |m| m.first_response_at = ts(T0)),
            "records[1].inquiry.first_response_at",
            "must not be before received_at",
        ),
        (
            case!(CsatResponse, 11, |m| m.score = 0),
            "records[1].csat_response.score",
            "within 1..=5",
        ),
        (
            case!(CsatResponse, 11, |m| m.score = 6),
            "records[1].csat_response.score",
            "within 1..=5",
        ),
        (
            case!(Target, 12, |m| m.metric = 0),
            "records[1].target.metric",
            "is required",
        ),
        (
            case!(Target, 12, |m| m.value = -1),
            "records[1].target.value",
            ">= 0",
        ),
        (
            case!(Target, 12, |m| m.team_id = String::new()),
            "records[1].target",
            "none is set",
        ),
        (
            case!(Target, 12, |m| m.rep_id = "r1".into()),
            "records[1].target",
            "several are set",
        ),
        (
            case!(Target, 12, |m| m.end_date = date(2024, 1, 1)),
            "records[1].target.end_date",
            "must be after start_date",
        ),
        (
            case!(Target, 12, |m| m.start_date = date(2023, 2, 29)),
            "records[1].target.start_date",
            "not a valid calendar date",
        ),
        (
            case!(Spend, 13, |m| m.category = 0),
            "records[1].spend.category",
            "is required",
        ),
        (
            case!(Spend, 13, |m| m.amount = usd(-1)),
            "records[1].spend.amount",
            ">= 0",
        ),
        (
            case!(Spend, 13, |m| m.end_date = date(2024, 3, 1)),
            "records[1].spend.end_date",
            "must be after start_date",
        ),
        (pb::Record { record: None }, "records[1]", "is empty"),
    ]
}

backend_tests! {
    /// Every rule reports its own field path, both as a per-record rejection and
    /// as `BadRequest` details of an all-or-nothing batch.
    #[tokio::test]
    async fn each_validation_rule_reports_its_field_path(server: TestServer) {
        for (record, path, reason) in rule_cases() {
            let batch = vec![order("ok", 1), record];
            let result = ingest(&server, batch.clone(), false)
                .await
                .expect("mixed batch");
            let rejected = &result.results[1];
            assert_eq!(
                rejected.outcome,
                pb::RecordOutcome::Rejected as i32,
                "{path}"
            );
            assert_eq!(rejected.field_path, path);
            assert!(
                rejected.reason.contains(reason),
                "{path}: {:?}",
                rejected.reason
            );

            let err = ingest(&server, batch, true).await.expect_err(path);
            assert_eq!(err.code(), Code::InvalidArgument);
            let v = violations(&err);
            assert_eq!(v.len(), 1, "{path}: {v:?}");
            assert_eq!(v[0].0, path);
            assert!(v[0].1.contains(reason), "{path}: {:?}", v[0].1);
        }
        server.stop().await;
    }
}

/// Categories are trimmed and lower-cased on ingest.
#[tokio::test]
async fn categories_are_normalised() {
    let server = TestServer::sqlite().await;
    let lead = case!(Lead, 4, |m| m.source = "  Web ".into());
    ingest(&server, vec![lead], true).await.expect("ingest");
    let exported = export(&server, pb::RecordType::Lead).await;
    let Some(R::Lead(lead)) = exported.first().and_then(|r| r.record.clone()) else {
        panic!("one lead exported: {exported:?}");
    };
    assert_eq!(lead.source, "web");
    server.stop().await;
}

backend_tests! {
    /// A mixed batch commits its valid records and reports the invalid ones.
    #[tokio::test]
    async fn a_mixed_batch_commits_the_valid_records(server: TestServer) {
        let batch = vec![
            order("o1", 100),
            order("o2", 0),
            order("o3", 300),
            pb::Record { record: None },
        ];
        let result = ingest(&server, batch, false).await.expect("ingest");
        assert_eq!(
            (
                result.accepted_count,
                result.stale_count,
                result.rejected_count
            ),
            (2, 0, 2),
            "{}",
            server.backend
        );
        let r = &result.results[1];
        assert_eq!((r.index, r.id.as_str()), (1, "o2"));
        assert_eq!(r.record_type, pb::RecordType::Order as i32);
        assert_eq!(r.field_path, "records[1].order.amount");
        assert_eq!(
            result.results[3].record_type,
            pb::RecordType::Unspecified as i32
        );
        assert_eq!(result.results[3].field_path, "records[3]");
        let stored = export(&server, pb::RecordType::Order).await;
        assert_eq!(stored, vec![order("o1", 100), order("o3", 300)]);
        server.stop().await;
    }
}

backend_tests! {
    /// With all_or_nothing, one invalid record fails the batch with a
    /// `BadRequest` violation per invalid record, and nothing is stored.
    #[tokio::test]
    async fn all_or_nothing_rejects_the_whole_batch(server: TestServer) {
        let batch = vec![
            order("o1", 100),
            order("o2", -1),
            order("o3", 300),
            with_order(|m| m.ordered_at = None),
        ];
        let err = ingest(&server, batch, true)
            .await
            .expect_err("invalid batch");
        assert_eq!(err.code(), Code::InvalidArgument, "{}", server.backend);
        let fields: Vec<String> = violations(&err).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            ["records[1].order.amount", "records[3].order.ordered_at"]
        );
        assert!(export(&server, pb::RecordType::Order).await.is_empty());
        server.stop().await;
    }
}

/// Thousands of invalid records in an all_or_nothing batch: the details list
/// the first ones and the total, so the status still fits in its header.
#[tokio::test]
async fn many_invalid_records_are_summarised_in_the_details() {
    let server = TestServer::sqlite().await;
    let batch: Vec<pb::Record> = (0..5000).map(|i| order(&format!("o{i}"), 0)).collect();
    let err = ingest(&server, batch, true)
        .await
        .expect_err("invalid batch");
    assert_eq!(err.code(), Code::InvalidArgument);
    let v = violations(&err);
    assert_eq!(v.len(), 50);
    assert_eq!(v[0].0, "records[0].order.amount");
    assert_eq!(
        v[49],
        (
            "records".to_string(),
            "5000 records are invalid; only the first 49 are listed".to_string()
        )
    );
    server.stop().await;
}

backend_tests! {
    /// A team write that would close a cycle is rejected by the store, with the
    /// path of the parent field; under all_or_nothing the batch fails.
    #[tokio::test]
    async fn a_team_cycle_is_rejected(server: TestServer) {
        ingest(&server, vec![team("a", None, "A", "b")], true)
            .await
            .expect("a under b");
        let batch = vec![rep("r9", None, "Zed"), team("b", None, "B", "a")];
        let result = ingest(&server, batch.clone(), false).await.expect("cycle");
        assert_eq!(
            outcomes(&result),
            [pb::RecordOutcome::Accepted, pb::RecordOutcome::Rejected],
            "{}",
            server.backend
        );
        assert_eq!(
            result.results[1].field_path,
            "records[1].team.parent_team_id"
        );

        let batch = vec![rep("r8", None, "Yan"), team("b", None, "B", "a")];
        let err = ingest(&server, batch, true)
            .await
            .expect_err("cycle, all or nothing");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(violations(&err)[0].0, "records[1].team.parent_team_id");
        let reps: Vec<String> = export(&server, pb::RecordType::Rep)
            .await
            .into_iter()
            .filter_map(|r| match r.record {
                Some(R::Rep(rep)) => Some(rep.id),
                _ => None,
            })
            .collect();
        assert_eq!(reps, ["r9"]);
        server.stop().await;
    }
}

backend_tests! {
    /// Twenty batches on one stream are acknowledged one each, in order; a batch
    /// refused under all_or_nothing is acknowledged with its rejections and the
    /// stream goes on.
    #[tokio::test]
    async fn the_stream_acknowledges_every_batch_in_order(server: TestServer) {
        let requests: Vec<pb::StreamIngestRequest> = (0..20)
            .map(|b| {
                let mut records: Vec<pb::Record> = (0..5)
                    .map(|i| order(&format!("o{b:02}-{i}"), 10 + i))
                    .collect();
                if b == 7 {
                    records[2] = order("bad", 0);
                }
                pb::StreamIngestRequest {
                    sequence: 100 + b,
                    records,
                    all_or_nothing: b == 7,
                }
            })
            .collect();
        let mut acks = server
            .ingest()
            .await
            .stream_ingest(tokio_stream::iter(requests))
            .await
            .expect("stream")
            .into_inner();
        let mut sequences = Vec::new();
        while let Some(ack) = acks.message().await.expect("ack") {
            let result = ack.result.unwrap_or_default();
            if ack.sequence == 107 {
                assert_eq!((result.accepted_count, result.rejected_count), (0, 5));
                assert_eq!(result.results[2].field_path, "records[2].order.amount");
            } else {
                assert_eq!(
                    result.accepted_count, 5,
                    "{}: batch {}",
                    server.backend, ack.sequence
                );
            }
            sequences.push(ack.sequence);
        }
        assert_eq!(sequences, (100..120).collect::<Vec<_>>());
        assert_eq!(export(&server, pb::RecordType::Order).await.len(), 95);
        server.stop().await;
    }
}

/// A batch above the configured size is refused as a whole.
#[tokio::test]
async fn an_oversize_batch_is_rejected() {
    let (dir, url) = db::fresh_sqlite().await;
    let mut config = ServeConfig::for_database("");
    config.max_batch_size = 3;
    let server = TestServer::start("sqlite", url, config, Some(dir)).await;
    let batch: Vec<pb::Record> = (0..4).map(|i| order(&format!("o{i}"), 1)).collect();
    let err = ingest(&server, batch.clone(), false)
        .await
        .expect_err("oversize");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(err.message(), "batch has 4 records; the limit is 3");
    assert!(export(&server, pb::RecordType::Order).await.is_empty());
    let ok = ingest(&server, batch[..3].to_vec(), false)
        .await
        .expect("at the limit");
    assert_eq!(ok.accepted_count, 3);

    // On a stream the oversize batch is acknowledged as rejected and the
    // stream goes on.
    let requests = vec![
        pb::StreamIngestRequest {
            sequence: 1,
            records: batch.clone(),
            all_or_nothing: false,
        },
        pb::StreamIngestRequest {
            sequence: 2,
            records: batch[..1].to_vec(),
            all_or_nothing: false,
        },
    ];
    let mut acks = server
        .ingest()
        .await
        .stream_ingest(tokio_stream::iter(requests))
        .await
        .expect("stream")
        .into_inner();
    let first = acks.message().await.expect("ack 1").expect("ack 1 present");
    let first = first.result.unwrap_or_default();
    assert_eq!((first.accepted_count, first.rejected_count), (0, 4));
    assert_eq!(first.results[0].field_path, "records");
    assert_eq!(
        first.results[0].reason,
        "batch has 4 records; the limit is 3"
    );
    let second = acks.message().await.expect("ack 2").expect("ack 2 present");
    assert_eq!(
        (
            second.sequence,
            second.result.unwrap_or_default().accepted_count
        ),
        (2, 1)
    );
    assert!(acks.message().await.expect("end").is_none());
    server.stop().await;
}

/// A request message above `max_message_bytes` is RESOURCE_EXHAUSTED (a
/// limit), on the unary call and on a stream, and stores nothing; a delete
/// with more ids than `max_batch_size` is RESOURCE_EXHAUSTED too.
#[tokio::test]
async fn an_oversize_message_is_resource_exhausted() {
    use prost::Message as _;
    let (dir, url) = db::fresh_sqlite().await;
    let mut config = ServeConfig::for_database("");
    config.max_message_bytes = 2048;
    config.max_batch_size = 3;
    let server = TestServer::start("sqlite", url, config, Some(dir)).await;
    let request = pb::IngestBatchRequest {
        records: (0..60).map(|i| order(&format!("o{i}"), 1)).collect(),
        all_or_nothing: false,
    };
    let size = request.encoded_len();
    assert!(size > 2048, "the request must exceed the limit: {size}");
    let err = server
        .ingest()
        .await
        .ingest_batch(request.clone())
        .await
        .expect_err("oversize message");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(
        err.message(),
        format!("request message of {size} bytes exceeds the limit of 2048 bytes")
    );

    let streamed = pb::StreamIngestRequest {
        sequence: 1,
        records: request.records,
        all_or_nothing: false,
    };
    let size = streamed.encoded_len();
    let mut acks = server
        .ingest()
        .await
        .stream_ingest(tokio_stream::iter(vec![streamed]))
        .await
        .expect("stream opens")
        .into_inner();
    let err = acks
        .message()
        .await
        .expect_err("oversize batch on a stream");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(
        err.message(),
        format!("request message of {size} bytes exceeds the limit of 2048 bytes")
    );
    assert!(export(&server, pb::RecordType::Order).await.is_empty());

    let err = server
        .ingest()
        .await
        .delete_records(pb::DeleteRecordsRequest {
            record_type: pb::RecordType::Order as i32,
            ids: vec!["a".into(), "b".into(), "c".into(), "d".into()],
        })
        .await
        .expect_err("too many ids");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(err.message(), "request has 4 ids; the limit is 3");
    server.stop().await;
}

backend_tests! {
    /// Settings: defaults, a validated update (normalised), every invalid field
    /// reported, unknown tenants NOT_FOUND, and the currency used by ingest.
    #[tokio::test]
    async fn admin_settings_get_update_and_validate(server: TestServer) {
        let mut admin = server.admin().await;
        let got = admin
            .get_tenant_settings(pb::GetTenantSettingsRequest::default())
            .await
            .expect("get")
            .into_inner();
        assert_eq!(got.tenant_id, "default", "{}", server.backend);
        let defaults = got.settings.unwrap_or_default();
        assert_eq!(defaults.time_zone, "UTC");
        assert_eq!(defaults.currency_code, "USD");
        assert_eq!(defaults.fiscal_year_start_month, 1);
        assert_eq!(defaults.pipeline_stages.len(), 4);
        assert_eq!(defaults.gross_margin, 1.0);
        assert_eq!(defaults.csat_satisfied_min_score, 4);
        assert_eq!(defaults.referral_sources, ["referral"]);

        let mut wanted = defaults.clone();
        wanted.time_zone = "Europe/Berlin".into();
        wanted.currency_code = "EUR".into();
        wanted.fiscal_year_start_month = 4;
        wanted.pipeline_stages = vec![
            pb::PipelineStage {
                name: " Discovery ".into(),
                win_probability: 0.05,
            },
            pb::PipelineStage {
                name: "Closing".into(),
                win_probability: 0.9,
            },
        ];
        wanted.gross_margin = 0.7;
        wanted.csat_satisfied_min_score = 5;
        wanted.referral_sources = vec!["Partner ".into()];
        let updated = admin
            .update_tenant_settings(pb::UpdateTenantSettingsRequest {
                tenant_id: String::new(),
                settings: Some(wanted),
            })
            .await
            .expect("update")
            .into_inner()
            .settings
            .unwrap_or_default();
        assert_eq!(updated.pipeline_stages[0].name, "discovery");
        assert_eq!(updated.pipeline_stages[1].name, "closing");
        assert_eq!(updated.referral_sources, ["partner"]);
        let reread = admin
            .get_tenant_settings(pb::GetTenantSettingsRequest {
                tenant_id: "default".into(),
            })
            .await
            .expect("get again")
            .into_inner()
            .settings
            .unwrap_or_default();
        assert_eq!(reread, updated);

        // Money must now be in EUR.
        let result = ingest(&server, vec![order("o1", 100)], false)
            .await
            .expect("ingest");
        assert_eq!(
            result.results[0].field_path,
            "records[0].order.amount.currency_code"
        );

        let mut bad = updated.clone();
        bad.pipeline_stages[1].win_probability = 1.5;
        bad.currency_code = "EURO".into();
        let err = admin
            .update_tenant_settings(pb::UpdateTenantSettingsRequest {
                tenant_id: String::new(),
                settings: Some(bad),
            })
            .await
            .expect_err("invalid settings");
        assert_eq!(err.code(), Code::InvalidArgument);
        let fields: Vec<String> = violations(&err).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "settings.currency_code",
                "settings.pipeline_stages[1].win_probability"
            ]
        );
        let err = admin
            .update_tenant_settings(pb::UpdateTenantSettingsRequest::default())
            .await
            .expect_err("missing settings");
        assert_eq!(violations(&err)[0].0, "settings");

        let err = admin
            .get_tenant_settings(pb::GetTenantSettingsRequest {
                tenant_id: "nobody".into(),
            })
            .await
            .expect_err("unknown tenant");
        assert_eq!(err.code(), Code::NotFound);
        let err = admin
            .update_tenant_settings(pb::UpdateTenantSettingsRequest {
                tenant_id: "nobody".into(),
                settings: Some(defaults),
            })
            .await
            .expect_err("unknown tenant");
        assert_eq!(err.code(), Code::NotFound);
        server.stop().await;
    }
}
