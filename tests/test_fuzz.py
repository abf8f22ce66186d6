"""Bad input, fuzzed: signed bodies, signature headers and plan files never get a 500 or a half-written row.

Property-based (hypothesis). The webhook tests share one app and one SQLite database per test function, so later
examples meet the rows of earlier ones (dedupe included); every example uses webhook-ids and deal ids of its own
unless it is about duplicates. After every request the answer is checked against the README's table and the
database against the ledger of what was sent.

The crashes these tests found (each fixed since) are kept at the end as regression tests with their minimal inputs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import string
import time
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, currently_in_test_context, given, settings
from hypothesis import event as tally
from hypothesis import strategies as st
from sqlalchemy import func, select

from onboarding.domain import Client
from onboarding.models import Event, Onboarding, StepResult
from onboarding.plan import (
    EXTERNAL_LINK_ROLES,
    LINK_KINDS,
    MAX_ROOM_TITLE,
    MEMBER_ROLES,
    ROLES,
    ROOM_TYPES,
    TITLE_FIELDS,
    Plan,
    PlanError,
    load_plan,
    parse_plan,
)
from onboarding.signatures import parse_secret
from onboarding.steps import plan_steps
from tests.conftest import (
    BOTH_ACCEPT_PATHS,
    GENERIC_CRM,
    OLD_WEBHOOK_SECRET,
    WEBHOOK_SECRET,
    deal_payload,
    signed,
)

URL = "/webhooks/deal-won"


@pytest.fixture(params=BOTH_ACCEPT_PATHS)
def accept_path(request) -> str:
    """Every test here runs through the fast path and through Flask alone (see conftest.accept_path)."""
    return request.param
TOLERANCE = 300  # SIGNATURE_TOLERANCE_SECONDS default
MAX_BODY = 256 * 1024  # MAX_BODY_BYTES default
ANSWER_KEYS = {"onboarding_id", "status", "status_url", "duplicate", "event_id"}

FIXTURE_SETTINGS = {"deadline": None, "database": None,
                    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                              HealthCheck.data_too_large, HealthCheck.large_base_example]}


# -- the app and the ledger ----------------------------------------------------------------------------------


@pytest.fixture
def webhook_app(make_app, sqlite_url):
    """One app on one migrated SQLite database, shared by every example of a test function."""
    app = make_app(sqlite_url)
    yield app
    app.extensions["onboarding"].db.dispose()


@dataclass
class Ledger:
    """What the examples of one test sent and were told: the oracle of the database checks."""

    delivery_ids: set[str] = field(default_factory=set)
    onboarding_by_deal: dict[str, str] = field(default_factory=dict)
    onboarding_by_delivery: dict[str, str] = field(default_factory=dict)  # ids whose event names an onboarding

    def __repr__(self) -> str:
        """Short, for hypothesis' failure reports."""
        return (f"Ledger({len(self.delivery_ids)} deliveries, {len(self.onboarding_by_deal)} onboardings; "
                "the database check of the failing example names what differs)")


@pytest.fixture
def ledger() -> Ledger:
    """An empty ledger for one test function."""
    return Ledger()


def counts(app) -> tuple[int, int]:
    """(events, onboardings) in the database."""
    with app.extensions["onboarding"].db.reading() as session:
        return (session.scalar(select(func.count()).select_from(Event)),
                session.scalar(select(func.count()).select_from(Onboarding)))


def check_database(app, ledger: Ledger) -> None:
    """The whole database agrees with the ledger and with itself: no lost, orphaned or half-written row."""
    with app.extensions["onboarding"].db.reading() as session:
        events = session.execute(select(Event.delivery_id, Event.source, Event.outcome, Event.onboarding_id,
                                        Event.body, Event.headers)).all()
        onboardings = session.execute(select(Onboarding.id, Onboarding.deal_id, Onboarding.status,
                                             Onboarding.attempts, Onboarding.client_id, Onboarding.client_name,
                                             Onboarding.client_email, Onboarding.manager_user_id)).all()
        steps = session.scalar(select(func.count()).select_from(StepResult))
    assert len(events) == len(ledger.delivery_ids)
    assert {event.delivery_id for event in events} == ledger.delivery_ids
    for event in events:
        assert event.source == "generic"
        assert event.outcome in ("accepted", "duplicate", "ignored", "rejected"), event.outcome
        assert (event.onboarding_id is not None) == (event.outcome in ("accepted", "duplicate")), event.outcome
        assert isinstance(event.body, bytes) and isinstance(event.headers, dict)
        assert event.headers.get("webhook-id") == event.delivery_id and "webhook-signature" not in event.headers
    # every onboarding has an event pointing at it, and every pointer names an onboarding
    assert {row.id for row in onboardings} == {event.onboarding_id for event in events if event.onboarding_id}
    assert {(row.deal_id, row.id) for row in onboardings} == set(ledger.onboarding_by_deal.items())
    for row in onboardings:
        assert (row.status, row.attempts) == ("queued", 0)
        assert all(isinstance(value, str) and value for value in (row.deal_id, row.client_id, row.client_name,
                                                                   row.client_email, row.manager_user_id)), row
    assert steps == 0  # the web process never runs a step


