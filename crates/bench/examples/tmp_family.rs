use salesmetrics::domain::{Dataset, Record};
use salesmetrics::snapshot::Snapshot;
fn main() {
    let generated = salesmetrics_bench::generate::generate(1_000_000, 42);
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
    records.sort_by(|a, b| a.id().cmp(b.id()));
    let mut data = Dataset::default();
    for r in records {
        data.push(r);
    }
    let which = std::env::args().nth(1).unwrap_or_default();
    let changed = match which.as_str() {
        "a" => Record::Activity(data.activities[0].clone()),
        "d" => Record::Deal(data.deals[0].clone()),
        "l" => Record::Lead(data.leads[0].clone()),
        _ => Record::Order(data.orders[0].clone()),
    };
    let snapshot = Snapshot::build(data);
    let t = std::time::Instant::now();
    for _ in 0..20 {
        let s = snapshot.with_changes(&[], vec![changed.clone()]);
        drop(s);
    }
    println!("{:?} per catch-up", t.elapsed() / 20);
}
