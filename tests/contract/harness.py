"""The contract tests' client: it knows fiscus only through gRPC reflection.

No .proto file and no generated code of fiscus: message classes are built from the descriptors
the server gives through reflection, methods are called with generic stubs, and errors are read
through grpcio-status as google.rpc.Status with google.rpc.BadRequest details.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory, text_format
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

REPO = Path(__file__).resolve().parents[2]

# A merchant registered as a city-tax payer in CONFIG, as in tests/e2e/receipts.rs.
CITY_TIN = "37900846788"

CLIENT_ID = "contract-admin"
CLIENT_SECRET = "contract-admin-secret"

# A client with every scope (as AUTH_CONFIG in the Rust end-to-end tests).
AUTH_CONFIG = f"""
[[auth.clients]]
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
scopes = ["admin"]
"""

# The cluster's configuration (`--config`): the city-tax merchant (as CONFIG in the Rust
# end-to-end tests) and the client.
CONFIG = f"""
[[receipts.merchants]]
tin = "{CITY_TIN}"
name = "Дээж Дэлгүүр ХХК"
city_tax_payer = true
""" + AUTH_CONFIG

# fiscus dev's: the client alone, so that its own merchants stand — the same city-tax merchant,
# on the built-in signer, and the e-barimt merchant wired to its POSAPI sandbox.
DEV_CONFIG = AUTH_CONFIG

START_TIMEOUT = 30.0
RPC_TIMEOUT = 10.0


def bin_dir() -> Path:
    return Path(os.environ.get("FISCUS_BIN_DIR") or REPO / "target" / "debug")


def uuid7_hex() -> str:
    """A UUID v7 (its first 48 bits the time in ms), so a schema's name says when it was made."""
    ms = time.time_ns() // 1_000_000
    value = (ms << 80) | (0x7 << 76) | (secrets.randbits(12) << 64)
    value |= (0b10 << 62) | secrets.randbits(62)
    return f"{value:032x}"


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