def message_leaves(errors) -> bool:
    """A non-empty {field: [messages] | {field: ...}} tree whose leaves are lists of strings."""
    if not isinstance(errors, dict) or not errors:
        return False
    for key, value in errors.items():
        if not isinstance(key, str):
            return False
        if isinstance(value, list):
            if not value or not all(isinstance(message, str) and message for message in value):
                return False
        elif not message_leaves(value):
            return False
    return True


def normalized_deal_id(document) -> str | None:
    """The deal id the service should file a document's onboarding under (None: no usable id)."""
    deal = document.get("deal") if isinstance(document, dict) else None
    value = deal.get("id") if isinstance(deal, dict) else None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value).strip()


def post_and_check(app, ledger: Ledger, raw: bytes, headers: dict[str, str], check_fields: bool = False):
    """POST one signed body and check its answer and every row it may have written; return the answer.

    check_fields: also check that an accepted deal is filed under the deal id, e-mail and name the body holds.
    """
    try:
        document = json.loads(raw) if check_fields else None  # as the service reads it (escaped pairs joined)
    except ValueError:
        document = None
    client = app.test_client()
    events_before, onboardings_before = counts(app)
    answer = client.post(URL, data=raw, headers=headers)
    status = answer.status_code
    if currently_in_test_context():
        tally(f"answer {status} {sorted(answer.get_json() or {})}")
    assert status in (200, 202, 400, 413, 422), (status, answer.get_data()[:300])
    body = answer.get_json()
    assert isinstance(body, dict), answer.get_data()[:300]
    delivery_id = headers["webhook-id"]
    redelivery = delivery_id in ledger.delivery_ids
    was_bound = delivery_id in ledger.onboarding_by_delivery

    if status == 413:
        assert set(body) == {"error"} and isinstance(body["error"], str)
        assert len(raw) > MAX_BODY
        assert counts(app) == (events_before, onboardings_before)
        check_database(app, ledger)
        return answer

    ledger.delivery_ids.add(delivery_id)
    assert counts(app)[0] == events_before + (0 if redelivery else 1)
    with app.extensions["onboarding"].db.reading() as session:
        event = session.execute(select(Event.delivery_id, Event.outcome, Event.onboarding_id, Event.body)
                                .where(Event.id == body["event_id"])).one_or_none()
        onboarding = session.execute(select(Onboarding.id, Onboarding.deal_id, Onboarding.client_email,
                                            Onboarding.client_name)
                                     .where(Onboarding.id == body.get("onboarding_id"))).one_or_none()
    assert event is not None and event.delivery_id == delivery_id

    if status == 202 or (status == 200 and "duplicate" in body):
        assert set(body) == ANSWER_KEYS, body
        assert body["duplicate"] is (status == 200)
        assert body["status"] == "queued" and isinstance(body["status_url"], str)
        assert body["status_url"].startswith("http://onboarding.test/status/")
        assert onboarding is not None and event.onboarding_id == onboarding.id
        deal_id = onboarding.deal_id
        if was_bound:  # the same webhook-id again names the original, whatever the body says now
            assert (status, onboarding.id) == (200, ledger.onboarding_by_delivery[delivery_id])
        ledger.onboarding_by_delivery[delivery_id] = onboarding.id
        if status == 202:  # a new delivery, or a refused or ignored one redelivered and now judged afresh
            assert deal_id not in ledger.onboarding_by_deal, "a second onboarding for one deal"
            assert counts(app)[1] == onboardings_before + 1
            ledger.onboarding_by_deal[deal_id] = onboarding.id
            assert event.outcome == "accepted" and event.body == raw
            if document is not None:  # the deal is filed under the id that was sent, not a mangled one
                assert deal_id == normalized_deal_id(document)
                assert onboarding.client_email == document["client"]["email"].lower()
                assert onboarding.client_name == document["client"]["name"].strip()
        else:
            assert ledger.onboarding_by_deal.get(deal_id) == onboarding.id, "duplicate names an unknown onboarding"
            assert counts(app)[1] == onboardings_before
            if not was_bound and document is not None:
                assert deal_id == normalized_deal_id(document)  # the original of this very deal
    else:
        assert counts(app)[1] == onboardings_before, "a refused or ignored delivery created an onboarding"
        assert not was_bound, "a webhook-id that names an onboarding was judged again"
        assert event.onboarding_id is None and event.body == raw
        if status == 200:
            assert set(body) == {"status", "event_id"} and body["status"] == "ignored", body
            assert event.outcome == "ignored"
        elif status == 400:
            assert set(body) == {"error", "event_id"} and isinstance(body["error"], str) and body["error"]
            assert event.outcome == "rejected"
        else:
            assert set(body) == {"errors", "event_id"}, body
            assert message_leaves(body["errors"]), body["errors"]
            assert event.outcome == "rejected"
    check_database(app, ledger)
    return answer


