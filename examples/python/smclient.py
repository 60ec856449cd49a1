"""Shared helpers for the salesmetrics Python examples.

* :func:`load_generated` makes the code generated from ``proto/`` importable
  (``salesmetrics.v1.*_pb2`` and ``*_pb2_grpc``). It looks in ``--gen-dir``,
  then ``$SALESMETRICS_PYTHON_GEN``, then ``<repo>/target/python-gen``; if the
  code is not there yet it runs ``grpc_tools.protoc`` (from grpcio-tools, see
  ``requirements.txt``) once to generate it.
* :func:`connect` opens a channel and waits until the server accepts
  connections. The server address means what it means to the ``salesmetrics``
  CLI: ``host:port`` or ``http://host:port`` is plaintext, ``https://host:port``
  is TLS, verified against the system's roots or the CA in
  ``$SALESMETRICS_CA_CERT``; ``$SALESMETRICS_CLIENT_CERT`` and
  ``$SALESMETRICS_CLIENT_KEY`` add a client certificate (mutual TLS).
* :func:`call_metadata` builds the per-call metadata: an API key, when given,
  is sent as ``authorization: Bearer <key>``. Without one the server uses its
  default tenant (the embedded quick start runs without authentication).
"""

from __future__ import annotations

import glob
import importlib
import os
import sys
from pathlib import Path

import grpc

#: Root of the repository (this file is ``examples/python/smclient.py``).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Where the generated code goes by default (inside cargo's ignored target/).
DEFAULT_GEN_DIR = REPO_ROOT / "target" / "python-gen"
PROTO_DIR = REPO_ROOT / "proto"


def generate(gen_dir: Path) -> None:
    """Runs grpc_tools.protoc on ``proto/salesmetrics/v1/*.proto`` into ``gen_dir``."""
    from grpc_tools import protoc  # imported lazily: only needed to generate

    protos = sorted(glob.glob(str(PROTO_DIR / "salesmetrics" / "v1" / "*.proto")))
    if not protos:
        raise SystemExit(f"error: no .proto files under {PROTO_DIR}")
    gen_dir.mkdir(parents=True, exist_ok=True)
    # protoc's own include dir holds google/protobuf/timestamp.proto.
    well_known = str(Path(protoc.__file__).resolve().parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={gen_dir}",
        f"--grpc_python_out={gen_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("error: grpc_tools.protoc failed on proto/")
    add_init_files(gen_dir)


def add_init_files(gen_dir: Path) -> None:
    """Makes ``salesmetrics`` and ``salesmetrics/v1`` regular packages."""
    for package in (gen_dir / "salesmetrics", gen_dir / "salesmetrics" / "v1"):
        (package / "__init__.py").touch()


def load_generated(gen_dir: str | None = None):
    """Returns the generated modules as a simple namespace object.

    Attributes: ``records``, ``ingest``, ``ingest_grpc``, ``kpi``, ``kpi_grpc``.
    """
    path = Path(gen_dir or os.environ.get("SALESMETRICS_PYTHON_GEN") or DEFAULT_GEN_DIR)
    if not (path / "salesmetrics" / "v1" / "records_pb2.py").exists():
        print(f"generating Python code from {PROTO_DIR} into {path}", file=sys.stderr)
        generate(path)
    sys.path.insert(0, str(path))

    class Generated:
        records = importlib.import_module("salesmetrics.v1.records_pb2")
        ingest = importlib.import_module("salesmetrics.v1.ingest_pb2")
        ingest_grpc = importlib.import_module("salesmetrics.v1.ingest_pb2_grpc")
        kpi = importlib.import_module("salesmetrics.v1.kpi_pb2")
        kpi_grpc = importlib.import_module("salesmetrics.v1.kpi_pb2_grpc")

    return Generated


def parse_server(server: str) -> tuple[str, bool]:
    """``(host:port, tls)`` of a server address: ``host:port``, ``http://…`` or ``https://…``."""
    server = server.strip()
    scheme, sep, rest = server.partition("://")
    if not sep:
        return server, False
    if scheme not in ("http", "https"):
        raise SystemExit(
            f"error: invalid server {server!r}: use host:port, http://host:port or https://host:port"
        )
    return rest.rstrip("/"), scheme == "https"


def _read_env_file(variable: str) -> bytes | None:
    path = os.environ.get(variable)
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise SystemExit(f"error: cannot read {variable}={path}: {err}") from None


def tls_credentials() -> grpc.ChannelCredentials:
    """TLS credentials from ``$SALESMETRICS_CA_CERT`` (default: the system's
    roots) and ``$SALESMETRICS_CLIENT_CERT``/``$SALESMETRICS_CLIENT_KEY``."""
    cert = _read_env_file("SALESMETRICS_CLIENT_CERT")
    key = _read_env_file("SALESMETRICS_CLIENT_KEY")
    if (cert is None) != (key is None):
        raise SystemExit(
            "error: set both SALESMETRICS_CLIENT_CERT and SALESMETRICS_CLIENT_KEY, or neither"
        )
    return grpc.ssl_channel_credentials(
        root_certificates=_read_env_file("SALESMETRICS_CA_CERT"),
        private_key=key,
        certificate_chain=cert,
    )


def connect(server: str, wait_seconds: float) -> grpc.Channel:
    """Opens a channel to ``server`` (see :func:`parse_server`) and waits until it is ready."""
    target, tls = parse_server(server)
    if tls:
        channel = grpc.secure_channel(target, tls_credentials())
    else:
        channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=wait_seconds)
    except grpc.FutureTimeoutError:
        channel.close()
        hint = (
            "is it a TLS server with a certificate from SALESMETRICS_CA_CERT?"
            if tls
            else "is the server running? use https:// for a TLS server"
        )
        raise SystemExit(
            f"error: no gRPC server answered at {server} within {wait_seconds:g} s — {hint}"
        ) from None
    return channel