class Server:
    """A fiscus process started by the tests; its stdout and stderr go to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path,
                 listening: Callable[[str], str | None]):
        self.name = name
        self.log = log
        self._log_file = open(log, "wb")
        self.process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.addr = self._wait_listening(listening)

    def _wait_listening(self, listening: Callable[[str], str | None]) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = self.log.read_text(encoding="utf-8", errors="replace")
            for line in text.splitlines():
                addr = listening(line)
                if addr:
                    return addr
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.process.returncode}) before listening:\n{text}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not say where it listens within {START_TIMEOUT} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


def dev_listening(line: str) -> str | None:
    if " listening on " not in line:
        return None
    rest = line.split(" listening on ", 1)[1].split()
    return rest[0] if rest else None


def json_listening(line: str) -> str | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    fields = event.get("fields") if isinstance(event.get("fields"), dict) else event
    if fields.get("message") == "listening" and fields.get("addr"):
        return str(fields["addr"])
    return None


def _environment(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without FISCUS_* variables, which a fiscus process reads as
    configuration, plus `extra`; the admin (metrics) port on a free port, as runs go side by
    side."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FISCUS_")}
    env["FISCUS_ADMIN__LISTEN"] = "127.0.0.1:0"
    env.update(extra)
    return env


def start_dev(data_dir: Path, config: Path, log: Path) -> tuple[Server, str]:
    argv = [str(bin_dir() / "fiscus"), "dev", "--listen", "127.0.0.1:0",
            "--data-dir", str(data_dir), "--config", str(config)]
    server = Server("fiscus dev", argv, _environment({}), log, dev_listening)
    token = (data_dir / "dev-token").read_text().strip()
    return server, token


def start_service(kind: str, config: Path, log: Path, env: dict[str, str]) -> Server:
    argv = [str(bin_dir() / f"fiscus-{kind}"), "--config", str(config)]
    env = dict({"FISCUS_SERVER__LISTEN": "127.0.0.1:0", "FISCUS_TELEMETRY__LOG_FORMAT": "json"},
               **env)
    return Server(f"fiscus-{kind}", argv, _environment(env), log, json_listening)


# ---------------------------------------------------------------------------------------------
# Reflection
# ---------------------------------------------------------------------------------------------


class _ReflectionV1Stub:
    """grpc.reflection.v1 spoken with the v1alpha messages (the two are the same on the wire)."""

    def __init__(self, channel: grpc.Channel):
        self.ServerReflectionInfo = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )


def reflection_db(channel: grpc.Channel, version: str = "v1alpha") -> ProtoReflectionDescriptorDatabase:
    db = ProtoReflectionDescriptorDatabase(channel)
    if version == "v1":
        db._stub = _ReflectionV1Stub(channel)
    return db


def descriptor_source(channel: grpc.Channel) -> tuple[ProtoReflectionDescriptorDatabase, str]:
    """The reflection the tests build their messages from: v1alpha, which grpcio-reflection
    speaks, and v1 only where v1alpha is missing, so that one missing service (which
    test_reflection names) does not hide every other defect."""
    db = reflection_db(channel, "v1alpha")
    try:
        db.get_services()
        return db, "v1alpha"
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise
    db = reflection_db(channel, "v1")
    db.get_services()
    return db, "v1"


# ---------------------------------------------------------------------------------------------
# Calls
# ---------------------------------------------------------------------------------------------


class Refusal(Exception):
    """A call that ended in an error status, with its google.rpc details read."""

    def __init__(self, method: str, error: grpc.RpcError):
        self.code: grpc.StatusCode = error.code()
        self.message: str = error.details() or ""
        self.status = rpc_status.from_call(error)
        self.violations: list[tuple[str, str]] = []
        if self.status is not None:
            for detail in self.status.details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    self.violations += [(v.field, v.description) for v in bad.field_violations]
        super().__init__(f"{method}: {self.code.name}: {self.message} "
                         f"(violations: {self.violations})")

    @property
    def fields(self) -> list[str]:
        return [field for field, _ in self.violations]


class Client:
    """Calls one fiscus server with generic stubs, messages built from its reflection."""

    def __init__(self, addr: str, token: str | None = None):
        self.addr = addr
        self.channel = grpc.insecure_channel(
            addr, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        self.db, self.reflection_version = descriptor_source(self.channel)
        self.pool = descriptor_pool.DescriptorPool(self.db)
        self.token = token

    def close(self) -> None:
        self.channel.close()

    # Messages ------------------------------------------------------------------------------

    def cls(self, full_name: str):
        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))

    def msg(self, full_name: str, value: dict | None = None):
        """A message of the given type, from a dict in the proto JSON mapping."""
        message = self.cls(full_name)()
        if value:
            json_format.ParseDict(value, message)
        return message

    def method(self, path: str):
        service, name = path.lstrip("/").split("/")
        return self.pool.FindServiceByName(service).methods_by_name[name]

    # Calls ---------------------------------------------------------------------------------

    def metadata(self, extra: Iterable[tuple[str, str]] = (), auth: bool = True):
        pairs = list(extra)
        if auth and self.token:
            pairs.append(("authorization", f"Bearer {self.token}"))
        return pairs

    def call(self, path: str, request: Any, metadata: Iterable[tuple[str, str]] = (),
             auth: bool = True):
        """A unary call. request is a message, a dict (proto JSON mapping) or raw bytes."""
        method = self.method(path)
        input_cls = message_factory.GetMessageClass(method.input_type)
        output_cls = message_factory.GetMessageClass(method.output_type)
        if isinstance(request, dict):
            request = json_format.ParseDict(request, input_cls())
        serializer = (lambda b: b) if isinstance(request, (bytes, bytearray)) else \
            (lambda m: m.SerializeToString())
        stub = self.channel.unary_unary(
            "/" + path.lstrip("/"), request_serializer=serializer,
            response_deserializer=output_cls.FromString)
        try:
            return stub(request, metadata=self.metadata(metadata, auth), timeout=RPC_TIMEOUT)
        except grpc.RpcError as error:
            raise Refusal(path, error) from None

    def stream(self, path: str, request: Any, metadata: Iterable[tuple[str, str]] = ()):
        """A server-streaming call: every answer, as a list."""
        method = self.method(path)
        input_cls = message_factory.GetMessageClass(method.input_type)
        output_cls = message_factory.GetMessageClass(method.output_type)
        if isinstance(request, dict):
            request = json_format.ParseDict(request, input_cls())
        stub = self.channel.unary_stream(
            "/" + path.lstrip("/"), request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=output_cls.FromString)
        try:
            return list(stub(request, metadata=self.metadata(metadata), timeout=RPC_TIMEOUT))
        except grpc.RpcError as error:
            raise Refusal(path, error) from None


def enum_label(message: Any, field: str) -> str:
    """The proto name of an enum field's value, e.g. RECEIPT_KIND_SALE."""
    number = getattr(message, field)
    value = message.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number.get(number)
    return value.name if value else str(number)