def new_delivery_id() -> str:
    """A webhook-id no other example uses."""
    return f"msg_{uuid.uuid4().hex}"


# -- strategies: bodies --------------------------------------------------------------------------------------

# Integers stay below Python's 4300-digit parsing limit and nesting stays shallow (the regression tests at the end
# cover both); strings may hold lone surrogates (JSON "\ud800") and NULs, which the receiver refuses with 400.
SAFE_INTEGERS = st.integers(min_value=-(10**40), max_value=10**40) | st.sampled_from([0, -1, 2**63, -(2**63), 10**99])

NAN_LIKE = st.sampled_from(["NaN", "nan", "Infinity", "-Infinity", "null", "None", "undefined", "true", "false",
                            "0", "-0", "1e309", "0x10", "[]", "{}", "", " ", "\t\n", "\u00a0", "\u200b", "\ufeff",
                            "\x00", "💥", "ǅ", "İ", "ß", "\u0301", "a\u0000b", "' OR 1=1 --", "{client.name}",
                            "../../etc/passwd", "<script>", "%s%n", "\\", '"'])
SURROGATES = st.builds("{}{}{}".format, st.text(max_size=3), st.sampled_from(["\ud800", "\udfff", "\udbff\udfff"]),
                       st.text(max_size=3))  # a pair still makes one valid character once JSON-escaped


@st.composite
def huge_strings(draw) -> str:
    """A long string: over every field limit, rarely over the body limit (413)."""
    length = draw(st.sampled_from([101, 301, 321, 5000, 101, 301, 321, 100_000, 300_000]))
    return draw(st.sampled_from(["x", "é", "💥", " "])) * length


JSON_SCALARS = (st.none() | st.booleans() | SAFE_INTEGERS | st.floats(allow_nan=True, allow_infinity=True)
                | st.text(max_size=40) | NAN_LIKE | SURROGATES)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
JUNK = JSON_VALUES | huge_strings() | NAN_LIKE | SURROGATES

# values that are valid, or nearly, for each field: they reach the accepting path with odd but legal input
GOOD_IDENTIFIERS = (st.text(min_size=1, max_size=20).filter(lambda text: text.strip())
                    | st.integers(min_value=-(10**30), max_value=10**30)
                    | st.builds(lambda text: f"  {text}  ", st.text(alphabet=string.ascii_letters, min_size=1)))
GOOD_FIELDS = {
    ("deal", "title"): st.none() | st.text(max_size=300),
    ("client", "id"): GOOD_IDENTIFIERS,
    ("client", "name"): st.text(min_size=1, max_size=300).filter(lambda text: text.strip()),
    ("client", "email"): st.emails() | st.sampled_from(["Contact@ACME.example.COM", "a@b.co", "ünï@例え.jp"]),
    ("client", "docspace_user_id"): st.none() | st.uuids().map(str) | st.uuids().map(lambda u: u.hex.upper()),
    ("account_manager", "docspace_user_id"): st.uuids().map(str) | st.none(),
    ("account_manager",): st.none(),
    ("type",): st.sampled_from(["deal.won", "deal.lost", "deal.won ", "DEAL.WON", "deal.updated"]),
}
PATHS = [(), ("type",), ("deal",), ("deal", "id"), ("deal", "title"), ("client",), ("client", "id"),
         ("client", "name"), ("client", "email"), ("client", "docspace_user_id"), ("account_manager",),
         ("account_manager", "docspace_user_id")]


def mutation_for(path: tuple[str, ...]):
    """One change at one path: remove it, give it a wrong value, a plausible value, or an extra sibling."""
    options = [st.tuples(st.just("delete"), st.just(path), st.none()),
               st.tuples(st.just("replace"), st.just(path), JUNK),
               st.tuples(st.just("extra"), st.just(path), st.tuples(st.text(max_size=12), JUNK))]
    if path in GOOD_FIELDS:
        options.append(st.tuples(st.just("replace"), st.just(path), GOOD_FIELDS[path]))
    return st.one_of(options)


MUTATIONS = st.lists(st.sampled_from(PATHS).flatmap(mutation_for), max_size=5)


