//! Every KPI's definition — id, name, category, unit, direction, formula in
//! words and the function computing it — one module per part of the
//! catalog, each next to the figures only its KPIs read:
//!
//! * [`sales`] — revenue, orders, bookings, closed deals and the targets
//!   (the "Performance" section, without the pipeline and CSAT);
//! * [`pipeline`] — deals created, open pipeline, coverage, and the funnel;
//! * [`customers`] — customer counts, churn, retention, CAC, CLV and MRR;
//! * [`leads`] — leads, conversion, response time, referrals;
//! * [`activity`] — activities, inquiries and CSAT (activity and service);
//! * [`productivity`] — active reps and per-rep figures.
//!
//! A figure that has a rollup is read through its module's source trait
//! (`SalesSource`, …), implemented for the production reading
//! ([`super::calc::Rolled`]) here and for the reference scan in
//! `super::reference`. A figure several sections read (revenue, bookings,
//! deals won, new customers) lives in the module of the KPI of that name.
//!
//! [`super::catalog::CATALOG`] orders the modules' lists; docs/kpis.md
//! (generated) shows the result.

pub(crate) mod activity;
pub(crate) mod customers;
pub(crate) mod leads;
pub(crate) mod pipeline;
pub(crate) mod productivity;
pub(crate) mod sales;
