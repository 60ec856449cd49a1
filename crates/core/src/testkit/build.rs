//! Terse builders for domain records, as the fixtures and the engine's tests
//! write them: instants as RFC 3339 text, optional ids as `Option<&str>`,
//! names derived from ids ("Team east", "Rep r1"), every other optional
//! field absent.

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::*;

/// An RFC 3339 instant (panics on bad text: tests only).
pub fn instant(s: &str) -> Instant {
    DateTime::parse_from_rfc3339(s)
        .expect("test instant")
        .with_timezone(&Utc)
}

/// A calendar date (panics on an invalid one: tests only).
pub fn date(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).expect("test date")
}

/// A dataset holding `records`, in their order.
pub fn dataset(records: impl IntoIterator<Item = Record>) -> Dataset {
    let mut data = Dataset::default();
    for r in records {
        data.push(r);
    }
    data
}

/// Team `id`, named "Team {id}".
pub fn team(id: &str, parent: Option<&str>) -> Record {
    Record::Team(Team {
        id: id.into(),
        version: None,
        name: format!("Team {id}").into(),
        parent_team_id: parent.map(Into::into),
    })
}

/// From `at`, `rep` is in `team` (`None`: in no team).
pub fn member(id: &str, rep: &str, team: Option<&str>, at: &str) -> Record {
    Record::TeamMembership(TeamMembership {
        id: id.into(),
        version: None,
        rep_id: rep.into(),
        team_id: team.map(Into::into),
        effective_at: instant(at),
    })
}

/// Rep `id`, named "Rep {id}".
pub fn rep(id: &str) -> Record {
    Record::Rep(Rep {
        id: id.into(),
        version: None,
        name: format!("Rep {id}").into(),
        email: None,
    })
}

/// A NEW order without customer or deal.
pub fn order(id: &str, amount: i64, at: &str, rep: Option<&str>) -> Order {
    Order {
        id: id.into(),
        version: None,
        amount,
        ordered_at: instant(at),
        kind: OrderKind::New,
        customer_id: None,
        rep_id: rep.map(Into::into),
        deal_id: None,
    }
}

/// A NEW order without customer or deal, as a record.
pub fn sale(id: &str, amount: i64, at: &str, rep: Option<&str>) -> Record {
    Record::Order(order(id, amount, at, rep))
}

/// An order of `kind` for `customer`.
pub fn order_with(
    id: &str,
    amount: i64,
    at: &str,
    rep: Option<&str>,
    kind: OrderKind,
    customer: Option<&str>,
) -> Record {
    Record::Order(Order {
        kind,
        customer_id: customer.map(Into::into),
        ..order(id, amount, at, rep)
    })
}

/// A customer acquired at `acquired`, churned at `churned` if given.
pub fn customer(id: &str, acquired: &str, churned: Option<&str>, owner: Option<&str>) -> Record {
    Record::Customer(Customer {
        id: id.into(),
        version: None,
        acquired_at: instant(acquired),
        churned_at: churned.map(instant),
        owner_rep_id: owner.map(Into::into),
        source: None,
        name: None,
    })
}

/// From `at`, `subscription` of `customer` is worth `mrr`.
pub fn sub(id: &str, subscription: &str, customer: &str, mrr: i64, at: &str) -> Record {
    Record::SubscriptionChange(SubscriptionChange {
        id: id.into(),
        version: None,
        subscription_id: subscription.into(),
        customer_id: customer.into(),
        mrr,
        effective_at: instant(at),
    })
}

/// A deal without customer or lead.
pub fn deal(
    id: &str,
    status: DealStatus,
    amount: i64,
    created: &str,
    closed: Option<&str>,
    stage: Option<&str>,
    owner: Option<&str>,
) -> Record {
    Record::Deal(Deal {
        id: id.into(),
        version: None,
        amount,
        created_at: instant(created),
        status,
        closed_at: closed.map(instant),
        stage: stage.map(Into::into),
        owner_rep_id: owner.map(Into::into),
        customer_id: None,
        lead_id: None,
    })
}

/// At `at`, `deal` enters `stage`.
pub fn stage(id: &str, deal: &str, stage: &str, at: &str) -> Record {
    Record::DealStageChange(DealStageChange {
        id: id.into(),
        version: None,
        deal_id: deal.into(),
        stage: stage.into(),
        entered_at: instant(at),
    })
}

/// A lead without customer.
pub fn lead(
    id: &str,
    source: &str,
    created: &str,
    responded: Option<&str>,
    converted: Option<&str>,
    owner: Option<&str>,
) -> Record {
    Record::Lead(Lead {
        id: id.into(),
        version: None,
        source: source.into(),
        created_at: instant(created),
        owner_rep_id: owner.map(Into::into),
        first_response_at: responded.map(instant),
        converted_at: converted.map(instant),
        customer_id: None,
    })
}

/// An activity of `rep` linked to nothing.
pub fn activity(id: &str, rep: &str, kind: ActivityType, at: &str, seconds: Option<i64>) -> Record {
    Record::Activity(Activity {
        id: id.into(),
        version: None,
        rep_id: rep.into(),
        activity_type: kind,
        occurred_at: instant(at),
        duration_seconds: seconds,
        lead_id: None,
        deal_id: None,
        customer_id: None,
    })
}

/// An e-mail inquiry without customer.
pub fn inquiry(id: &str, at: &str, responded: Option<&str>, rep: Option<&str>) -> Record {
    Record::Inquiry(Inquiry {
        id: id.into(),
        version: None,
        channel: "email".into(),
        received_at: instant(at),
        first_response_at: responded.map(instant),
        customer_id: None,
        rep_id: rep.map(Into::into),
    })
}

/// A CSAT response without customer.
pub fn csat(id: &str, score: i32, at: &str, rep: Option<&str>) -> Record {
    Record::CsatResponse(CsatResponse {
        id: id.into(),
        version: None,
        score,
        responded_at: instant(at),
        customer_id: None,
        rep_id: rep.map(Into::into),
    })
}

/// A target of `value` over the dates `from..to`.
pub fn target(
    id: &str,
    metric: TargetMetric,
    value: i64,
    from: NaiveDate,
    to: NaiveDate,
    scope: TargetScope,
) -> Record {
    Record::Target(Target {
        id: id.into(),
        version: None,
        metric,
        value,
        start_date: from,
        end_date: to,
        scope,
    })
}

/// Marketing spend of `amount` over the dates `from..to`.
pub fn spend(id: &str, amount: i64, from: NaiveDate, to: NaiveDate, team: Option<&str>) -> Record {
    Record::Spend(Spend {
        id: id.into(),
        version: None,
        category: SpendCategory::Marketing,
        amount,
        start_date: from,
        end_date: to,
        team_id: team.map(Into::into),
    })
}