def mutate(document: dict, mutations) -> object:
    """Apply the mutations in order (one whose parent is no longer an object is skipped)."""
    for action, path, value in mutations:
        if not path:
            if action == "replace":
                document = value
            elif action == "extra" and isinstance(document, dict):
                document[value[0]] = value[1]
            continue
        parent = document
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if action == "delete":
            parent.pop(path[-1], None)
        elif action == "replace":
            parent[path[-1]] = value
        elif isinstance(parent.get(path[-1]), dict):
            parent[path[-1]][value[0]] = value[1]
        else:
            parent[value[0]] = value[1]
    return document


def encode(document, ascii_only: bool) -> bytes:
    """JSON as a CRM might send it (NaN and Infinity included, as Python's json writes them)."""
    return json.dumps(document, ensure_ascii=ascii_only, allow_nan=True).encode(errors="surrogatepass")


def unstorable(raw: bytes) -> bool:
    """Whether any string of a JSON body holds a lone surrogate or a NUL (the receiver answers 400)."""
    try:
        document = json.loads(raw)
    except ValueError:
        return False

    def bad(value) -> bool:
        if isinstance(value, str):
            return "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value)
        if isinstance(value, dict):
            return any(bad(key) or bad(item) for key, item in value.items())
        if isinstance(value, list):
            return any(bad(item) for item in value)
        return False

    return bad(document)


# -- the webhook: bodies -------------------------------------------------------------------------------------


@settings(max_examples=150, **FIXTURE_SETTINGS)
@given(mutations=MUTATIONS, ascii_only=st.booleans())
def test_mutated_payloads_get_a_documented_answer_and_consistent_rows(webhook_app, ledger, mutations, ascii_only):
    document = mutate(deal_payload(f"D-{uuid.uuid4().hex}"), mutations)
    raw, headers = signed(encode(document, ascii_only), message_id=new_delivery_id())
    answer = post_and_check(webhook_app, ledger, raw, headers, check_fields=True)
    assert answer.status_code in (400, 413, 422) or not unstorable(raw)


@settings(max_examples=60, **FIXTURE_SETTINGS)
@given(document=JSON_VALUES)
def test_arbitrary_json_gets_a_documented_answer(webhook_app, ledger, document):
    raw, headers = signed(encode(document, ascii_only=True), message_id=new_delivery_id())
    answer = post_and_check(webhook_app, ledger, raw, headers, check_fields=True)
    assert (answer.status_code == 400) == unstorable(raw)  # it is JSON: 400 only for text no database stores
    if answer.status_code == 400:
        return
    if not isinstance(document, dict):
        assert answer.status_code == 422


@settings(max_examples=60, **FIXTURE_SETTINGS)
@given(raw=st.binary(max_size=600) | st.sampled_from([b"", b"\xef\xbb\xbf{}", b"{" * 50, b"\x00", b"nul",
                                                      b'{"type": "deal.won"', b"\xff\xfe{\x00}\x00"]))
def test_arbitrary_bytes_get_a_documented_answer(webhook_app, ledger, raw):
    raw, headers = signed(raw, message_id=new_delivery_id())
    post_and_check(webhook_app, ledger, raw, headers)


@st.composite
def delivery_scripts(draw):
    """A few deliveries over a pool of 3 webhook-ids and 3 deals: valid, refused or ignored, in any order."""
    return draw(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2),
                                   st.sampled_from(["valid", "valid-padded", "valid-other-client", "invalid",
                                                    "ignored"])), min_size=1, max_size=8))


@settings(max_examples=40, **FIXTURE_SETTINGS)
@given(script=delivery_scripts())
def test_redeliveries_and_repeated_deals_never_make_a_second_onboarding(webhook_app, ledger, script):
    prefix = uuid.uuid4().hex
    bound: dict[int, str] = {}  # webhook-id -> the onboarding its event points at
    deals: dict[int, str] = {}  # deal -> its onboarding
    for delivery, deal, kind in script:
        deal_id = f"D-{prefix}-{deal}"
        if kind == "ignored":
            document = {"type": "deal.lost", "deal": {"id": deal_id}}
        else:
            document = deal_payload(f"  {deal_id} " if kind == "valid-padded" else deal_id)
            if kind == "invalid":
                document["client"]["email"] = "not-an-email"
            if kind == "valid-other-client":
                document["client"] = {"id": 7, "name": "Other", "email": "other@example.com"}
        raw, headers = signed(document, message_id=f"msg_{prefix}_{delivery}")
        answer = post_and_check(webhook_app, ledger, raw, headers, check_fields=True)
        body = answer.get_json()
        if delivery in bound:
            assert (answer.status_code, body["onboarding_id"]) == (200, bound[delivery])
        elif kind == "invalid":
            assert answer.status_code == 422
        elif kind == "ignored":
            assert answer.status_code == 200 and body["status"] == "ignored"
        elif deal in deals:
            assert (answer.status_code, body["onboarding_id"]) == (200, deals[deal])
            bound[delivery] = deals[deal]
        else:
            assert answer.status_code == 202
            deals[deal] = bound[delivery] = body["onboarding_id"]
    with webhook_app.extensions["onboarding"].db.reading() as session:
        mine = session.scalars(select(Onboarding.id)
                               .where(Onboarding.deal_id.startswith(f"D-{prefix}-", autoescape=True))).all()
        events = session.scalar(select(func.count()).select_from(Event)
                                .where(Event.delivery_id.startswith(f"msg_{prefix}_", autoescape=True)))
    assert sorted(mine) == sorted(deals.values())
    assert events == len({delivery for delivery, _, _ in script})