def refused(call: Callable[[], Any]) -> Refusal:
    """The refusal of a call that must fail."""
    try:
        answer = call()
    except Refusal as refusal:
        return refusal
    raise AssertionError(f"the call succeeded, but had to fail; it answered {summary(answer)}")


def summary(answer: Any) -> str:
    """One line about an answer: a receipt's number and id, or the message on one line."""
    receipt = None
    if answer.DESCRIPTOR.full_name == "fiscus.v1.Receipt":
        receipt = answer
    elif "receipt" in answer.DESCRIPTOR.fields_by_name:
        receipt = answer.receipt
    if receipt is not None:
        return f"{enum_label(receipt, 'kind')} receipt {receipt.receipt_number} ({receipt.id})"
    text = text_format.MessageToString(answer, as_one_line=True)
    return text if len(text) <= 300 else text[:300] + "…"


# ---------------------------------------------------------------------------------------------
# Protobuf wire format, for requests whose byte order the tests choose
# ---------------------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(field_number: int, payload: bytes) -> bytes:
    return varint(field_number << 3 | 2) + varint(len(payload)) + payload


def map_entry(field_number: int, key: str, value: str) -> bytes:
    entry = length_delimited(1, key.encode()) + length_delimited(2, value.encode())
    return length_delimited(field_number, entry)


def new_id() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------------------------------------
# Request shapes (those of tests/e2e/receipts.rs), in the proto JSON mapping
# ---------------------------------------------------------------------------------------------

SIGN = "fiscus.v1.ReceiptService/SignReceipt"
CANCEL = "fiscus.v1.ReceiptService/CancelReceipt"
GET = "fiscus.v1.ReceiptService/GetReceipt"
LIST = "fiscus.v1.ReceiptService/ListReceipts"
VERIFY = "fiscus.v1.ReceiptService/VerifyJournal"
EXPORT = "fiscus.v1.ReceiptService/ExportJournal"


def terminal(tin: str = CITY_TIN) -> dict:
    """A terminal nobody used yet: a random pos_no."""
    return {"merchant_tin": tin, "branch_no": "001", "pos_no": uuid.uuid4().hex[:12]}


def item(name: str, quantity: str, unit_price: str, tax_type: str = "TAX_TYPE_VAT_ABLE") -> dict:
    return {"name": name, "quantity": quantity, "unit_price": unit_price, "tax_type": tax_type,
            "measure_unit": "ш", "classification_code": "2349010"}


def cash(amount: str) -> dict:
    return {"method": "PAYMENT_METHOD_CASH", "amount": amount}


