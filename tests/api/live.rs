//! Live KPI snapshots: a cached snapshot catches up through the store's
//! change feed instead of reloading its tenant, on SQLite and (with
//! `TEST_DATABASE_URL`) PostgreSQL. Each scenario writes through one store
//! and reads through a cache over a second store on the same database, as a
//! second server would; every caught-up snapshot must equal a fresh load.

use std::sync::Arc;
use std::time::Duration;

use salesmetrics::domain::{ActivityType, Dataset, Record, RecordType};
use salesmetrics::metrics::Metrics;
use salesmetrics::snapshot::{CacheLimits, Refreshes, SnapshotCache};
use salesmetrics::store::{Store, StoreOptions, connect_with};
use salesmetrics_core::testkit::{build, rich};

/// Runs each scenario (an `async fn(writer, reader_url, options)`) per
/// backend, as `live::sqlite::<name>` and `live::postgres::<name>`.
macro_rules! live_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, url) = crate::db::fresh_sqlite().await;
                    super::$name(url).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(url) = crate::db::fresh_postgres().await else { return };
                    super::$name(url.clone()).await;
                    crate::db::drop_postgres(&url).await;
                }
            )*
        }
    };
}

live_suite!(
    a_second_server_catches_up_through_the_feed,
    pruned_deletions_fall_back_to_a_full_load,
    a_load_during_writes_is_one_snapshot,
    warming_loads_the_most_written_tenants_first,
);

const TENANT: &str = "live";

/// One step of a history: records written, then (type, id) deleted.
type Step = (Vec<Record>, Vec<(RecordType, String)>);

async fn store(url: &str, retention: Duration) -> Arc<dyn Store> {
    connect_with(
        url,
        StoreOptions {
            tombstone_retention: retention,
            ..StoreOptions::default()
        },
    )
    .await
    .expect("connect")
}

/// The cache's snapshot of the tenant equals what a fresh load reads.
async fn assert_current(cache: &SnapshotCache, store: &dyn Store) {
    let snapshot = cache.get(TENANT).await.expect("snapshot");
    let (version, fresh): (i64, Dataset) = store.load_versioned(TENANT).await.expect("load");
    assert_eq!(snapshot.version, version);
    assert!(
        snapshot.snapshot.to_dataset() == fresh,
        "the caught-up snapshot equals a fresh load at version {version}"
    );
}

async fn a_second_server_catches_up_through_the_feed(url: String) {
    let week = Duration::from_secs(7 * 24 * 3600);
    let writer = store(&url, week).await;
    writer.ensure_tenant(TENANT).await.expect("tenant");
    writer
        .write(TENANT, &rich::records(), false)
        .await
        .expect("the rich fixture");
    let reader = store(&url, week).await;
    let cache = SnapshotCache::new(reader.clone(), 4);
    assert_current(&cache, reader.as_ref()).await;
    assert_eq!(
        cache.refreshes(),
        Refreshes {
            full_loads: 1,
            catch_ups: 0
        }
    );

    // A write, a replacement, a delete and a re-creation, each followed by
    // a query: every query catches up, none reloads.
    let order = RecordType::Order;
    let steps: [Step; 4] = [
        (
            vec![build::sale(
                "live-o1",
                700,
                "2024-03-05T10:00:00Z",
                Some("r1"),
            )],
            vec![],
        ),
        (
            vec![build::sale(
                "live-o1",
                900,
                "2024-03-06T10:00:00Z",
                Some("r2"),
            )],
            vec![],
        ),
        (vec![], vec![(order, "live-o1".to_string())]),
        (
            vec![
                build::sale("live-o1", 50, "2024-03-07T10:00:00Z", None),
                build::rep("live-r9"),
            ],
            vec![],
        ),
    ];
    for (i, (upserts, deletes)) in steps.into_iter().enumerate() {
        if !upserts.is_empty() {
            writer.write(TENANT, &upserts, false).await.expect("write");
        }
        for (record_type, id) in deletes {
            assert_eq!(
                writer
                    .delete(TENANT, record_type, &[id])
                    .await
                    .expect("delete"),
                1
            );
        }
        assert_current(&cache, reader.as_ref()).await;
        assert_eq!(
            cache.refreshes(),
            Refreshes {
                full_loads: 1,
                catch_ups: i as u64 + 1
            },
            "step {i}"
        );
    }
    // Nothing new: the cached snapshot is used as it is.
    assert_current(&cache, reader.as_ref()).await;
    assert_eq!(cache.refreshes().catch_ups, 4);
}