# -- the webhook: headers ------------------------------------------------------------------------------------

# what an HTTP server hands the app: latin-1 text without control characters other than TAB (gunicorn refuses
# the rest)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f") | st.just("\t"),
                      max_size=40)
OTHER_KEY = b"k" * 32


def mostly(valid, *others):
    """The valid strategy about three times in four, else one of the others: most examples break one header."""
    broken = st.one_of(*others)
    return st.integers(0, 3).flatmap(lambda pick: valid if pick else broken)


SIGNATURE_ENTRIES = st.one_of(
    st.just(("good",)), st.just(("good-old-secret",)), st.just(("good-other-secret",)),
    st.tuples(st.just("good-prefix"), st.sampled_from(["", "v1", "v1;", "V1,", "v2,", "v1a,", "v1,,", " v1,", "v1=",
                                                        "v0,", "v1 ,", "\tv1,"])),
    st.tuples(st.just("good-mangled"), st.sampled_from(["strip=", "upper", "urlsafe", "hex", "truncate"])),
    st.tuples(st.just("junk"), HEADER_TEXT))


@st.composite
def entries_with_a_good_one(draw):
    """Signature entries, one of them right, separated by whitespace."""
    entries = draw(st.lists(SIGNATURE_ENTRIES, max_size=5))
    entries.insert(draw(st.integers(0, len(entries))), draw(st.sampled_from([("good",), ("good-old-secret",)])))
    return "entries", entries, draw(st.sampled_from([" ", "  ", "\t"]))


@st.composite
def header_recipes(draw):
    """How to build each of the three headers: missing, empty, odd, long, stale, or right."""
    message_id = draw(mostly(
        st.just(("fresh",)),
        st.tuples(st.just("text"), HEADER_TEXT), st.just(("missing",)), st.just(("empty",)), st.just(("dotted",)),
        st.tuples(st.just("long"), st.sampled_from([255, 256, 1000, 8000]))))
    timestamp = draw(mostly(
        st.tuples(st.just("offset"), st.integers(-(TOLERANCE - 30), TOLERANCE - 30)),
        st.just(("missing",)), st.just(("empty",)),
        st.tuples(st.just("offset"), st.integers(TOLERANCE + 30, 10**10) | st.integers(-(10**10), -(TOLERANCE + 30))),
        st.tuples(st.just("padded"), st.sampled_from(["0", "00", " ", "+", "-", "\t"])),
        st.tuples(st.just("text"), HEADER_TEXT),
        st.tuples(st.just("text"), st.text(string.digits, min_size=1, max_size=20)),
        st.tuples(st.just("text"), st.text(string.digits + "\u00b2\u00b3\u00b9\u00bc\u00bd ", min_size=1, max_size=12)),
        st.tuples(st.just("text"), st.sampled_from(["-1", "1e9", "1.5", "0x10", "yesterday", "12 3"]))))
    signature = draw(mostly(
        entries_with_a_good_one(),
        st.just(("missing",)), st.just(("empty",)),
        st.tuples(st.just("entries"), st.lists(SIGNATURE_ENTRIES, min_size=1, max_size=6),
                  st.sampled_from([" ", "  ", "\t", ", ", ","])),
        st.tuples(st.just("many"), st.integers(50, 400), st.booleans())))
    return message_id, timestamp, signature


def digest(key: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    """The base64 HMAC of one message, over the timestamp as sent."""
    return base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
                            ).decode()