def call_metadata(api_key: str | None) -> list[tuple[str, str]]:
    """Metadata for every call: the API key as a bearer token, if any."""
    return [("authorization", f"Bearer {api_key}")] if api_key else []


def format_kpi_value(value, unit_name: str) -> str:
    """A KPI value as a person reads it (money in major units, ratios as %)."""
    if not value.HasField("value"):
        return f"undefined ({value.undefined_reason})" if value.undefined_reason else "undefined"
    v = value.value
    if unit_name == "UNIT_MONEY":
        exact = value.exact_value if value.HasField("exact_value") else None
        return f"{v / 100:,.2f}" + (f"  [{exact} minor units]" if exact is not None else "")
    if unit_name == "UNIT_RATIO":
        return f"{v * 100:.2f} %"
    if unit_name == "UNIT_DURATION_SECONDS":
        return f"{v:,.0f} s ({v / 86400:.2f} d)"
    if unit_name == "UNIT_COUNT":
        return f"{v:,.0f}"
    return f"{v:,.4g}"


def print_bundle(bundle, kpi_module) -> None:
    """Prints a KPI bundle as a small table: id, unit, value."""
    period = bundle.period
    print(
        f"KPIs for {kpi_module.ScopeKind.Name(bundle.scope.kind)}"
        f"{' ' + bundle.scope.id if bundle.scope.id else ''}, "
        f"{period.start_date.year:04}-{period.start_date.month:02}-{period.start_date.day:02}"
        f" .. {period.end_date.year:04}-{period.end_date.month:02}-{period.end_date.day:02}"
        f" (exclusive, {period.time_zone or 'tenant zone'}), currency {bundle.currency_code}"
    )
    rows = []
    for value in bundle.values:
        unit = kpi_module.Unit.Name(value.unit)
        text = format_kpi_value(value, unit)
        if value.HasField("comparison_value"):
            text += f"   (comparison {value.comparison_value:,.6g}"
            if value.HasField("relative_change"):
                text += f", {value.relative_change * 100:+.1f} %"
            text += ")"
        elif value.comparison_undefined_reason:
            text += f"   (comparison undefined: {value.comparison_undefined_reason})"
        rows.append((value.kpi_id, unit.removeprefix("UNIT_").lower(), text))
    width_id = max([len(r[0]) for r in rows] + [3])
    width_unit = max([len(r[1]) for r in rows] + [4])
    print(f"  {'kpi':<{width_id}}  {'unit':<{width_unit}}  value")
    print(f"  {'-' * width_id}  {'-' * width_unit}  {'-' * 20}")
    for kpi_id, unit, text in rows:
        print(f"  {kpi_id:<{width_id}}  {unit:<{width_unit}}  {text}")
    if bundle.funnel:
        print("  funnel: " + ", ".join(
            f"{stage.stage}={stage.reached}" for stage in bundle.funnel))
