#!/usr/bin/env python3
"""End-to-end check of a running salesmetrics server, from a generated Python client.

What it does, in order (each step is one numbered check; the first failure
stops the run with a message and exit status 1):

0. ``DeleteRecords`` of every id the check writes (nothing to delete on a
   fresh database), so that a re-run starts from the same state; deleting the
   same ids again must report 0 deleted (deletion is idempotent).
1. ``IngestBatch`` of one record of every record type (three orders in March
   2024 plus one on each side of the month), with realistic values: money as
   ``Money{currency_code: "USD", minor_units: ...}``, instants as
   ``google.protobuf.Timestamp``. Every result must be ACCEPTED.
2. The same batch again: nothing may change. Records without a version are
   upserted again (ACCEPTED), records with a version are skipped (STALE).
3. An invalid record (an order of amount 0) must be REJECTED with field path
   ``records[0].order.amount``, and not stored.
4. With ``all_or_nothing`` a batch holding one valid and one invalid order must
   fail with INVALID_ARGUMENT and store neither.
5. ``ExportRecords`` of every record type must return exactly the records
   sent, field for field, in id order.
6. If ``KpiService.GetKpis`` is implemented: the COMPANY bundle of March 2024
   must have ``revenue`` equal to the hand-computed sum of the March orders
   (and ``orders`` equal to their count). The bundle is printed as a table.

The tenant must hold no other records (run the server on a fresh database);
running the check twice against the same database is fine, since step 0
deletes what the previous run wrote.

Usage::

    pip install -r examples/python/requirements.txt
    salesmetrics serve --listen 127.0.0.1:50051 --database-url sqlite:///tmp/e2e.db &
    python examples/python/e2e.py --server 127.0.0.1:50051

The code generated from ``proto/`` is looked up as described in ``smclient.py``
(generated into ``target/python-gen`` on first use).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone

import grpc
from google.protobuf import text_format
from google.protobuf.timestamp_pb2 import Timestamp

import smclient


class CheckFailed(Exception):
    """A check did not hold; the message says what was expected and what came."""


def ts(text: str) -> Timestamp:
    """A Timestamp from an ISO 8601 UTC instant such as ``2024-03-05T10:30:00Z``."""
    instant = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
    stamp = Timestamp()
    stamp.FromDatetime(instant)
    return stamp


def show_value(value) -> str:
    """A field value for a message: messages in one-line text format."""
    if hasattr(value, "DESCRIPTOR"):
        return "{" + text_format.MessageToString(value, as_one_line=True) + "}"
    return repr(value)


def record_id(record) -> str:
    """The id of whichever record a ``Record`` holds ("" when it holds none)."""
    kind = record.WhichOneof("record")
    return getattr(record, kind).id if kind else ""


class E2E:
    """The checks, sharing the generated modules, the stubs and a check counter."""

    #: Ids of the invalid orders of steps 3 and 4 (never stored).
    INVALID_ORDER_IDS = ("e2e-order-invalid", "e2e-order-aon-valid", "e2e-order-aon-invalid")

    def __init__(self, gen, channel: grpc.Channel, metadata, timeout: float):
        self.pb = gen.records
        self.ingest_pb = gen.ingest
        self.kpi_pb = gen.kpi
        self.ingest = gen.ingest_grpc.IngestServiceStub(channel)
        self.kpis = gen.kpi_grpc.KpiServiceStub(channel)
        self.metadata = metadata
        self.timeout = timeout
        self.passed = 0

    # ----------------------------------------------------------------- data

    def usd(self, minor_units: int):
        """US dollars in cents."""
        return self.pb.Money(currency_code="USD", minor_units=minor_units)

    def sample_records(self) -> list:
        """One record of every type (orders: three in March 2024, one just
        before and one just after the month), ids prefixed ``e2e-``.

        Categories are sent already trimmed and lower-cased, enums explicit,
        so that what the server stores equals what was sent."""
        pb = self.pb
        R = pb.Record
        return [
            R(team=pb.Team(id="e2e-team-emea", name="EMEA Mid-Market")),
            R(team_membership=pb.TeamMembership(
                id="e2e-tm-ada-emea", rep_id="e2e-rep-ada", team_id="e2e-team-emea",
                effective_at=ts("2024-01-02T08:00:00Z"))),
            R(rep=pb.Rep(id="e2e-rep-ada", name="Ada Lovelace", email="ada@example.com")),
            R(customer=pb.Customer(
                id="e2e-cust-acme", acquired_at=ts("2024-03-05T10:00:00Z"),
                owner_rep_id="e2e-rep-ada", source="referral", name="Acme GmbH")),
            R(lead=pb.Lead(
                id="e2e-lead-acme", source="referral", created_at=ts("2024-02-12T09:15:00Z"),
                owner_rep_id="e2e-rep-ada", first_response_at=ts("2024-02-12T11:45:00Z"),
                converted_at=ts("2024-03-05T10:00:00Z"), customer_id="e2e-cust-acme")),
            R(deal=pb.Deal(
                id="e2e-deal-acme", version=3, amount=self.usd(1_250_000),
                created_at=ts("2024-02-14T13:00:00Z"), status=pb.DEAL_STATUS_WON,
                closed_at=ts("2024-03-04T16:20:00Z"), stage="negotiation",
                owner_rep_id="e2e-rep-ada", customer_id="e2e-cust-acme",
                lead_id="e2e-lead-acme")),
            R(deal_stage_change=pb.DealStageChange(
                id="e2e-dsc-acme-negotiation", deal_id="e2e-deal-acme", stage="negotiation",
                entered_at=ts("2024-02-28T10:00:00Z"))),
            R(order=pb.Order(
                id="e2e-order-0-feb", amount=self.usd(40_000),
                ordered_at=ts("2024-02-29T23:59:59Z"), kind=pb.ORDER_KIND_NEW,
                rep_id="e2e-rep-ada")),
            R(order=pb.Order(
                id="e2e-order-1", amount=self.usd(1_250_000),
                ordered_at=ts("2024-03-05T10:30:00Z"), kind=pb.ORDER_KIND_NEW,
                customer_id="e2e-cust-acme", rep_id="e2e-rep-ada", deal_id="e2e-deal-acme")),
            R(order=pb.Order(
                id="e2e-order-2", version=1, amount=self.usd(349_900),
                ordered_at=ts("2024-03-18T15:00:00Z"), kind=pb.ORDER_KIND_UPSELL,
                customer_id="e2e-cust-acme", rep_id="e2e-rep-ada")),
            R(order=pb.Order(
                id="e2e-order-3", amount=self.usd(9_900),
                ordered_at=ts("2024-03-31T23:59:59Z"), kind=pb.ORDER_KIND_CROSS_SELL,
                customer_id="e2e-cust-acme")),
            R(order=pb.Order(
                id="e2e-order-4-apr", amount=self.usd(120_000),
                ordered_at=ts("2024-04-01T00:00:00Z"), kind=pb.ORDER_KIND_RENEWAL,
                customer_id="e2e-cust-acme", rep_id="e2e-rep-ada")),
            R(subscription_change=pb.SubscriptionChange(
                id="e2e-sub-acme-1", version=1, subscription_id="e2e-sub-acme",
                customer_id="e2e-cust-acme", mrr=self.usd(99_900),
                effective_at=ts("2024-03-05T10:00:00Z"))),
            R(activity=pb.Activity(
                id="e2e-act-demo", rep_id="e2e-rep-ada", type=pb.ACTIVITY_TYPE_DEMO,
                occurred_at=ts("2024-02-20T14:00:00Z"), duration_seconds=2_700,
                lead_id="e2e-lead-acme", deal_id="e2e-deal-acme")),
            R(inquiry=pb.Inquiry(
                id="e2e-inq-acme", channel="email", received_at=ts("2024-03-11T08:05:00Z"),
                first_response_at=ts("2024-03-11T09:20:00Z"), customer_id="e2e-cust-acme",
                rep_id="e2e-rep-ada")),
            R(csat_response=pb.CsatResponse(
                id="e2e-csat-acme", score=5, responded_at=ts("2024-03-12T17:00:00Z"),
                customer_id="e2e-cust-acme", rep_id="e2e-rep-ada")),
            R(target=pb.Target(
                id="e2e-target-ada-2024-03", metric=pb.TARGET_METRIC_REVENUE,
                value=1_500_000, start_date=pb.Date(year=2024, month=3, day=1),
                end_date=pb.Date(year=2024, month=4, day=1), rep_id="e2e-rep-ada")),
            R(spend=pb.Spend(
                id="e2e-spend-mkt-2024-03", category=pb.SPEND_CATEGORY_MARKETING,
                amount=self.usd(250_000), start_date=pb.Date(year=2024, month=3, day=1),
                end_date=pb.Date(year=2024, month=4, day=1), team_id="e2e-team-emea")),
        ]

    # -------------------------------------------------------------- helpers

    def ok(self, what: str) -> None:
        self.passed += 1
        print(f"ok {self.passed} - {what}", flush=True)

    def record_type_of(self, record) -> int:
        """RecordType enum value of a Record's set oneof (``order`` -> RECORD_TYPE_ORDER)."""
        return self.pb.RecordType.Value("RECORD_TYPE_" + record.WhichOneof("record").upper())

    def ingest_batch(self, records, all_or_nothing: bool = False):
        request = self.ingest_pb.IngestBatchRequest(records=records, all_or_nothing=all_or_nothing)
        return self.ingest.IngestBatch(request, metadata=self.metadata, timeout=self.timeout).result

    def export(self, record_type: int) -> list:
        request = self.ingest_pb.ExportRecordsRequest(record_type=record_type)
        out = []
        for chunk in self.ingest.ExportRecords(request, metadata=self.metadata, timeout=self.timeout):
            out.extend(chunk.records)
        return out

    def outcome_name(self, outcome: int) -> str:
        return self.ingest_pb.RecordOutcome.Name(outcome)

    def check_results(self, sent, result, expected_outcomes) -> None:
        """Checks a BatchResult: one result per record, in order, with the
        expected outcome, id and type, and matching counts."""
        if len(result.results) != len(sent):
            raise CheckFailed(f"expected {len(sent)} results, got {len(result.results)}")
        for i, (record, got, want) in enumerate(zip(sent, result.results, expected_outcomes)):
            inner = getattr(record, record.WhichOneof("record"))
            if got.index != i or got.id != inner.id or got.record_type != self.record_type_of(record):
                raise CheckFailed(
                    f"result {i} should be for record {i} ({inner.id}, "
                    f"{self.pb.RecordType.Name(self.record_type_of(record))}), got "
                    f"index {got.index}, id {got.id!r}, {self.pb.RecordType.Name(got.record_type)}")
            if got.outcome != want:
                raise CheckFailed(
                    f"records[{i}] ({inner.id}): expected {self.outcome_name(want)}, got "
                    f"{self.outcome_name(got.outcome)} {got.field_path} {got.reason}".rstrip())
        counts = (result.accepted_count, result.stale_count, result.rejected_count)
        want_counts = tuple(
            sum(1 for o in expected_outcomes if o == outcome)
            for outcome in (self.ingest_pb.RECORD_OUTCOME_ACCEPTED,
                            self.ingest_pb.RECORD_OUTCOME_STALE,
                            self.ingest_pb.RECORD_OUTCOME_REJECTED))
        if counts != want_counts:
            raise CheckFailed(
                f"counts (accepted, stale, rejected) should be {want_counts}, got {counts}")

    @staticmethod
    def field_differences(sent, got) -> list[str]:
        """Field-by-field differences between two messages of one type."""
        diffs = []
        for field in sent.DESCRIPTOR.fields:
            name = field.name
            if getattr(field, "has_presence", False):
                if sent.HasField(name) != got.HasField(name):
                    diffs.append(f"{name}: sent {'set' if sent.HasField(name) else 'unset'}, "
                                 f"got {'set' if got.HasField(name) else 'unset'}")
                    continue
            a, b = getattr(sent, name), getattr(got, name)
            if a != b:
                if field.enum_type is not None:
                    names = field.enum_type.values_by_number
                    a, b = (names[v].name if v in names else v for v in (a, b))
                diffs.append(f"{name}: sent {show_value(a)}, got {show_value(b)}")
        return diffs

    # --------------------------------------------------------------- checks

    def run(self) -> None:
        pb, ing = self.pb, self.ingest_pb
        accepted, stale, rejected = (ing.RECORD_OUTCOME_ACCEPTED, ing.RECORD_OUTCOME_STALE,
                                     ing.RECORD_OUTCOME_REJECTED)
        records = self.sample_records()
        kinds = {r.WhichOneof("record") for r in records}
        assert len(kinds) == len(pb.RecordType.keys()) - 1, "sample lacks a record type"

        # 0. start clean: delete (idempotently) every id this check writes, so a
        #    re-run against the same database starts from the same state
        #    (deleting also forgets versions, so step 1 sees no STALE).
        ids_by_type: dict[int, list[str]] = {}
        for record in records:
            ids_by_type.setdefault(self.record_type_of(record), []).append(record_id(record))
        ids_by_type[pb.RECORD_TYPE_ORDER] += list(self.INVALID_ORDER_IDS)
        for record_type, ids in sorted(ids_by_type.items()):
            request = ing.DeleteRecordsRequest(record_type=record_type, ids=ids)
            deleted = self.ingest.DeleteRecords(
                request, metadata=self.metadata, timeout=self.timeout).deleted_count
            if not 0 <= deleted <= len(ids):
                raise CheckFailed(f"DeleteRecords of {len(ids)} ids reported {deleted} deleted")
            again = self.ingest.DeleteRecords(
                request, metadata=self.metadata, timeout=self.timeout).deleted_count
            if again != 0:
                raise CheckFailed(f"deleting the same {pb.RecordType.Name(record_type)} ids twice: "
                                  f"the second call reported {again} deleted, expected 0")
        self.ok("DeleteRecords cleared the ids used by this check; deleting again deletes 0")

        # 1. every record accepted
        result = self.ingest_batch(records)
        self.check_results(records, result, [accepted] * len(records))
        self.ok(f"IngestBatch accepted all {len(records)} records ({len(kinds)} record types)")

        # 2. idempotent re-ingest
        again = [stale if getattr(r, r.WhichOneof("record")).HasField("version") else accepted
                 for r in records]
        result = self.ingest_batch(records)
        self.check_results(records, result, again)
        self.ok("re-ingesting the batch: unversioned records ACCEPTED again, versioned ones STALE")

        # 3. an invalid record is rejected with its field path
        invalid = [pb.Record(order=pb.Order(
            id="e2e-order-invalid", amount=self.usd(0), ordered_at=ts("2024-03-20T12:00:00Z"),
            kind=pb.ORDER_KIND_NEW))]
        result = self.ingest_batch(invalid)
        self.check_results(invalid, result, [rejected])
        got = result.results[0]
        if got.field_path != "records[0].order.amount":
            raise CheckFailed(f"order with amount 0: expected field path "
                              f"'records[0].order.amount', got {got.field_path!r} ({got.reason})")
        if not got.reason:
            raise CheckFailed("a rejected record should say why (reason is empty)")
        self.ok(f"order with amount 0 REJECTED at records[0].order.amount ({got.reason})")

        # 4. all_or_nothing: one invalid record fails the whole batch
        batch = [
            pb.Record(order=pb.Order(id="e2e-order-aon-valid", amount=self.usd(5_000),
                                     ordered_at=ts("2024-03-21T12:00:00Z"), kind=pb.ORDER_KIND_NEW)),
            pb.Record(order=pb.Order(id="e2e-order-aon-invalid", amount=self.usd(-5),
                                     ordered_at=ts("2024-03-21T12:00:00Z"), kind=pb.ORDER_KIND_NEW)),
        ]
        try:
            self.ingest_batch(batch, all_or_nothing=True)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise CheckFailed(f"all_or_nothing batch with an invalid order: expected "
                                  f"INVALID_ARGUMENT, got {err.code().name}: {err.details()}")
        else:
            raise CheckFailed("all_or_nothing batch with an invalid order should fail with "
                              "INVALID_ARGUMENT, but it succeeded")
        self.ok("all_or_nothing batch with an invalid order failed with INVALID_ARGUMENT")

        # 5. export returns exactly what was sent
        by_type: dict[int, list] = {}
        for record in records:
            by_type.setdefault(self.record_type_of(record), []).append(record)
        for record_type, sent in sorted(by_type.items()):
            type_name = pb.RecordType.Name(record_type)
            exported = self.export(record_type)
            ids = [record_id(r) for r in exported]
            if ids != sorted(ids):
                raise CheckFailed(f"export of {type_name}: records not in id order: {ids}")
            want_ids = sorted(record_id(r) for r in sent)
            if ids != want_ids:
                missing = sorted(set(want_ids) - set(ids))
                extra = sorted(set(ids) - set(want_ids))
                raise CheckFailed(
                    f"export of {type_name}: expected ids {want_ids}, got {ids}"
                    + (f"; missing {missing}" if missing else "")
                    + (f"; unexpected {extra} (is the database fresh? rejected records must "
                       f"not be stored)" if extra else ""))
            exported_by_id = dict(zip(ids, exported))
            for record in sent:
                kind = record.WhichOneof("record")
                inner = getattr(record, kind)
                back = exported_by_id[inner.id]
                if back.WhichOneof("record") != kind:
                    raise CheckFailed(f"export of {type_name}: {inner.id} came back as "
                                      f"{back.WhichOneof('record')}")
                diffs = self.field_differences(inner, getattr(back, kind))
                if diffs or back != record:
                    raise CheckFailed(f"export of {type_name}: {inner.id} differs from what was "
                                      f"sent: " + "; ".join(diffs or ["(unknown fields)"]))
        self.ok(f"ExportRecords returned every record field for field, in id order "
                f"({len(by_type)} types)")

        # 6. the KPI bundle of March 2024
        self.check_kpis(records)

    def check_kpis(self, records) -> None:
        pb, kpi = self.pb, self.kpi_pb
        month_start, month_end = ts("2024-03-01T00:00:00Z"), ts("2024-04-01T00:00:00Z")
        march = [r.order for r in records if r.WhichOneof("record") == "order"
                 and month_start.ToNanoseconds() <= r.order.ordered_at.ToNanoseconds()
                 < month_end.ToNanoseconds()]
        expected_revenue = sum(o.amount.minor_units for o in march)
        # By hand: 1 250 000 + 349 900 + 9 900 cents; Feb 29 23:59:59 and Apr 1 00:00 are outside.
        if expected_revenue != 1_609_800 or len(march) != 3:
            raise CheckFailed(f"internal: March revenue computed as {expected_revenue}")

        request = kpi.GetKpisRequest(
            scope=kpi.Scope(kind=kpi.SCOPE_KIND_COMPANY),
            period=kpi.Period(calendar=kpi.CalendarPeriod(
                granularity=kpi.GRANULARITY_MONTH, date=pb.Date(year=2024, month=3, day=15))),
            comparison=kpi.COMPARISON_NONE)
        try:
            bundle = self.kpis.GetKpis(request, metadata=self.metadata, timeout=self.timeout).bundle
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                print("skip - KpiService.GetKpis is not implemented by this server", flush=True)
                return
            raise
        smclient.print_bundle(bundle, kpi)

        period = bundle.period
        if (period.start.ToNanoseconds(), period.end.ToNanoseconds()) != (
                month_start.ToNanoseconds(), month_end.ToNanoseconds()):
            raise CheckFailed(f"March 2024 (UTC) should resolve to [2024-03-01, 2024-04-01), got "
                              f"[{period.start.ToJsonString()}, {period.end.ToJsonString()})")
        if bundle.currency_code != "USD":
            raise CheckFailed(f"bundle currency should be USD, got {bundle.currency_code!r}")
        values = {v.kpi_id: v for v in bundle.values}
        revenue = values.get("revenue")
        if revenue is None:
            raise CheckFailed(f"the bundle has no 'revenue' (ids: {sorted(values)})")
        if not revenue.HasField("value") or revenue.value != expected_revenue:
            got = revenue.value if revenue.HasField("value") else f"undefined ({revenue.undefined_reason})"
            raise CheckFailed(f"revenue of March 2024 should be {expected_revenue} "
                              f"(sum of the 3 March orders), got {got}")
        if revenue.HasField("exact_value") and revenue.exact_value != expected_revenue:
            raise CheckFailed(f"revenue exact_value should be {expected_revenue}, "
                              f"got {revenue.exact_value}")
        orders = values.get("orders")
        if orders is not None and (not orders.HasField("value") or orders.value != len(march)):
            raise CheckFailed(f"orders of March 2024 should be {len(march)}, got "
                              f"{orders.value if orders.HasField('value') else 'undefined'}")
        self.ok(f"GetKpis COMPANY March 2024: revenue = {expected_revenue} minor units "
                f"(= sum of the {len(march)} March orders)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("SALESMETRICS_SERVER", "127.0.0.1:50051"),
                        help="server: host:port or http://host:port (plaintext), https://host:port "
                             "(TLS; CA from SALESMETRICS_CA_CERT, default the system's roots) "
                             "(default %(default)s)")
    parser.add_argument("--api-key", default=os.environ.get("SALESMETRICS_API_KEY"),
                        help="API key, sent as 'authorization: Bearer <key>' (default: none)")
    parser.add_argument("--wait", type=float, default=10.0,
                        help="seconds to wait for the server to accept connections (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="deadline of each call in seconds (default %(default)s)")
    parser.add_argument("--gen-dir", default=None,
                        help="directory of the generated Python code (default: target/python-gen)")
    args = parser.parse_args()

    gen = smclient.load_generated(args.gen_dir)
    channel = smclient.connect(args.server, args.wait)
    checks = E2E(gen, channel, smclient.call_metadata(args.api_key), args.timeout)
    try:
        checks.run()
    except CheckFailed as failure:
        print(f"not ok {checks.passed + 1} - {failure}", flush=True)
        print(f"e2e: {checks.passed} passed, 1 failed")
        print(f"E2E FAILED against {args.server}: {failure}", file=sys.stderr)
        return 1
    except grpc.RpcError as err:
        print(f"not ok {checks.passed + 1} - unexpected {err.code().name}: {err.details()}", flush=True)
        print(f"e2e: {checks.passed} passed, 1 failed")
        print(f"E2E FAILED against {args.server}: a call failed with {err.code().name}: "
              f"{err.details()}", file=sys.stderr)
        return 1
    finally:
        channel.close()
    print(f"e2e: {checks.passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