def build_headers(recipe, body: bytes, now: int) -> tuple[dict[str, str], bool]:
    """The headers of a recipe, and whether they genuinely verify (the oracle, written from the README's rules)."""
    id_recipe, ts_recipe, sig_recipe = recipe
    message_id = {"missing": None, "empty": "", "fresh": new_delivery_id(), "dotted": f"msg.{uuid.uuid4().hex}",
                  "long": "m" * (id_recipe[-1] - 32) + uuid.uuid4().hex if id_recipe[0] == "long" else None,
                  "text": id_recipe[-1]}[id_recipe[0]]
    timestamp = {"missing": None, "empty": "", "offset": f"{now + ts_recipe[-1]}" if ts_recipe[0] == "offset" else "",
                 "padded": f"{ts_recipe[-1]}{now}", "text": ts_recipe[-1]}[ts_recipe[0]]
    valid_id = bool(message_id) and len(message_id) <= 255 and "." not in message_id
    valid_time = (bool(timestamp) and timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12
                  and abs(int(timestamp) - now) <= TOLERANCE - 10)
    signed_time = str(int(timestamp)) if valid_time else (timestamp or "")
    keys = {"good": parse_secret(WEBHOOK_SECRET), "good-old-secret": parse_secret(OLD_WEBHOOK_SECRET),
            "good-other-secret": OTHER_KEY}

    def good(kind: str = "good") -> str:
        return digest(keys[kind], message_id or "", signed_time, body)

    if sig_recipe[0] == "entries":
        entries = []
        for kind, *argument in sig_recipe[1]:
            if kind in keys:
                entries.append("v1," + good(kind))
            elif kind == "good-prefix":
                entries.append(argument[0] + good())
            elif kind == "good-mangled":
                value = good()
                entries.append("v1," + {"strip=": value.rstrip("="), "upper": value.upper(),
                                        "urlsafe": value.replace("+", "-").replace("/", "_"),
                                        "hex": base64.b64decode(value).hex(), "truncate": value[:20]}[argument[0]])
            else:
                entries.append(argument[0])
        signature = sig_recipe[2].join(entries)
    elif sig_recipe[0] == "many":
        count, with_good = sig_recipe[1], sig_recipe[2]
        entries = [f"v1,{base64.b64encode(i.to_bytes(32, 'big')).decode()}" for i in range(count)]
        signature = " ".join([*entries, "v1," + good()] if with_good else entries)
    else:
        signature = {"missing": None, "empty": ""}[sig_recipe[0]]
    headers = {"Content-Type": "application/json"}
    for name, value in (("webhook-id", message_id), ("webhook-timestamp", timestamp), ("webhook-signature", signature)):
        if value is not None:
            headers[name] = value
    # genuine: a whitespace-separated "v1,<base64 HMAC>" entry made with a configured secret over id.timestamp.body
    offered = {entry[3:] for entry in (signature or "").split() if entry.startswith("v1,")}
    genuine = bool(offered & {good("good"), good("good-old-secret")})
    return headers, genuine and valid_id and valid_time


OTHER_HEADERS = st.fixed_dictionaries({}, optional={
    "Content-Type": HEADER_TEXT | st.sampled_from(["application/x-www-form-urlencoded", "text/plain; charset=utf-16",
                                                   "multipart/form-data; boundary=x", "application/json; charset=x"]),
    "User-Agent": HEADER_TEXT})


@settings(max_examples=250, **FIXTURE_SETTINGS)
@given(recipe=header_recipes(), other_headers=OTHER_HEADERS)
def test_signature_headers_are_401_unless_they_genuinely_verify(webhook_app, ledger, recipe, other_headers):
    raw = json.dumps(deal_payload(f"D-{uuid.uuid4().hex}")).encode()
    headers, genuine = build_headers(recipe, raw, int(time.time()))
    headers.update(other_headers)  # kept with the event: odd ones must be stored, not crash
    before = counts(webhook_app)
    tally("genuine" if genuine else "refused")
    if genuine:
        seen = headers["webhook-id"] in ledger.onboarding_by_delivery  # every genuine one here is accepted
        answer = post_and_check(webhook_app, ledger, raw, headers)
        assert answer.status_code == (200 if seen else 202)
        return
    answer = webhook_app.test_client().post(URL, data=raw, headers=headers)
    assert answer.status_code == 401, (answer.status_code, answer.get_data()[:300])
    body = answer.get_json()
    assert set(body) == {"error", "reason"} and all(isinstance(value, str) for value in body.values())
    assert WEBHOOK_SECRET not in answer.get_data(as_text=True)
    assert counts(webhook_app) == before, "a refused signature wrote a row"
    check_database(webhook_app, ledger)


def test_the_header_oracle_accepts_a_plain_valid_request(webhook_app, ledger):
    """The oracle above is not vacuous: the simplest recipe verifies, and the service agrees."""
    raw = json.dumps(deal_payload()).encode()
    headers, genuine = build_headers((("fresh",), ("offset", 0), ("entries", [("good",)], " ")), raw, int(time.time()))
    assert genuine
    assert post_and_check(webhook_app, ledger, raw, headers).status_code == 202


# -- plan files ----------------------------------------------------------------------------------------------

TOML_SCALARS = (st.text(max_size=20) | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.booleans()
                | st.datetimes() | st.dates() | st.times())
TOML_VALUES = st.recursive(TOML_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)

