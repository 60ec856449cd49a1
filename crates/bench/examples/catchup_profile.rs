//! Where a KPI snapshot catch-up spends its time at a given scale: copying
//! the records with one changed order merged in, rebuilding the index and
//! rollups, and dropping the old copy. Pin it to one core (`taskset -c 0`)
//! to see what the parallel copy and build save. Run it in a release build:
//!
//! ```sh
//! cargo run --release -p salesmetrics-bench --example catchup_profile -- 1000000
//! ```

use std::time::Instant;

use salesmetrics::domain::{Dataset, Record};
use salesmetrics::snapshot::Snapshot;

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
    let t = Instant::now();
    let snapshot = Snapshot::build(data);
    println!("first index build: {:?}", t.elapsed());
    let bytes = snapshot.heap_bytes();
    println!(
        "estimated snapshot memory: {:.0} MiB, {:.0} B/record (records {:.0} B/record)",
        bytes as f64 / (1u64 << 20) as f64,
        bytes as f64 / scale as f64,
        salesmetrics::heap::HeapBytes::heap_bytes(snapshot.borrow_owner()) as f64 / scale as f64
    );
    for _ in 0..3 {
        let changed = Record::Order(snapshot.borrow_owner().orders[0].clone());
        let t = Instant::now();
        let copy = snapshot.borrow_owner().with_changes(&[], vec![changed]);
        let copy_time = t.elapsed();
        let t = Instant::now();
        let rebuilt = Snapshot::build(copy);
        let build = t.elapsed();
        let t = Instant::now();
        drop(rebuilt);
        println!(
            "copy with the change {copy_time:?}, rebuild {build:?}, drop {:?}",
            t.elapsed()
        );
    }
}
