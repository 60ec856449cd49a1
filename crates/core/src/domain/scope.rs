//! Whose KPIs a request asks for (docs/kpis.md, *Scopes and attribution*).

/// The set of records a KPI is computed over.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The whole tenant: every record counts.
    Company,
    /// A team and all its descendants in the current team tree; a record
    /// counts when its rep's team at the attribution instant is in the subtree.
    Team(String),
    /// One rep: a record counts when its rep field is this rep.
    Rep(String),
}