async fn pruned_deletions_fall_back_to_a_full_load(url: String) {
    // No retention: a deletion is pruned by the tenant's next deletion.
    let writer = store(&url, Duration::ZERO).await;
    writer.ensure_tenant(TENANT).await.expect("tenant");
    writer
        .write(TENANT, &rich::records(), false)
        .await
        .expect("the rich fixture");
    let extra = [
        build::sale("gone-1", 10, "2024-03-05T10:00:00Z", None),
        build::sale("gone-2", 20, "2024-03-05T11:00:00Z", None),
    ];
    writer.write(TENANT, &extra, false).await.expect("extra");
    let cache = SnapshotCache::new(writer.clone(), 4);
    assert_current(&cache, writer.as_ref()).await;

    // The first deletion's tombstone is pruned by the second deletion, so
    // the snapshot from before both cannot catch up: it reloads, exactly.
    let delete = |id: &str| vec![id.to_string()];
    assert_eq!(
        writer
            .delete(TENANT, RecordType::Order, &delete("gone-1"))
            .await
            .unwrap(),
        1
    );
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(
        writer
            .delete(TENANT, RecordType::Order, &delete("gone-2"))
            .await
            .unwrap(),
        1
    );
    assert_current(&cache, writer.as_ref()).await;
    assert_eq!(
        cache.refreshes(),
        Refreshes {
            full_loads: 2,
            catch_ups: 0
        }
    );
    // From that fresh snapshot on, catching up works again.
    writer
        .write(
            TENANT,
            &[build::sale("new-1", 5, "2024-03-05T12:00:00Z", None)],
            false,
        )
        .await
        .expect("write");
    assert_current(&cache, writer.as_ref()).await;
    assert_eq!(cache.refreshes().catch_ups, 1);
}

async fn warming_loads_the_most_written_tenants_first(url: String) {
    let writer = store(&url, Duration::from_secs(3600)).await;
    // Written once, three times and twice (each write is one data
    // version); "idle" has no records at all.
    let writes = [("once", 1), ("thrice", 3), ("twice", 2), ("idle", 0)];
    for (tenant, times) in writes {
        writer.ensure_tenant(tenant).await.expect("tenant");
        for i in 0..times {
            let id = format!("{tenant}-o{i}");
            let order = build::sale(&id, 10, "2024-03-05T10:00:00Z", None);
            writer.write(tenant, &[order], false).await.expect("write");
        }
    }
    let reader = store(&url, Duration::from_secs(3600)).await;
    assert_eq!(
        reader.most_written_tenants(10).await.expect("list"),
        ["thrice", "twice", "once"],
        "busiest first; a tenant without records is not listed"
    );

    // Two tenants warmed: the two busiest, the busiest last, each one full
    // load.
    let cache = SnapshotCache::new(reader.clone(), 4);
    assert_eq!(cache.warm(2).await.expect("warm"), ["twice", "thrice"]);
    assert_eq!(
        cache.refreshes(),
        Refreshes {
            full_loads: 2,
            catch_ups: 0
        }
    );
    // Their first queries use the warmed snapshots (no load, 3 and 2
    // orders); the unwarmed tenant's first query loads it.
    for (tenant, orders) in [("thrice", 3), ("twice", 2)] {
        let snapshot = cache.get(tenant).await.expect("snapshot");
        assert_eq!(snapshot.snapshot.to_dataset().orders.len(), orders);
    }
    assert_eq!(cache.refreshes().full_loads, 2);
    cache.get("once").await.expect("snapshot");
    assert_eq!(cache.refreshes().full_loads, 3);

    // Never more than the cache keeps: a cache of one warms one tenant.
    let small = SnapshotCache::new(reader.clone(), 1);
    assert_eq!(small.warm(5).await.expect("warm"), ["thrice"]);
    // A byte budget that holds one snapshot keeps the busiest: it was
    // loaded last, so the least recently used tenant dropped is another.
    let budget = SnapshotCache::with_limits(
        reader.clone(),
        CacheLimits {
            tenants: 4,
            bytes: 1,
        },
        Arc::new(Metrics::new()),
    );
    assert_eq!(
        budget.warm(3).await.expect("warm"),
        ["once", "twice", "thrice"]
    );
    assert_eq!(budget.len(), 1);
    budget.get("thrice").await.expect("snapshot");
    assert_eq!(
        budget.refreshes().full_loads,
        3,
        "the busiest is still cached"
    );
    // A cache that keeps nothing warms nothing.
    let none = SnapshotCache::new(reader, 0);
    assert!(none.warm(5).await.expect("warm").is_empty());
    assert_eq!(none.refreshes().full_loads, 0);
}

// ---- over gRPC: concurrent writers and queriers ------------------------------

mod concurrent {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use salesmetrics::proto::v1 as pb;
    use salesmetrics::proto::v1::record::Record as R;

    use crate::harness::{TestServer, backend_tests};

    const WRITERS: usize = 3;
    const BATCHES: usize = 12;
    const QUERIERS: usize = 3;
    const QUERIES: usize = 15;

    /// An order of 100 on 2024-03-10 (every order of the test is in March).
    fn order(id: String) -> pb::Record {
        pb::Record {
            record: Some(R::Order(pb::Order {
                id,
                amount: Some(pb::Money {
                    currency_code: "USD".into(),
                    minor_units: 100,
                }),
                ordered_at: Some(prost_types::Timestamp {
                    seconds: 1_710_028_800,
                    nanos: 0,
                }),
                ..Default::default()
            })),
        }
    }

