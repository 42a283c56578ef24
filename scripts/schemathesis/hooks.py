"""Schemathesis hooks for scripts/schemathesis.sh.

* Strategies for the string formats of the smsctl document that no
  pattern can state (see openapi.yaml): `phone`, a number that is possible
  for its country, and the opaque keyset cursors `cursor` (message lists),
  `webhook-cursor` (a delivery log) and `suppression-cursor`. Positive data
  uses them; negative data still breaks the patterns and lengths around
  them.
* send_at (POST /v1/messages and each message of a batch): in bodies
  generated as valid, a schema-valid send_at is moved into the window the
  server accepts (60 s in the past to 35 days ahead of its clock), which no
  schema can state. A batch's valid Idempotency-Key is replaced by one
  derived from its body (see _batch_idempotency_key).
* Webhook endpoints: in bodies generated as valid, most URLs are pointed at
  a receiver these hooks run on loopback (the API under test allows
  private endpoints), so events are really delivered and the delivery logs
  fill; some receivers answer 500 (retried) or 410 (the endpoint is
  disabled); the other URLs keep their form but get a host under .invalid,
  so nothing is ever sent off the machine. The check webhook_payloads verifies every request that
  receiver got: the Standard Webhooks headers and signature (with the
  secret the API returned for the endpoint) and the body against the
  document's WebhookEvent schema. An account is kept at a few endpoints
  (the oldest are deleted past 8, well below the 20 allowed), so that
  creations keep succeeding and each event fans out to a few endpoints
  only.
* Inbound hand-overs (POST /v1/internal/inbound): half of the valid ones
  are sent to account A's number (scripts/schemathesis.sh gives it one),
  from numbers the sends never draw, with a carrier id of their own, some
  of them with a keyword (STOP, START, HELP), so inbound lists,
  suppressions and message.received webhooks have data.
* The known false positives: failures listed, with the reason each is not a
  fault of the server or the document, in known-false-positives.yaml are
  dropped (and counted at the end of the run); every other failure fails it.
* account_isolation, a check of its own: account B (which never sends)
  must get 404 for every message account A created, see none of them in
  its lists, per-phone lists and stats, nor A's webhook endpoints, inbound
  messages and suppressions. schemathesis' own
  object_level_authorization replays A's reads as B too, but only once per
  operation. And token_separation: an API key is refused on the internal
  routes, the internal token on the client routes.
* A lock around ast.parse, for a CPython bug (fixed in 3.11.8 and 3.12.1):
  two threads parsing at once fail with "SystemError: AST constructor
  recursion depth mismatch", which Hypothesis does when it describes a
  strategy, so with two workers a run could end in a spurious error.
"""

from __future__ import annotations

import ast
import atexit
import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema_rs
import requests
import schemathesis
import yaml
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation

# --- CPython's ast.parse is not thread-safe before 3.11.8 / 3.12.1 -----------
_parse_lock = threading.Lock()
_ast_parse = ast.parse


def _locked_parse(*args, **kwargs):
    with _parse_lock:
        return _ast_parse(*args, **kwargs)


ast.parse = _locked_parse

# --- the processor's identity for the internal routes ----------------------------
# The WFC auth file lists account-a, account-b and processor. Left alone,
# schemathesis would send an operation's first requests as account-a and move
# on to the next identity after each 401, so the first cases of the internal
# routes (the coverage phase's, which run once) would test only the 401.
# Start every operation that declares the internalToken scheme as processor.


_RAW_SCHEMA: dict = {}


@schemathesis.hook
def after_load_schema(context, schema):
    from schemathesis.wfc.escalation import restore_identity_assignments

    _RAW_SCHEMA.update(schema.raw_schema)
    internal = {}
    for path, item in (schema.raw_schema.get("paths") or {}).items():
        for method, op in item.items():
            if isinstance(op, dict) and any("internalToken" in req for req in op.get("security") or []):
                internal[f"{method.upper()} {path}"] = "processor"
    if not internal:
        raise RuntimeError("hooks.py: no operation declares the internalToken scheme; update hooks.py")
    restore_identity_assignments(schema, internal)