# Placeholders with a format spec or conversion must be refused by the plan check (they could make the title fail).
TITLE_FRAGMENTS = st.one_of(
    st.text(alphabet=st.characters(exclude_characters="{}"), max_size=15),
    st.sampled_from(sorted("{" + name + "}" for name in TITLE_FIELDS)),
    st.sampled_from(["{{", "}}", "{", "}", "{}", "{0}", "{client}", "{client.phone}", "{deal.id.x}", "{deal[id]}",
                     "{client.name!r}", "{client.name!s}", "{deal.title!a}", "{deal.id:>5}", "{client.email:^30}",
                     "{client.name:.3}", "{deal.title:_<12}", "{client.name:d}", "{client.name!z}",
                     "{client.name:{client.phone}}", "{client.name:>{deal.id}}"]))
TITLES = st.lists(TITLE_FRAGMENTS, max_size=6).map("".join)
ROLE_NAMES = st.sampled_from([*ROLES, "full", "Viewer", "read", ""])


def sometimes_junk(strategy):
    """Mostly a plausible value, sometimes any TOML value."""
    return st.one_of(strategy, strategy, TOML_VALUES)


def table(required: dict, optional: dict):
    """A table of known keys, sometimes with an unknown one."""
    known = st.fixed_dictionaries(required, optional=optional)
    extra = st.dictionaries(st.sampled_from(["colour", "Title", "titel", "extra", ""]), TOML_VALUES, max_size=1)
    return st.one_of(known, known, st.builds(lambda a, b: {**a, **b}, known, extra))


FOLDER_TITLES = (st.sampled_from(["Invoices", "Contracts", "Deliverables", "A", " ", "a/b", "x" * 166])
                 | st.text(max_size=8))
PLAN_DOCUMENTS = st.fixed_dictionaries({}, optional={
    "room": sometimes_junk(table({}, {
        "title": sometimes_junk(TITLES),
        "type": sometimes_junk(st.sampled_from([*ROOM_TYPES, "Custom", "room", ""])),
        "tags": sometimes_junk(st.lists(st.sampled_from(["crm-client", "", " ", "vip"]) | st.text(max_size=5),
                                        max_size=3))})),
    "folders": sometimes_junk(st.lists(sometimes_junk(table({"title": sometimes_junk(FOLDER_TITLES)}, {})),
                                       max_size=4)),
    "templates": sometimes_junk(st.lists(sometimes_junk(table({}, {
        "file_id": sometimes_junk(st.integers(-2, 10**12) | st.just(True)),
        "folder": sometimes_junk(FOLDER_TITLES),
        "title": sometimes_junk(st.sampled_from(["Welcome.pdf", "Welcome", ".pdf", "a/b.pdf", "x" * 201 + ".pdf",
                                                 "W.docx", "..."]))})), max_size=4)),
    "access": sometimes_junk(table({}, {"account_manager": sometimes_junk(ROLE_NAMES),
                                        "client": sometimes_junk(ROLE_NAMES),
                                        "notify": sometimes_junk(st.booleans()),
                                        "message": sometimes_junk(st.text(max_size=20))})),
    "link": sometimes_junk(table({}, {"kind": sometimes_junk(st.sampled_from([*LINK_KINDS, "internal", ""])),
                                      "access": sometimes_junk(ROLE_NAMES)})),
    "bogus": TOML_VALUES,
})
RENDER_ARGUMENTS = st.tuples(st.text(), st.none() | st.text(), st.text(), st.text(), st.text())


def check_plan(plan: Plan, arguments) -> None:
    """A plan that loaded is one DocSpace accepts and the worker can run."""
    assert plan.room_type in ROOM_TYPES.values()
    assert plan.manager_access in MEMBER_ROLES[plan.room_type]
    assert plan.client_access in MEMBER_ROLES[plan.room_type]
    assert plan.link_kind in LINK_KINDS
    if plan.link_kind == "external":
        assert plan.link_access in EXTERNAL_LINK_ROLES.get(plan.room_type, set())
    assert all(isinstance(tag, str) and tag and tag == tag.strip() for tag in plan.room_tags)
    assert all(template.folder is None or template.folder in {f.title for f in plan.folders}
               for template in plan.templates)
    steps = plan_steps(plan, GENERIC_CRM)
    names = [step.name for step in steps]
    assert len(names) == len(set(names)), names
    for position, step in enumerate(steps):
        assert set(step.needs) <= set(names[:position]), step
    assert names[0] == "room" and names[-1] == "callback"
    assert ("link" in names) == (plan.link_kind == "external")
    deal_id, deal_title, *client = arguments
    title = plan.render_room_title(deal_id, deal_title, Client(*client))
    assert isinstance(title, str) and len(title) <= MAX_ROOM_TITLE


