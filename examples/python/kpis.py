#!/usr/bin/env python3
"""Fetches one KPI bundle from a salesmetrics server and prints it as a table.

Examples::

    # every KPI of the whole company for March 2024
    python examples/python/kpis.py --date 2024-03-15

    # a few KPIs of one team for Q1 2024, compared with Q1 2023
    python examples/python/kpis.py --scope team:emea --granularity quarter \\
        --date 2024-02-01 --kpi revenue --kpi win_rate --comparison previous-year

    # one rep, a custom range of local dates [start, end)
    python examples/python/kpis.py --scope rep:ada --from 2024-03-01 --to 2024-03-15

Scopes are ``company``, ``team:<team id>`` (the team and its sub-teams) or
``rep:<rep id>``. Money values are printed in major units with the exact
minor units beside them; ratios as percentages; undefined values with the
server's reason. The generated Python code is found (or generated) as
described in ``smclient.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date

import grpc

import smclient


def parse_scope(text: str, kpi):
    """``company`` | ``team:<id>`` | ``rep:<id>`` -> Scope message."""
    kind, _, scope_id = text.partition(":")
    kinds = {"company": kpi.SCOPE_KIND_COMPANY, "team": kpi.SCOPE_KIND_TEAM, "rep": kpi.SCOPE_KIND_REP}
    if kind not in kinds or (kind != "company") != bool(scope_id):
        raise SystemExit(f"error: --scope must be company, team:<id> or rep:<id>, not {text!r}")
    return kpi.Scope(kind=kinds[kind], id=scope_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("SALESMETRICS_SERVER", "127.0.0.1:50051"),
                        help="host:port, http://host:port or https://host:port (TLS)")
    parser.add_argument("--api-key", default=os.environ.get("SALESMETRICS_API_KEY"),
                        help="API key, sent as 'authorization: Bearer <key>'")
    parser.add_argument("--scope", default="company", help="company | team:<id> | rep:<id>")
    parser.add_argument("--granularity", default="month",
                        choices=["day", "week", "month", "quarter", "year",
                                 "fiscal-quarter", "fiscal-year"])
    parser.add_argument("--date", default=date.today().isoformat(),
                        help="a local date inside the period, YYYY-MM-DD (default: today)")
    parser.add_argument("--from", dest="start", help="custom range: first local date")
    parser.add_argument("--to", dest="end", help="custom range: local date after the last one")
    parser.add_argument("--kpi", action="append", default=[], help="KPI id (repeatable; default all)")
    parser.add_argument("--comparison", default="none",
                        choices=["none", "previous-period", "previous-year"])
    parser.add_argument("--time-zone", default="", help="IANA zone overriding the tenant's")
    parser.add_argument("--gen-dir", default=None, help="directory of the generated Python code")
    args = parser.parse_args()

    gen = smclient.load_generated(args.gen_dir)
    pb, kpi = gen.records, gen.kpi

    def to_date(text: str):
        d = date.fromisoformat(text)
        return pb.Date(year=d.year, month=d.month, day=d.day)

    if args.start or args.end:
        if not (args.start and args.end):
            raise SystemExit("error: --from and --to go together")
        period = kpi.Period(custom=kpi.DateRange(start_date=to_date(args.start),
                                                 end_date=to_date(args.end)))
    else:
        granularity = kpi.Granularity.Value("GRANULARITY_" + args.granularity.upper().replace("-", "_"))
        period = kpi.Period(calendar=kpi.CalendarPeriod(granularity=granularity,
                                                        date=to_date(args.date)))
    request = kpi.GetKpisRequest(
        scope=parse_scope(args.scope, kpi),
        period=period,
        kpi_ids=args.kpi,
        comparison=kpi.Comparison.Value("COMPARISON_" + args.comparison.upper().replace("-", "_")),
        time_zone=args.time_zone,
    )

    channel = smclient.connect(args.server, wait_seconds=10)
    try:
        stub = gen.kpi_grpc.KpiServiceStub(channel)
        response = stub.GetKpis(request, metadata=smclient.call_metadata(args.api_key), timeout=30)
    except grpc.RpcError as err:
        print(f"error: GetKpis failed with {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    finally:
        channel.close()
    smclient.print_bundle(response.bundle, kpi)
    return 0


if __name__ == "__main__":
    sys.exit(main())