# --- format: phone -----------------------------------------------------------
# Possible numbers (libphonenumber's metadata) from several countries: country
# code, national number. Only the last four digits vary, which keeps the
# length, and so the number possible, for every one of them.
_NUMBERS = [
    ("1", "4155552671"),  # US
    ("1", "6135550123"),  # CA
    ("44", "2071838750"),  # GB
    ("44", "7400123456"),  # GB mobile
    ("33", "123456789"),  # FR
    ("49", "30123456"),  # DE
    ("81", "312345678"),  # JP
    ("61", "212345678"),  # AU
    ("55", "11961234567"),  # BR
    ("91", "9876543210"),  # IN
    ("86", "13812345678"),  # CN
    ("34", "912345678"),  # ES
    ("27", "211234567"),  # ZA
    ("7", "9123456789"),  # RU
]
_SEPARATORS = st.sampled_from(["", "", "", " ", "-", ".", "(", ")", " (", ") "])
# Whitespace that Go's strings.TrimSpace removes around a number.
_AROUND = st.sampled_from(["", "", "", " ", "\t", "\n", "\u00a0", "\u3000"])


@st.composite
def _phone(draw):
    cc, national = draw(st.sampled_from(_NUMBERS))
    tail = draw(st.text(alphabet="0123456789", min_size=4, max_size=4))
    digits = cc + national[:-4] + tail
    # No separator before the plus: a sender taken for a phone number starts with it.
    out = draw(_AROUND) + "+"
    for i, d in enumerate(digits):
        out += d
        if i < len(digits) - 1 and draw(st.integers(0, 3)) == 0:
            out += draw(_SEPARATORS)
    return out + draw(_AROUND)


schemathesis.openapi.format("phone", _phone())

# --- format: cursor ----------------------------------------------------------
# base64url, unpadded, of "<unix micros>.<uuid>", as sms.Cursor.String writes.
_cursor = st.builds(
    lambda micros, uid: base64.urlsafe_b64encode(f"{micros}.{uid}".encode()).rstrip(b"=").decode(),
    st.integers(min_value=0, max_value=4102444800_000000),  # up to 2100-01-01
    st.uuids(),
)
schemathesis.openapi.format("cursor", _cursor)

# --- format: webhook-cursor, suppression-cursor -------------------------------
# base64url, unpadded, of "<unix micros>.<uuid>.<attempt>" (webhook.Cursor)
# and of "<unix micros>.<phone>" (sms.SuppressionCursor).
_b64 = lambda raw: base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()  # noqa: E731
schemathesis.openapi.format(
    "webhook-cursor",
    st.builds(
        lambda micros, uid, attempt: _b64(f"{micros}.{uid}.{attempt}"),
        st.integers(min_value=0, max_value=4102444800_000000),
        st.uuids(),
        st.integers(min_value=1, max_value=20),
    ),
)
schemathesis.openapi.format(
    "suppression-cursor",
    st.builds(
        lambda micros, number, tail: _b64(f"{micros}.+{number[0]}{number[1][:-4]}{tail}"),
        st.integers(min_value=0, max_value=4102444800_000000),
        st.sampled_from(_NUMBERS),
        st.text(alphabet="0123456789", min_size=4, max_size=4),
    ),
)

# --- send_at: a time within the window the server accepts ----------------------
# send_at must be at most 60 s in the past and at most 35 days ahead, judged
# against the server's clock when the request arrives: a rule no schema can
# state. A schema-valid send_at in a body generated as valid (every phase:
# examples, coverage, fuzzing, stateful) is replaced by one inside the
# window, derived from the drawn value so that a seed still repeats a run,
# and written in the forms the document allows (Z or an offset, with or
# without fractional seconds). Bodies generated as invalid are left alone.
_SEND_AT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")
_WINDOW = (-20, 35 * 24 * 3600 - 600)  # seconds from now: the slack minus transit, the horizon minus margin


def _send_at_in_window(drawn: str) -> str:
    h = int.from_bytes(hashlib.sha256(drawn.encode()).digest()[:8], "big")
    lo, hi = _WINDOW
    # A quarter of them within the next minute (PENDING at once or soon), the rest anywhere in the window.
    offset = lo + h % 80 if h % 4 == 0 else lo + (h >> 2) % (hi - lo)
    at = datetime.now(timezone.utc) + timedelta(seconds=offset, microseconds=(h >> 40) % 1_000_000)
    tz = [timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-7))][(h >> 8) % 3]
    text = at.astimezone(tz).isoformat(timespec=["seconds", "milliseconds", "microseconds"][(h >> 12) % 3])
    return text.replace("+00:00", "Z")