@settings(max_examples=400, deadline=None, database=None)
@given(document=PLAN_DOCUMENTS, arguments=RENDER_ARGUMENTS)
def test_plan_documents_load_or_raise_plan_error(document, arguments):
    try:
        plan = parse_plan(document)
    except PlanError as error:
        tally("PlanError")
        assert str(error)
        return
    tally("Plan")
    check_plan(plan, arguments)


def toml_literal(value) -> str:
    """A TOML literal for a few kinds of value (strings via JSON escapes, which TOML basic strings share)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, (int, str)):
        return json.dumps(value) if isinstance(value, str) else str(value)
    return "[" + ", ".join(toml_literal(item) for item in value) + "]"


KEYS = st.sampled_from(["title", "type", "tags", "file_id", "folder", "account_manager", "client", "notify",
                        "message", "kind", "access", "colour"])
LITERALS = (st.sampled_from([*ROOM_TYPES, *ROLES, *LINK_KINDS, "Invoices", "Welcome.pdf"]) | TITLES
            | st.integers(-5, 10**6) | st.booleans() | st.floats() | st.lists(st.text(max_size=5), max_size=3)
            ).map(toml_literal) | st.sampled_from(["1979-05-27", "07:32:00", "'literal'", '"""multi\nline"""',
                                                  "{ a = 1 }", "[[1], [2]]", '"unterminated', "", "= 1"])
TOML_LINES = st.one_of(
    st.sampled_from(["[room]", "[access]", "[link]", "[[folders]]", "[[templates]]", "[bogus]", "[room.sub]",
                     "[[room]]", "[folders]", "", "# comment", "[", "]]"]),
    st.builds(lambda key, value: f"{key} = {value}", KEYS, LITERALS),
    st.text(max_size=30))
TOML_TEXTS = st.lists(TOML_LINES, max_size=14).map("\n".join)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=TOML_TEXTS.map(str.encode) | st.text().map(str.encode) | st.binary(max_size=200),
       arguments=RENDER_ARGUMENTS)
def test_plan_files_load_or_raise_plan_error(tmp_path, content, arguments):
    path = tmp_path / "plan.toml"
    path.write_bytes(content)
    try:
        plan = load_plan(path)
    except PlanError as error:
        tally("PlanError")
        assert str(error).startswith(f"{path}: ")
        return
    tally("Plan")
    check_plan(plan, arguments)


# -- crashes these tests found, kept as regression tests with their minimal inputs --------------------------


def _deep(depth: int) -> bytes:
    return b'{"type": "deal.won", "deal": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("raw", [
    pytest.param(b'{"type": "deal.won", "deal": {"id": ' + b"1" * 4301 + b"}}", id="int-over-4300-digits"),
    pytest.param(_deep(100_000), id="deep-nesting"),
    pytest.param(b'{"type": "\\ud800"}', id="lone-surrogate-in-type"),
    pytest.param(b'{"type": "deal.won", "deal": {"id": "\\udc00"}}', id="lone-surrogate-in-deal-id"),
    pytest.param(json.dumps(deal_payload("D-surrogate", client={"id": "C", "name": "\ud800", "email": "a@b.co"})
                            ).encode(), id="lone-surrogate-in-client-name"),
    pytest.param(b'{"type": "deal.lost\\u0000"}', id="nul-in-type"),
    pytest.param(json.dumps(deal_payload("D-\x00")).encode(), id="nul-in-deal-id"),
])
def test_bodies_that_once_crashed_are_refused_with_400(webhook_app, ledger, raw):
    raw, headers = signed(raw, message_id=new_delivery_id())
    answer = webhook_app.test_client().post(URL, data=raw, headers=headers)
    assert answer.status_code == 400
    ledger.delivery_ids.add(headers["webhook-id"])
    check_database(webhook_app, ledger)


@pytest.mark.parametrize("timestamp", ["\u00b2", "\u00b3", "1\u00b9"])
def test_unicode_digits_in_the_timestamp_are_401(webhook_app, timestamp):
    raw, headers = signed(deal_payload())
    headers["webhook-timestamp"] = timestamp
    answer = webhook_app.test_client().post(URL, data=raw, headers=headers)
    assert answer.status_code == 401
    assert counts(webhook_app) == (0, 0)


@pytest.mark.parametrize("title", ["{client.name:d}", "{client.name!z}", "{client.name:{client.phone}}",
                                   "{client.name:>{deal.id}}"])
def test_room_titles_with_format_specs_are_refused(title):
    with pytest.raises(PlanError, match="placeholders plainly"):
        parse_plan({"room": {"title": title}})


def test_a_deeply_nested_plan_file_is_a_plan_error(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text("x = " + "[" * 1000 + "]" * 1000 + "\n")
    with pytest.raises(PlanError, match="nested too deeply"):
        load_plan(path)
