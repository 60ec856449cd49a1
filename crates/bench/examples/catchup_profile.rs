//! What a KPI snapshot catch-up costs at a given scale, for one changed
//! record of each of the large families (orders, activities, leads, deals)
//! and of the organisation: copying the family's records with the change
//! merged in and re-indexing that family (the other families are shared),
//! and dropping the result. Pin it to one core (`taskset -c 0`)
//! to see what the parallel copy and build save. Run it in a release build:
//!
//! ```sh
//! cargo run --release -p salesmetrics-bench --example catchup_profile -- 1000000
//! ```

use std::time::Instant;

use salesmetrics::domain::{Dataset, Record};
use salesmetrics::kpi::index::ByTime;
use salesmetrics::snapshot::Snapshot;

/// The process's resident memory (VmRSS), in MiB (0 where /proc is missing).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The earliest record of a list, cloned.
fn first<T: Clone>(list: &ByTime<'_, T>) -> T {
    list.list(None)
        .record(0)
        .cloned()
        .expect("the list has records")
}

fn main() {
    let scale: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let generated = salesmetrics_bench::generate::generate(scale, 42);
    let mut records: Vec<Record> = generated
        .records
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            salesmetrics::api::convert::record_from_proto(
                i,
                r,
                salesmetrics_bench::generate::CURRENCY,
            )
            .ok()
        })
        .collect();
    // A load gives each list in id order.
    records.sort_by(|a, b| a.id().cmp(b.id()));
    let mut data = Dataset::default();
    for record in records {
        data.push(record);
    }
    let before = rss_mib();
    let t = Instant::now();
    let snapshot = Snapshot::build(data);
    println!(
        "first index build: {:?}; resident memory {before:.0} MiB before it (the records), {:.0} MiB after",
        t.elapsed(),
        rss_mib()
    );
    let bytes = snapshot.heap_bytes();
    println!(
        "estimated snapshot memory: {:.0} MiB, {:.0} B/record",
        bytes as f64 / (1u64 << 20) as f64,
        bytes as f64 / scale as f64,
    );
    {
        use salesmetrics::heap::HeapBytes;
        let index = snapshot.index();
        let mib = |bytes: usize| bytes as f64 / (1u64 << 20) as f64;
        println!(
            "estimated index memory per family, MiB: organisation {:.1}, customers {:.1}, \
             deals {:.1}, orders {:.1}, leads {:.1}, activities {:.1}, inquiries {:.1}, \
             CSAT {:.1}; the records {:.1} (without spare capacity)",
            mib((*index.org).heap_bytes()),
            mib((*index.customers).heap_bytes()),
            mib((*index.deals).heap_bytes()),
            mib((*index.orders).heap_bytes()),
            mib((*index.leads).heap_bytes()),
            mib((*index.activities).heap_bytes()),
            mib((*index.inquiries).heap_bytes()),
            mib((*index.csat).heap_bytes()),
            mib(snapshot.to_dataset().heap_bytes()),
        );
    }
    let one_of_each: Vec<Record> = {
        let index = snapshot.index();
        let mut records = vec![
            Record::Order(first(&index.orders.by_time)),
            Record::Activity(first(&index.activities.by_type[0].0)),
            Record::Lead(first(&index.leads.by_created)),
            Record::Deal(first(&index.deals.by_created)),
        ];
        records.extend(
            snapshot
                .organisation()
                .team_memberships
                .first()
                .cloned()
                .map(Record::TeamMembership),
        );
        records
    };
    for changed in one_of_each {
        let kind = changed.record_type();
        for _ in 0..3 {
            let t = Instant::now();
            let caught_up = snapshot.with_changes(&[], vec![changed.clone()]);
            let catch_up = t.elapsed();
            let t = Instant::now();
            drop(caught_up);
            println!(
                "one {kind:?} changed: catch-up (copy and re-index its family) {catch_up:?}, drop {:?}",
                t.elapsed()
            );
        }
    }
}