def _fix_send_at(message) -> bool:
    if isinstance(message, dict) and isinstance(message.get("send_at"), str) and _SEND_AT.match(message["send_at"]):
        message["send_at"] = _send_at_in_window(message["send_at"])
        return True
    return False


@schemathesis.hook
def before_add_examples(context, examples):
    # The examples phase applies no map_case: its cases (the document's
    # examples, all valid) come through here.
    for case in examples:
        map_case(context, case)


@schemathesis.hook
def map_case(context, case):
    path = case.operation.path
    if case.method == "POST" and path == "/v1/webhook-endpoints" or case.method == "PATCH" and path == "/v1/webhook-endpoints/{id}":
        return _map_webhook_url(case)
    if case.method == "POST" and path == "/v1/internal/inbound":
        return _map_inbound(case)
    if case.method == "POST" and path == "/v1/webhook-endpoints/{id}/replay":
        return _map_replay(case)
    if case.method != "POST" or path not in ("/v1/messages", "/v1/messages/batch"):
        return case
    meta = getattr(case, "meta", None)
    if meta is not None and meta.is_negative_at(ParameterLocation.BODY):
        return case
    body = case.body
    changed = False
    if case.operation.path == "/v1/messages":
        changed = _fix_send_at(body)
    elif isinstance(body, dict) and isinstance(body.get("messages"), list):
        for message in body["messages"]:
            changed = _fix_send_at(message) or changed
        _batch_idempotency_key(case, meta)
    if changed and meta is not None:
        meta.mark_dirty(ParameterLocation.BODY)
    return case