    /// Orders in March 2024, COMPANY, as the server answers now.
    async fn march_orders(server: &TestServer) -> i64 {
        let bundle = server
            .kpi()
            .await
            .get_kpis(pb::GetKpisRequest {
                scope: None,
                period: Some(pb::Period {
                    period: Some(pb::period::Period::Calendar(pb::CalendarPeriod {
                        granularity: pb::Granularity::Month as i32,
                        date: Some(pb::Date {
                            year: 2024,
                            month: 3,
                            day: 1,
                        }),
                    })),
                }),
                kpi_ids: vec!["orders".into()],
                comparison: 0,
                time_zone: String::new(),
            })
            .await
            .expect("GetKpis")
            .into_inner()
            .bundle
            .expect("a bundle");
        bundle.values[0].exact_value.expect("a count")
    }

    backend_tests! {
        /// Writers stream batches while queriers ask for the order count:
        /// every answer counts at least every batch acknowledged before the
        /// query was sent and at most those sent before its answer came (a
        /// query never sees part of a batch, never misses an acknowledged
        /// one), while each refresh catches up through the change feed.
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn answers_reflect_every_acknowledged_batch(server: TestServer) {
            let server = Arc::new(server);
            let acked = Arc::new(AtomicI64::new(0));
            let sent = Arc::new(AtomicI64::new(0));
            let mut writers = Vec::new();
            for w in 0..WRITERS {
                let (server, acked, sent) = (server.clone(), acked.clone(), sent.clone());
                writers.push(tokio::spawn(async move {
                    let mut ingest = server.ingest().await;
                    for b in 0..BATCHES {
                        // 1 to 5 orders a batch, differing per writer and batch.
                        let size = 1 + (w * 7 + b * 3) % 5;
                        let records: Vec<pb::Record> =
                            (0..size).map(|i| order(format!("w{w}-b{b}-{i}"))).collect();
                        sent.fetch_add(size as i64, Ordering::SeqCst);
                        let result = ingest
                            .ingest_batch(pb::IngestBatchRequest {
                                records,
                                all_or_nothing: true,
                            })
                            .await
                            .expect("IngestBatch")
                            .into_inner()
                            .result
                            .expect("a batch result");
                        assert_eq!(result.accepted_count as usize, size);
                        acked.fetch_add(size as i64, Ordering::SeqCst);
                    }
                }));
            }
            let mut queriers = Vec::new();
            for _ in 0..QUERIERS {
                let (server, acked, sent) = (server.clone(), acked.clone(), sent.clone());
                queriers.push(tokio::spawn(async move {
                    for _ in 0..QUERIES {
                        let at_least = acked.load(Ordering::SeqCst);
                        let answer = march_orders(&server).await;
                        let at_most = sent.load(Ordering::SeqCst);
                        assert!(
                            (at_least..=at_most).contains(&answer),
                            "{}: {answer} orders, acknowledged {at_least}, sent {at_most}",
                            server.backend
                        );
                    }
                }));
            }
            for task in writers.into_iter().chain(queriers) {
                task.await.expect("task");
            }
            let total = acked.load(Ordering::SeqCst);
            assert_eq!(march_orders(&server).await, total);
            if let Ok(server) = Arc::try_unwrap(server) {
                server.stop().await;
            }
        }
    }
}

/// A full load taken while another connection writes is one snapshot: it
/// holds exactly the records of the version it reports. Each write adds one
/// order and one activity (record types a parallel load may read on
/// different connections) and raises the tenant's version by one.
async fn a_load_during_writes_is_one_snapshot(url: String) {
    const WRITES: usize = 60;
    let week = Duration::from_secs(7 * 24 * 3600);
    let writer = store(&url, week).await;
    writer.ensure_tenant(TENANT).await.expect("tenant");
    let base = writer
        .data_version(TENANT)
        .await
        .expect("version")
        .unwrap_or(0);
    let reader = store(&url, week).await;
    let writing = tokio::spawn({
        let writer = writer.clone();
        async move {
            for i in 0..WRITES {
                let at = "2024-03-05T10:00:00Z";
                let records = vec![
                    build::sale(&format!("o{i}"), 100, at, None),
                    build::activity(&format!("a{i}"), "r1", ActivityType::Call, at, None),
                ];
                writer.write(TENANT, &records, false).await.expect("write");
            }
        }
    });
    let mut loads = 0;
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let done = writing.is_finished();
        let (version, data) = reader.load_versioned(TENANT).await.expect("load");
        let writes = usize::try_from(version - base).expect("a version at or after the start");
        assert_eq!(data.orders.len(), writes, "orders at version {version}");
        assert_eq!(
            data.activities.len(),
            writes,
            "activities at version {version}"
        );
        seen.insert(version);
        loads += 1;
        if done {
            break;
        }
    }
    writing.await.expect("the writer");
    assert_eq!(seen.last(), Some(&(base + WRITES as i64)));
    assert!(loads > 1, "loads ran during the writes");
}