def sale(till: dict, items: list[dict], paid: str) -> dict:
    return {"operation_id": new_id(), "terminal": dict(till),
            "type": "RECEIPT_TYPE_B2C_RECEIPT", "kind": "RECEIPT_KIND_SALE",
            "receipt_reference": f"order-{uuid.uuid4().hex}", "items": items,
            "payments": [cash(paid)]}


def bread_sale(till: dict) -> dict:
    """A B2C sale of one VAT_ABLE loaf, paid in cash."""
    return sale(till, [item("Талх", "1", "5600")], "5600")


def zero_receipt(till: dict) -> dict:
    return {"operation_id": new_id(), "terminal": dict(till), "kind": "RECEIPT_KIND_ZERO",
            "receipt_reference": f"zero-{uuid.uuid4().hex}"}


def refund(till: dict, paid: str, lines: list[tuple[int, str]] = (), receipt_id: str = "",
           receipt_reference: str = "") -> dict:
    original = {"receipt_id": receipt_id} if receipt_id else \
        {"receipt_reference": receipt_reference}
    return {"operation_id": new_id(), "terminal": dict(till), "kind": "RECEIPT_KIND_REFUND",
            "receipt_reference": f"refund-{uuid.uuid4().hex}", "payments": [cash(paid)],
            "refund_of": dict(original, lines=[{"position": p, "quantity": q}
                                               for p, q in lines])}


# ---------------------------------------------------------------------------------------------
# ReceiptService calls
# ---------------------------------------------------------------------------------------------


def sign(client: Client, request, metadata: Iterable[tuple[str, str]] = ()):
    """Signs a receipt; answers the journaled Receipt."""
    return client.call(SIGN, request, metadata).receipt


def get_receipt(client: Client, receipt_id: str):
    return client.call(GET, {"receipt_id": receipt_id}).receipt


def verify(client: Client, till: dict, **numbers):
    return client.call(VERIFY, dict(numbers, terminal=till))


def receipt_numbers(client: Client, till: dict) -> list[int]:
    """The numbers of every receipt of a terminal, newest first (ListReceipts)."""
    numbers, token = [], ""
    while True:
        page = client.call(LIST, {"terminal": till, "page_size": 500, "page_token": token})
        numbers += [r.receipt_number for r in page.receipts]
        token = page.next_page_token
        if not token:
            return numbers


def journal_state(client: Client, till: dict) -> tuple[list[int], int]:
    """What says whether anything was journaled: ListReceipts' numbers and the chain head."""
    return receipt_numbers(client, till), verify(client, till).head_number


def export(client: Client, till: dict, fmt: str) -> bytes:
    chunks = client.stream(EXPORT, {"terminal": till, "format": fmt})
    return b"".join(answer.chunk.data for answer in chunks)


def journal_of_every_kind(client, till):
    """A terminal's journal with a sale of several items, a zero receipt, a sale and its
    cancellation, and a refund: their ids in receipt-number order."""
    sold = sign(client, sale(till, [item('Талх "Сүү", 1л', "2", "2500.50"),
                                    item("Өндөг", "3", "1100"),
                                    item("Эм", "0.5", "1000", "TAX_TYPE_VAT_FREE")],
                             "8801.00"))
    zero = sign(client, zero_receipt(till))
    cancelled = sign(client, bread_sale(till))
    cancellation = client.call(CANCEL, {"operation_id": new_id(), "terminal": till,
                                        "receipt_id": cancelled.id,
                                        "reason": "contract test"}).cancellation
    refunded = sign(client, {"operation_id": new_id(), "terminal": till,
                             "kind": "RECEIPT_KIND_REFUND",
                             "receipt_reference": f"refund-{new_id()}",
                             "payments": [{"method": "PAYMENT_METHOD_CASH", "amount": "1100"}],
                             "refund_of": {"receipt_id": sold.id,
                                           "lines": [{"position": 2, "quantity": "1"}]}})
    ids = [sold.id, zero.id, cancelled.id, cancellation.id, refunded.id]
    return ids