def _batch_idempotency_key(case, meta) -> None:
    # A key is scoped to the account, not the route, and schemathesis keeps
    # drawing the parameter's example: once POST /v1/messages used it, every
    # batch carrying it got 422 (idempotency-key-reused), and few batches
    # reached the batch's own logic. A valid key on a batch is replaced by
    # one derived from the body: the same batch sent again is replayed (200,
    # Idempotent-Replayed), a different one is stored. The 422 path stays
    # tested on POST /v1/messages.
    headers = case.headers or {}
    key = headers.get("Idempotency-Key")
    if not isinstance(key, str) or not re.fullmatch(r"[!-~]{1,255}", key):
        return
    if meta is not None and meta.is_negative_at(ParameterLocation.HEADER):
        return
    digest = hashlib.sha256(json.dumps(case.body, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    headers["Idempotency-Key"] = "batch-" + digest.hexdigest()[:40]
    case.headers = headers


# --- webhooks: a receiver on loopback ----------------------------------------------
# POST and PATCH /v1/webhook-endpoints bodies generated as valid get, for 3 of
# 4 drawn URLs (chosen from the drawn value, so a seed still repeats a run),
# http://127.0.0.1:<port>/hook/<kind>/<token> instead: kind ok (answers 204),
# fail (500: retried on the schedule) or gone (410: the API disables the
# endpoint). The other quarter keep the drawn URL's form (user information,
# port, path, query) with its host replaced by one under .invalid (RFC 2606:
# never resolves), so that the API's URL check sees varied URLs and no event
# leaves the machine: their attempts fail, and the logs show it. The
# receiver keeps what it got for the webhook_payloads check.
_URL_VALID = re.compile(r"^[Hh][Tt][Tt][Pp][Ss]?://[!-~]+$")
_URL_PARTS = re.compile(r"^([Hh][Tt][Tt][Pp][Ss]?://)([^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)(.*)$", re.S)


class _Receiver(http.server.BaseHTTPRequestHandler):
    got: list = []
    lock = threading.Lock()
    last = 0.0

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with _Receiver.lock:
            if len(_Receiver.got) < 5000:
                _Receiver.got.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            _Receiver.last = time.monotonic()
        code = 410 if "/gone/" in self.path else 500 if "/fail/" in self.path else 204
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


_receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
_receiver.daemon_threads = True
threading.Thread(target=_receiver.serve_forever, name="webhook-receiver", daemon=True).start()
_RECEIVER = f"http://127.0.0.1:{_receiver.server_address[1]}"


def _map_webhook_url(case):
    meta = getattr(case, "meta", None)
    body = case.body
    if meta is not None and meta.is_negative_at(ParameterLocation.BODY):
        return case
    if not isinstance(body, dict) or not isinstance(body.get("url"), str) or not _URL_VALID.match(body["url"]):
        return case
    h = int.from_bytes(hashlib.sha256(body["url"].encode("utf-8", "surrogatepass")).digest()[:8], "big")
    m = _URL_PARTS.match(body["url"])
    unreachable = m and f"{m[1]}{m[2] or ''}st-{h:016x}.invalid{m[4]}"
    if h % 4 == 0 and unreachable and len(unreachable) <= 2048:
        body["url"] = unreachable
    else:
        kind = "gone" if h % 16 == 1 else "fail" if h % 8 == 2 else "ok"
        body["url"] = f"{_RECEIVER}/hook/{kind}/{h:016x}"
    if meta is not None:
        meta.mark_dirty(ParameterLocation.BODY)
    return case


# Secrets the API returned, by endpoint id, and the endpoints of each
# receiver URL (several endpoints may share one: schemathesis repeats drawn
# values), for webhook_payloads.
_secrets: dict[str, list[str]] = {}
_endpoints_of_url: dict[str, set[str]] = {}
# Endpoints per account (by Authorization header), as last counted.
_endpoints: Counter[str] = Counter()
_endpoints_lock = threading.Lock()
_ENDPOINTS_HIGH, _ENDPOINTS_LOW = 8, 4


@schemathesis.hook
def after_call(context, case, response):
    path = case.operation.path
    if path not in ("/v1/webhook-endpoints", "/v1/webhook-endpoints/{id}/rotate-secret", "/v1/webhook-endpoints/{id}"):
        return
    body = _problem(response) or {}
    if response.status_code in (200, 201) and isinstance(body.get("id"), str) and isinstance(body.get("url"), str):
        with _endpoints_lock:
            if isinstance(body.get("secret"), str):
                _secrets.setdefault(body["id"], []).append(body["secret"])
            _endpoints_of_url.setdefault(body["url"], set()).add(body["id"])
    if case.method != "POST" or path != "/v1/webhook-endpoints":
        return
    if response.status_code not in (201, 422):
        return
    # Keep the account at a few endpoints: past 8, delete the oldest down
    # to 4 (with the same credentials), so creations go on succeeding and
    # an event (a batch holds up to 1000 messages) fans out to few endpoints.
    auth = response.request.headers.get("Authorization")
    if not auth:
        return
    with _endpoints_lock:
        _endpoints[auth] += 1
        if response.status_code == 201 and _endpoints[auth] < _ENDPOINTS_HIGH:
            return
        _endpoints[auth] = _ENDPOINTS_LOW  # other threads skip meanwhile
    url = response.request.url.split("?", 1)[0]
    try:
        with requests.Session() as http_:
            http_.headers["Authorization"] = auth
            r = http_.get(url, timeout=10)
            endpoints = r.json().get("webhook_endpoints") or [] if r.ok else []
            for ep in endpoints[: max(0, len(endpoints) - _ENDPOINTS_LOW)]:
                http_.delete(f"{url}/{ep['id']}", timeout=10)
    except (requests.RequestException, ValueError, KeyError, TypeError):
        pass


# --- replay: since not in the future ----------------------------------------------
# since must not be in the future of the server's clock: a schema-valid since
# in a body generated as valid is moved into the last 30 days (derived from
# the drawn value) when it is later than a minute ago.
def _map_replay(case):
    meta = getattr(case, "meta", None)
    body = case.body
    if meta is not None and meta.is_negative_at(ParameterLocation.BODY):
        return case
    if not isinstance(body, dict) or not isinstance(body.get("since"), str) or not _SEND_AT.match(body["since"]):
        return case
    try:
        drawn = datetime.fromisoformat(re.sub(r"(\.[0-9]{6})[0-9]+", r"\1", body["since"]).replace("Z", "+00:00"))
        if drawn < datetime.now(timezone.utc) - timedelta(minutes=1):
            return case
    except (ValueError, OverflowError):
        pass  # year 0, or an offset Python refuses: replaced too
    h = int.from_bytes(hashlib.sha256(body["since"].encode()).digest()[:8], "big")
    at = datetime.now(timezone.utc) - timedelta(seconds=60 + h % (30 * 24 * 3600))
    body["since"] = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    if meta is not None:
        meta.mark_dirty(ParameterLocation.BODY)
    return case


# --- inbound hand-overs to account A's number ------------------------------------
_KEYWORDS = ["STOP", "stop", " Start ", "START", "HELP", "info", "UNSUBSCRIBE", "yes"]


def _map_inbound(case):
    meta = getattr(case, "meta", None)
    body = case.body
    number = os.environ.get("SMS_ST_NUMBER_A")
    if not number or not isinstance(body, dict) or (meta is not None and meta.is_negative_at(ParameterLocation.BODY)):
        return case
    if not isinstance(body.get("to"), str) or not isinstance(body.get("text"), str):
        return case
    h = int.from_bytes(hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8", "surrogatepass")).digest()[:8], "big")
    if h % 2:
        return case
    body["to"] = number
    # A carrier id of its own: a repeat of a drawn id (schemathesis repeats
    # values, the document's example first) would get the first answer.
    body["carrier_message_id"] = f"st-{h:016x}"
    if h % 8 == 0:
        body["text"] = _KEYWORDS[(h >> 8) % len(_KEYWORDS)]
    # From New Zealand numbers no other drawn value uses, so that a STOP
    # does not suppress the recipients the sends draw.
    body["from"] = f"+64 9 123 {(h >> 16) % 10000:04d}"
    if meta is not None:
        meta.mark_dirty(ParameterLocation.BODY)
    return case


# --- webhook_payloads: what the receiver got --------------------------------------
def _json_schema(node, components, depth=0):
    """The OpenAPI 3.0 schema node as JSON Schema: $refs inlined, nullable as null in type/enum."""
    if depth > 40:
        raise RecursionError("schema too deep")
    if isinstance(node, list):
        return [_json_schema(n, components, depth + 1) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _json_schema(components[node["$ref"].rsplit("/", 1)[1]], components, depth + 1)
    out = {}
    for k, v in node.items():
        if k in ("discriminator", "example", "examples", "nullable", "description", "title", "externalDocs"):
            continue
        if k == "properties":
            out[k] = {name: _json_schema(sub, components, depth + 1) for name, sub in v.items()}
        else:
            out[k] = _json_schema(v, components, depth + 1)
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        if "type" not in out and "enum" not in out:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _signature_ok(secrets, headers, body) -> bool:
    msg = f"{headers.get('webhook-id')}.{headers.get('webhook-timestamp')}.".encode() + body
    sigs = [part.split(",", 1)[1] for part in (headers.get("webhook-signature") or "").split() if part.startswith("v1,")]
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        want = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
        if any(hmac.compare_digest(want, sig) for sig in sigs):
            return True
    return False


@schemathesis.check
class webhook_payloads:
    """Every webhook request the receiver got is signed as Standard Webhooks says, and its body is a WebhookEvent."""

    def after_run(self, ctx):
        # Deliveries are asynchronous: give those under way a moment.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and time.monotonic() - _Receiver.last < 1.0:
            time.sleep(0.2)
        with _Receiver.lock:
            got = list(_Receiver.got)
        schemas = (_RAW_SCHEMA.get("components") or {}).get("schemas") or {}
        if "WebhookEvent" not in schemas:
            raise AssertionError("webhook_payloads: the document has no WebhookEvent schema")
        validator = jsonschema_rs.Draft202012Validator(_json_schema(schemas["WebhookEvent"], schemas), validate_formats=True)
        problems, types, verified = [], Counter(), 0
        id_re, ts_re = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"), re.compile(r"^[0-9]+$")
        for path, headers, body in got:
            where = f"{path} webhook-id {headers.get('webhook-id')}"
            if not id_re.match(headers.get("webhook-id") or "") or not ts_re.match(headers.get("webhook-timestamp") or ""):
                problems.append(f"{where}: headers {headers}")
            if not (headers.get("content-type") or "").startswith("application/json"):
                problems.append(f"{where}: Content-Type {headers.get('content-type')!r}")
            with _endpoints_lock:
                secrets = [x for e in _endpoints_of_url.get(_RECEIVER + path, ()) for x in _secrets.get(e, [])]
            if secrets:
                if _signature_ok(secrets, headers, body):
                    verified += 1
                else:
                    problems.append(f"{where}: no signature in {headers.get('webhook-signature')!r} matches the endpoint's secrets")
            try:
                event = json.loads(body)
            except ValueError as exc:
                problems.append(f"{where}: body is not JSON ({exc}): {body[:200]!r}")
                continue
            types[event.get("type") if isinstance(event, dict) else "?"] += 1
            errors = [e.message for e in validator.iter_errors(event)]
            if errors:
                problems.append(f"{where}: not a WebhookEvent: {errors[:3]}: {body[:300]!r}")
        print(
            f"webhook_payloads: {len(got)} webhook requests received ({', '.join(f'{t} {n}' for t, n in types.most_common()) or 'none'}), "
            f"{verified} signatures verified: {len(problems) or 'no'} problems",
            file=sys.stderr,
        )
        if problems:
            kinds = Counter(p.split(": ", 1)[1].split(" ", 2)[0] + " " + p.split(": ", 1)[1].split(" ", 2)[1] for p in problems)
            raise AssertionError(
                f"{len(problems)} webhook requests do not follow the document ({dict(kinds)}):\n  " + "\n  ".join(problems[:20])
            )


# --- account isolation ---------------------------------------------------------


@schemathesis.check
class account_isolation:
    """Account B sees none of the messages account A sent."""

    def __init__(self):
        self.lock = threading.Lock()
        self.created: dict[str, tuple[str, str]] = {}  # id -> (base URL, recipient)
        self.endpoints: set[str] = set()  # A's webhook endpoints
        self.inbound: set[str] = set()  # A's inbound messages
        self.suppressed: set[str] = set()  # phones A suppressed
        self.base = None

    def after_response(self, ctx, response, case):
        if case.method == "POST" and response.status_code in (200, 201) and case.operation.path in (
            "/v1/webhook-endpoints", "/v1/suppressions", "/v1/internal/inbound"
        ):
            self._record_other(case, response)
            return
        if case.method != "POST" or case.operation.path != "/v1/messages" or response.status_code != 202:
            return
        try:
            body = response.json()
            base = response.request.url.split("/v1/messages", 1)[0]
            with self.lock:
                self.created[body["id"]] = (base, body["recipient"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return

    def _record_other(self, case, response):
        body = _problem(response) or {}
        key_a = os.environ.get("SMS_ST_KEY_A")
        with self.lock:
            self.base = response.request.url.split("/v1/", 1)[0]
            if case.operation.path == "/v1/internal/inbound":
                if body.get("account_routed") is True and isinstance(body.get("id"), str):
                    self.inbound.add(body["id"])
                return
            if response.request.headers.get("Authorization") != f"Bearer {key_a}":
                return
            if case.operation.path == "/v1/webhook-endpoints" and isinstance(body.get("id"), str):
                self.endpoints.add(body["id"])
            elif case.operation.path == "/v1/suppressions" and isinstance(body.get("phone"), str):
                self.suppressed.add(body["phone"])

    def _check_other(self, http, base, problems) -> None:
        # B (which writes nothing) must not see A's webhook endpoints, nor
        # their logs, nor A's inbound messages and suppressions.
        for endpoint_id in sorted(self.endpoints)[:50]:
            for suffix in ("", "/deliveries"):
                r = http.get(f"{base}/v1/webhook-endpoints/{endpoint_id}{suffix}", timeout=10)
                if r.status_code != 404:
                    problems.append(f"GET /v1/webhook-endpoints/{endpoint_id}{suffix} as account B: {r.status_code}, want 404")
        r = http.get(f"{base}/v1/webhook-endpoints", timeout=10)
        leaked = [e.get("id") for e in (r.json().get("webhook_endpoints") or []) if e.get("id") in self.endpoints] if r.ok else []
        if r.status_code != 200 or leaked:
            problems.append(f"GET /v1/webhook-endpoints as account B: {r.status_code}, A's endpoints listed: {leaked[:5]}")
        for inbound_id in sorted(self.inbound)[:50]:
            r = http.get(f"{base}/v1/inbound-messages/{inbound_id}", timeout=10)
            if r.status_code != 404:
                problems.append(f"GET /v1/inbound-messages/{inbound_id} as account B: {r.status_code}, want 404")
        r = http.get(f"{base}/v1/inbound-messages?size=100", timeout=10)
        leaked = [m.get("id") for m in (r.json().get("inbound_messages") or []) if m.get("id") in self.inbound] if r.ok else []
        if r.status_code != 200 or leaked:
            problems.append(f"GET /v1/inbound-messages as account B: {r.status_code}, A's messages listed: {leaked[:5]}")
        r = http.get(f"{base}/v1/suppressions?size=1000", timeout=10)
        leaked = [x.get("phone") for x in (r.json().get("suppressions") or []) if x.get("phone") in self.suppressed] if r.ok else []
        if r.status_code != 200 or leaked:
            problems.append(f"GET /v1/suppressions as account B: {r.status_code}, A's suppressions listed: {leaked[:5]}")
        for phone in sorted(self.suppressed)[:20]:
            r = http.get(f"{base}/v1/suppressions/{requests.utils.quote(phone, safe='')}", timeout=10)
            if r.status_code != 404:
                problems.append(f"GET /v1/suppressions/{phone} as account B: {r.status_code}, want 404")
        print(
            f"account_isolation: account B looked for {min(len(self.endpoints), 50)} of A's {len(self.endpoints)} webhook endpoints, "
            f"{min(len(self.inbound), 50)} of its {len(self.inbound)} inbound messages and "
            f"{min(len(self.suppressed), 20)} of its {len(self.suppressed)} suppressions",
            file=sys.stderr,
        )

    def after_run(self, ctx):
        key_b = os.environ.get("SMS_ST_KEY_B")
        if not key_b or not (self.created or self.endpoints or self.inbound or self.suppressed):
            return
        problems = []
        with requests.Session() as http:
            http.headers["Authorization"] = f"Bearer {key_b}"
            items = list(self.created.items())
            base = items[0][1][0] if items else self.base
            self._check_other(http, base, problems)
            for message_id, (_, recipient) in items[:200]:
                r = http.get(f"{base}/v1/messages/{message_id}", timeout=10)
                if r.status_code != 404:
                    problems.append(f"GET /v1/messages/{message_id} as account B: {r.status_code}, want 404")
            for recipient in sorted({recipient for _, (_, recipient) in items})[:20]:
                r = http.get(f"{base}/v1/users/{requests.utils.quote(recipient, safe='')}/messages", timeout=10)
                if r.status_code != 200 or r.json().get("total_count") != 0:
                    problems.append(f"GET /v1/users/{recipient}/messages as account B: {r.status_code} {r.text[:200]}")
            for path in ("/v1/messages?size=100", "/v1/messages/failed?size=100"):
                r = http.get(base + path, timeout=10)
                leaked = [m.get("id") for m in (r.json().get("messages") or []) if m.get("id") in self.created] if r.ok else []
                if r.status_code != 200 or leaked:
                    problems.append(f"GET {path} as account B: {r.status_code}, A's messages listed: {leaked[:5]}")
            r = http.get(f"{base}/v1/messages/stats", timeout=10)
            if r.status_code != 200 or r.json().get("total_messages") != 0:
                problems.append(f"GET /v1/messages/stats as account B: {r.status_code} {r.text[:200]}, want total_messages 0")
        print(
            f"\naccount_isolation: account B looked for {min(len(items), 200)} of the {len(items)} messages "
            f"account A created: {len(problems) or 'no'} problems",
            file=sys.stderr,
        )
        if problems:
            raise AssertionError(
                f"account B (which sent nothing) sees account A's data ({len(self.created)} messages created by A):\n  "
                + "\n  ".join(problems[:20])
            )


@schemathesis.check
class token_separation:
    """An API key does not open the internal routes, nor the internal token the client routes."""

    def __init__(self):
        self.base = None

    def after_response(self, ctx, response, case):
        if self.base is None and case.operation.path == "/v1/messages/stats":
            self.base = response.request.url.split("/v1/messages/stats", 1)[0]

    def after_run(self, ctx):
        key_a, internal = os.environ.get("SMS_ST_KEY_A"), os.environ.get("SMS_ST_INTERNAL_TOKEN")
        if not self.base or not key_a or not internal:
            return
        report = {"message_id": "7d444840-9dc0-11d1-b245-5ffdce74fad2", "status": "SENT", "processed_at": "2025-06-01T12:00:03Z"}
        probes = [
            ("POST", "/v1/internal/delivery-report", key_a, report),
            ("POST", "/v1/internal/delivery-reports", key_a, {"reports": [report]}),
            ("POST", "/v1/internal/inbound", key_a, {"from": "+14155552671", "to": "+14155550100", "text": "x",
                                                     "received_at": "2025-06-01T12:00:03Z", "carrier_message_id": "token-separation"}),
            ("GET", "/v1/webhook-endpoints", internal, None),
            ("GET", "/v1/suppressions", internal, None),
            ("GET", "/v1/messages", internal, None),
            ("GET", "/v1/messages/stats", internal, None),
            ("POST", "/v1/messages", internal, {"sender": "+14155552671", "recipient": "+442071838750", "text": "x"}),
        ]
        wrong = []
        with requests.Session() as http:
            for method, path, token, body in probes:
                r = http.request(method, self.base + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
                if r.status_code != 401:
                    wrong.append(f"{method} {path} with the {'API key' if token == key_a else 'internal token'}: {r.status_code}, want 401")
        print(f"token_separation: {len(probes)} requests with the wrong credential: {len(wrong) or 'no'} problems", file=sys.stderr)
        if wrong:
            raise AssertionError("credentials work where they must not:\n  " + "\n  ".join(wrong))


# --- known false positives ---------------------------------------------------
_FP_FILE = Path(__file__).with_name("known-false-positives.yaml")
_KNOWN = yaml.safe_load(_FP_FILE.read_text(encoding="utf-8")) or []
_matched: Counter[str] = Counter()
_lock = threading.Lock()


def _check_names(failure) -> set[str]:
    return set(getattr(type(failure), "checks", ()) or ()) | {type(failure).__name__, getattr(failure, "code", "")}


def _problem(response) -> dict | None:
    try:
        body = json.loads(response.content or b"null")
    except (ValueError, TypeError):
        return None
    return body if isinstance(body, dict) else None


def _violations(response) -> list[dict] | None:
    body = _problem(response)
    return None if body is None else body.get("violations") or []


def _matches(entry: dict, failure, case, response) -> bool:
    ops = entry.get("operations") or [entry.get("operation")]
    if "*" not in ops and failure.operation not in ops and case.operation.label not in ops:
        return False
    if not set(_as_list(entry["check"])) & _check_names(failure):
        return False
    if "status" in entry and response.status_code not in _as_list(entry["status"]):
        return False
    if "method" in entry and case.method.upper() not in _as_list(entry["method"]):
        return False
    if "path_contains" in entry and entry["path_contains"] not in response.request.url:
        return False
    if "header" in entry and entry["header"].lower() not in {k.lower() for k in (case.headers or {})}:
        return False
    if "problem_type" in entry and (_problem(response) or {}).get("type") != entry["problem_type"]:
        return False
    if "violations" in entry:
        # Every violation the server reported must be one of those the entry
        # allows (field and the start of its message), so that a request
        # rejected for another reason too is still reported.
        got = _violations(response)
        if not got:
            return False
        allowed = entry["violations"]
        # With match_field_prefix, `stop_words` also stands for
        # `stop_words[3]` (a violation of one item of the list).
        same = (
            (lambda got, want: got == want or got.startswith(want + "["))
            if entry.get("match_field_prefix")
            else (lambda got, want: got == want)
        )
        for v in got:
            if not any(
                same(str(v.get("field")), a["field"]) and str(v.get("message", "")).startswith(a.get("message", ""))
                for a in allowed
            ):
                return False
    return True


def _as_list(value):
    return value if isinstance(value, list) else [value]


@schemathesis.hook
def filter_failure(context, failure, case, response):
    for entry in _KNOWN:
        if _matches(entry, failure, case, response):
            with _lock:
                _matched[entry["id"]] += 1
            return False
    return True


@atexit.register
def _report():
    if _matched and os.environ.get("SMS_ST_QUIET_FP") != "1":
        print("\nKnown false positives dropped (scripts/schemathesis/known-false-positives.yaml):", file=sys.stderr)
        for name, n in sorted(_matched.items()):
            print(f"  {name}: {n}", file=sys.stderr)
