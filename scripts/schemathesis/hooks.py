"""Schemathesis hooks for scripts/schemathesis.sh.

* Strategies for the two string formats of the smsctl document that no
  pattern can state (see openapi.yaml): `phone`, a number that is possible
  for its country, and `cursor`, an opaque keyset cursor. Positive data uses
  them; negative data still breaks the patterns and lengths around them.
* send_at (POST /v1/messages and each message of a batch): in bodies
  generated as valid, a schema-valid send_at is moved into the window the
  server accepts (60 s in the past to 35 days ahead of its clock), which no
  schema can state. A batch's valid Idempotency-Key is replaced by one
  derived from its body (see _batch_idempotency_key).
* The known false positives: failures listed, with the reason each is not a
  fault of the server or the document, in known-false-positives.yaml are
  dropped (and counted at the end of the run); every other failure fails it.
* account_isolation, a check of its own: account B (which never sends)
  must get 404 for every message account A created, see none of them in
  its lists, per-phone lists and stats. schemathesis' own
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
import json
import os
import re
import sys
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import schemathesis
import requests
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


@schemathesis.hook
def after_load_schema(context, schema):
    from schemathesis.wfc.escalation import restore_identity_assignments

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
    if case.method != "POST" or case.operation.path not in ("/v1/messages", "/v1/messages/batch"):
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


# --- account isolation ---------------------------------------------------------


@schemathesis.check
class account_isolation:
    """Account B sees none of the messages account A sent."""

    def __init__(self):
        self.lock = threading.Lock()
        self.created: dict[str, tuple[str, str]] = {}  # id -> (base URL, recipient)

    def after_response(self, ctx, response, case):
        if case.method != "POST" or case.operation.path != "/v1/messages" or response.status_code != 202:
            return
        try:
            body = response.json()
            base = response.request.url.split("/v1/messages", 1)[0]
            with self.lock:
                self.created[body["id"]] = (base, body["recipient"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return

    def after_run(self, ctx):
        key_b = os.environ.get("SMS_ST_KEY_B")
        if not key_b or not self.created:
            return
        problems = []
        with requests.Session() as http:
            http.headers["Authorization"] = f"Bearer {key_b}"
            items = list(self.created.items())
            base = items[0][1][0]
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
                f"account B (which sent nothing) sees account A's messages ({len(self.created)} created by A):\n  "
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
    if entry["check"] not in _check_names(failure):
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
        for v in got:
            if not any(
                v.get("field") == a["field"] and str(v.get("message", "")).startswith(a.get("message", ""))
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
