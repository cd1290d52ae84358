#!/usr/bin/env python3
"""Capacity and cost model of the live feed's edge (Python 3.11, stdlib only).

    python3 scripts/capacity-model.py                       # text: inputs, then three tables
    python3 scripts/capacity-model.py --json                # the same, as JSON
    python3 scripts/capacity-model.py --set relay_hop_latency_ms=20 --set viewers_per_isolate=500
    python3 scripts/capacity-model.py --inputs other.json   # another inputs file
    python3 scripts/capacity-model.py --self-test           # formulas against hand-computed values

Inputs live in bench/capacity-inputs.json: every one has a value, a unit and a source
(a published page with the date it was read, "measured: <command>", "assumption: <why>" or
"unverified: <why>"; "(to be refreshed)" marks a placeholder). A bad inputs file, an unknown
--set name or a badly typed value is a clear error and exit status 2.

The architecture modelled (ARCHITECTURE.md, "The SSE bridge" and "Relays"):
- A viewer is one SSE request to the Worker. All viewers of a game in one Worker isolate share one
  WebSocket to the game's stream object, a *feed* (FEED_GROUP caps the members of one feed
  socket; 0, the default, is no cap). So the stream object and its relays hold one socket per
  isolate that has viewers of the game: isolates = ceil(viewers / viewers_per_isolate), where
  viewers_per_isolate is Cloudflare's spreading (an assumption, shown at several values).
- Per round the stream object sends one message to each socket it holds itself, then pushes the
  message to every relay: one DO->DO fetch per relay, all issued at once (join_all), and the next
  message waits until every relay answered. A relay sends to its sockets, then answers. In each
  isolate the feed hands the message to each member with one `enqueue`.
- The stream object holds up to RELAY_CAPACITY sockets; further feed sockets go to relays of
  RELAY_CAPACITY sockets each, filled one after another. One layer: relays never push to relays.
- Every viewer that connects asks the stream object for its opening (GET /opening: one DO request
  and some of the stream object's thread), whichever feed it then joins. A feed socket is opened
  by one member's request (its owner: subscribe, plus a join when placed on a relay) and reopened
  when the owner's request ends.

What it answers:
1. The largest audience of one game per round rate and viewers per isolate: without relays, with
   relays at the configured RELAY_CAPACITY, and with the RELAY_CAPACITY that serves the most.
2. Whether one game at the goal audience fits (fan-out p99 and every thread's busy fraction), how
   many isolates and sockets that is, whether relays are needed, and how the answer moves with
   the unmeasured inputs.
3. The monthly Cloudflare (+ Upstash) cost per 1 000 always-connected viewers, per line item.

Every formula is a small function below with a comment saying what it counts; the model's
simplifications are stated where they are made.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUTS = ROOT / "bench" / "capacity-inputs.json"
EXIT_USAGE = 2

# worker/src/config.rs clamps RELAY_CAPACITY to 32 000 (the runtime refuses a socket past 32 768).
RELAY_CAPACITY_MAX = 32_000
# Searches stop at this many isolates: past it an audience is reported as unbounded.
MAX_ISOLATES = 10**9


class InputError(Exception):
    """A problem with the inputs file or an override: reported, exit status 2."""


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

def load_inputs(path: Path) -> dict:
    """Reads the inputs file: {"inputs": {name: {"value", "unit", "source"}}}."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot read inputs file {path}: {err.strerror or err}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), dict):
        raise InputError(f'{path}: expected an object with an "inputs" object')
    inputs = doc["inputs"]
    for name, spec in inputs.items():
        if not isinstance(spec, dict):
            raise InputError(f"{path}: input {name!r} must be an object with value, unit and source")
        missing = [field for field in ("value", "unit", "source") if field not in spec]
        if missing:
            raise InputError(f"{path}: input {name!r} lacks {', '.join(missing)}")
        if not isinstance(spec["source"], str) or not spec["source"].strip():
            raise InputError(f"{path}: input {name!r} has an empty source")
    absent = sorted(set(SCHEMA) - set(inputs))
    if absent:
        raise InputError(f"{path}: missing inputs: {', '.join(absent)}")
    unknown = sorted(set(inputs) - set(SCHEMA))
    if unknown:
        raise InputError(f"{path}: unknown inputs: {', '.join(unknown)}")
    for name, spec in inputs.items():
        spec["value"] = check_value(name, spec["value"], where=str(path))
    return inputs


# name -> (kind, minimum). Kinds: "num" (int or float), "int", "rates" (non-empty list of
# positive numbers). Every input must be listed, so a typo in the file or in --set is caught.
SCHEMA = {
    # The goal and the checks.
    "goal_viewers": ("int", 1),
    "rounds_per_sec_cases": ("rates", None),
    "p99_target_ms": ("num", 1e-9),
    "cpu_headroom": ("num", 1e-9),
    # Objects: the stream object's and the relays' threads, the pushes.
    "do_send_us_per_socket": ("num", 1e-9),
    "do_fixed_ms_per_round": ("num", 0),
    "do_cpu_ms_per_opening": ("num", 0),
    "relay_fixed_ms_per_round": ("num", 0),
    "relay_push_cpu_us": ("num", 0),
    "relay_hop_latency_ms": ("num", 0),
    "relay_push_concurrency": ("int", 0),
    "relay_capacity": ("int", 1),
    "feed_group": ("int", 0),
    # The Worker: CPU and memory per viewer.
    "worker_cpu_us_per_client_round": ("num", 0),
    "worker_cpu_us_per_heartbeat": ("num", 0),
    "worker_cpu_us_per_key_recheck": ("num", 0),
    "worker_cpu_ms_per_connect": ("num", 0),
    "worker_cpu_us_per_lease_refresh": ("num", 0),
    "memory_kib_per_client": ("num", 1e-9),
    "runtime_kib_per_client": ("num", 0),
    # Configuration and behaviour.
    "heartbeat_secs": ("num", 1e-9),
    "lease_refresh_secs": ("num", 1e-9),
    "key_recheck_secs": ("num", 1e-9),
    "key_cache_secs": ("num", 1e-9),
    "reconnects_per_viewer_hour": ("num", 0),
    "viewers_per_isolate": ("num", 1),
    "viewers_per_isolate_cases": ("rates", None),
    "keys_per_isolate": ("num", 1e-9),
    "do_requests_per_viewer_connect": ("num", 0),
    "do_requests_per_feed_open": ("num", 0),
    "do_requests_per_relay_join": ("num", 0),
    "ws_incoming_msgs_per_socket_hour": ("num", 0),
    "upstash_cmds_per_connect": ("num", 0),
    "upstash_cmds_per_refresh_per_key": ("num", 0),
    "month_days": ("num", 1e-9),
    # Platform limits.
    "do_max_websockets_per_object": ("int", 1),
    "do_soft_limit_rps": ("num", 1e-9),
    "worker_isolate_memory_mb": ("num", 1e-9),
    "worker_cpu_limit_ms_per_request": ("num", 1e-9),
    "upstash_max_commands_per_sec": ("num", 1e-9),
    # Prices.
    "price_workers_paid_base_usd": ("num", 0),
    "price_worker_requests_per_million": ("num", 0),
    "included_worker_requests": ("num", 0),
    "price_worker_cpu_per_million_ms": ("num", 0),
    "included_worker_cpu_ms": ("num", 0),
    "price_do_requests_per_million": ("num", 0),
    "included_do_requests": ("num", 0),
    "do_ws_incoming_billing_ratio": ("num", 1e-9),
    "price_do_gb_s_per_million": ("num", 0),
    "included_do_gb_s": ("num", 0),
    "do_billed_memory_gb": ("num", 1e-9),
    "price_kv_reads_per_million": ("num", 0),
    "included_kv_reads": ("num", 0),
    "price_upstash_per_100k_commands": ("num", 0),
}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_value(name: str, value, where: str):
    """Returns `value` if it fits input `name`'s kind and minimum, else raises InputError."""
    kind, minimum = SCHEMA[name]
    if kind == "rates":
        if not isinstance(value, list) or not value or not all(_is_number(v) and v > 0 for v in value):
            raise InputError(f"{where}: {name} must be a non-empty list of positive numbers, got {value!r}")
        return [float(v) for v in value]
    if not _is_number(value):
        raise InputError(f"{where}: {name} must be a number, got {value!r}")
    if kind == "int":
        if float(value) != int(value):
            raise InputError(f"{where}: {name} must be a whole number, got {value!r}")
        value = int(value)
    if value < minimum:
        bound = "positive" if minimum > 0 else f">= {minimum}"
        raise InputError(f"{where}: {name} must be {bound}, got {value!r}")
    return value


def parse_override(text: str) -> tuple[str, object]:
    """`name=value` (value as JSON: 12, 0.5, [1,10]; or a comma list 1,10)."""
    if "=" not in text:
        raise InputError(f"--set {text!r}: expected name=value")
    name, raw = (part.strip() for part in text.split("=", 1))
    if name not in SCHEMA:
        raise InputError(f"--set {name}: unknown input (known: {', '.join(sorted(SCHEMA))})")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        if "," in raw:
            try:
                value = [float(part) for part in raw.split(",") if part.strip()]
            except ValueError:
                raise InputError(f"--set {name}: cannot read {raw!r} as a number or list") from None
        else:
            raise InputError(f"--set {name}: cannot read {raw!r} as a number or list") from None
    if SCHEMA[name][0] == "rates" and _is_number(value):
        value = [value]
    return name, check_value(name, value, where=f"--set {name}")


def params(inputs: dict) -> SimpleNamespace:
    """The inputs' values as attributes (P.goal_viewers, ...)."""
    return SimpleNamespace(**{name: spec["value"] for name, spec in inputs.items()})


# ---------------------------------------------------------------------------------------------
# Shared helpers: budgets, timers
# ---------------------------------------------------------------------------------------------

def round_budgets_ms(rate: float, p99_target_ms: float, headroom: float) -> tuple[float, float]:
    """What one object may spend per round: (latency budget, CPU budget) in ms.

    Latency: the last viewer must have the round within p99_target_ms of its arrival.
    CPU: a thread's busy fraction is rate x work per round, and must stay <= headroom,
    so work per round <= headroom / rate seconds.
    """
    return p99_target_ms, headroom / rate * 1000.0


def max_sockets(budget_ms: float, fixed_ms: float, send_us: float, cap: int) -> int:
    """Largest n with fixed_ms + n x send_us <= budget_ms, and n <= cap (never below 0)."""
    if budget_ms <= fixed_ms:
        return 0
    return max(0, min(cap, math.floor((budget_ms - fixed_ms) * 1000.0 / send_us + 1e-9)))


def tick_secs(heartbeat_secs: float, key_recheck_secs: float) -> float:
    """The client's timer period: min(HEARTBEAT_SECS, KEY_RECHECK_SECS) (worker/src/bridge.rs)."""
    return min(heartbeat_secs, key_recheck_secs)


def effective_recheck_secs(heartbeat_secs: float, key_recheck_secs: float) -> float:
    """A re-check runs on the first tick at least KEY_RECHECK_SECS - 50 ms after the last one,
    so with 15 s ticks and a 20 s re-check it happens every 30 s."""
    tick = tick_secs(heartbeat_secs, key_recheck_secs)
    return math.ceil((key_recheck_secs - 0.05) / tick) * tick


# ---------------------------------------------------------------------------------------------
# Feeds: isolates, feed sockets, the Worker's side
# ---------------------------------------------------------------------------------------------

def isolates_for(viewers: float, per_isolate: float) -> int:
    """Worker isolates holding viewers of the game: ceil(viewers / viewers_per_isolate)."""
    if viewers <= 0:
        return 0
    return math.ceil(viewers / per_isolate - 1e-9)


def sockets_per_isolate(viewers: float, per_isolate: float, feed_group: int) -> int:
    """Feed sockets one isolate opens to the game: one (FEED_GROUP = 0, no cap on members), else
    ceil(its viewers / FEED_GROUP)."""
    if feed_group <= 0:
        return 1
    return math.ceil(min(per_isolate, viewers) / feed_group - 1e-9)


def feed_sockets(viewers: float, per_isolate: float, feed_group: int) -> int:
    """Sockets on the stream object and its relays: one per isolate (per FEED_GROUP members)."""
    return isolates_for(viewers, per_isolate) * sockets_per_isolate(viewers, per_isolate, feed_group)


def viewer_cpu_us_per_sec(rate: float, P) -> float:
    """Worker CPU one viewer costs per second in its isolate: one enqueue per round (the
    measured per-client figure, which also spreads the feed's one message event per round over
    its members), its timer tick and its key re-check."""
    return (rate * P.worker_cpu_us_per_client_round
            + P.worker_cpu_us_per_heartbeat / tick_secs(P.heartbeat_secs, P.key_recheck_secs)
            + P.worker_cpu_us_per_key_recheck / effective_recheck_secs(P.heartbeat_secs, P.key_recheck_secs))


def worker_isolate_caps(rate: float, P) -> dict:
    """Viewers one Worker isolate can hold: by its 128 MB (the isolate's share per viewer: JS heap
    + wasm; the runtime's own per-request memory is outside it), and by its thread's busy
    fraction (viewers x CPU per viewer per second <= headroom)."""
    memory = math.floor(P.worker_isolate_memory_mb * 1024 / P.memory_kib_per_client + 1e-9)
    per_viewer = viewer_cpu_us_per_sec(rate, P) / 1e6
    cpu = math.floor(P.cpu_headroom / per_viewer + 1e-9) if per_viewer > 0 else MAX_ISOLATES
    return {"memory": memory, "cpu": cpu}


def owner_cpu_ms_per_hour(rate: float, members: float, P) -> float:
    """CPU charged to the request that holds a feed's socket (its owner): the socket's events run
    in that request, so it pays the enqueue of every member, plus its own timer and re-checks.
    members = 1 is an ordinary viewer's request."""
    return 3600.0 * (rate * members * P.worker_cpu_us_per_client_round
                     + P.worker_cpu_us_per_heartbeat / tick_secs(P.heartbeat_secs, P.key_recheck_secs)
                     + P.worker_cpu_us_per_key_recheck / effective_recheck_secs(P.heartbeat_secs, P.key_recheck_secs)) / 1000.0


def hours_to_cpu_limit(rate: float, members: float, P) -> float:
    """Hours until such a request reaches the CPU limit per request (then it ends: its viewer
    resumes, and for a feed owner the next member reopens the socket)."""
    per_hour = owner_cpu_ms_per_hour(rate, members, P)
    return P.worker_cpu_limit_ms_per_request / per_hour if per_hour > 0 else math.inf


def feed_opens_per_socket_hour(rate: float, members: float, P) -> float:
    """Times a feed socket is (re)opened per hour. The owner's request leaves about as often as
    any viewer reconnects (reconnects_per_viewer_hour), and also when it reaches the CPU limit
    per request; either way the next member opens a new socket."""
    return P.reconnects_per_viewer_hour + 1.0 / hours_to_cpu_limit(rate, members, P)


# ---------------------------------------------------------------------------------------------
# Objects: the stream object, its one layer of relays, the path to the last viewer
# ---------------------------------------------------------------------------------------------

def relay_layout(sockets: int, capacity: int) -> tuple[int, int, int]:
    """Where the stream object puts `sockets` feed sockets (worker/src/stream_object.rs
    subscribe, relays.rs place): up to `capacity` on itself, the rest on relays of `capacity`
    each, filled one after another. Returns (own sockets, relays, sockets on the fullest relay)."""
    own = min(sockets, capacity)
    rest = sockets - own
    relays = math.ceil(rest / capacity) if rest > 0 else 0
    return own, relays, min(capacity, rest)


def push_waves(k: int, concurrency: int) -> int:
    """Waves of pushes: k pushes, at most `concurrency` in flight at once (0 = no limit). The
    implementation issues all k at once (join_all); a runtime cap on outgoing connections would
    queue them in waves."""
    if k <= 0:
        return 0
    if concurrency <= 0:
        return 1
    return math.ceil(k / concurrency)


def evaluate(rate: float, viewers: float, per_isolate: float, capacity: int, P) -> dict:
    """One game of `viewers` viewers at `rate` rounds/s, `per_isolate` viewers per isolate, and
    RELAY_CAPACITY = `capacity`: its layout, the time to its last viewer, every busy fraction,
    and whether all checks pass.

    Per round (one message per round, the model's simplification):
    - stream object: fixed work (the /store), one send per own socket, then k pushes issued;
    - a push: one hop to the relay, the relay's send loop, and its answer back (taken as one more
      hop). Waves of pushes follow each other when a cap on pushes in flight applies;
    - the next message's pushes start only once every relay answered (relays.rs drain_queue), so
      the push pipeline is busy rate x (issue + waves x push cycle) of the time;
    - each isolate enqueues the message to its viewers one after another on its thread.
    The p99 is the path to the last viewer: to the last socket (own or on the last wave's fullest
    relay) plus one isolate's enqueue loop. Network time from an object to an isolate and on to
    the browser is not counted. Queueing behind the previous round is not added: the busy
    checks keep it small.
    """
    lat_ms, cpu_ms = round_budgets_ms(rate, P.p99_target_ms, P.cpu_headroom)
    send_ms = P.do_send_us_per_socket / 1000.0
    hop = P.relay_hop_latency_ms

    # The feed layer: isolates, sockets, members per socket.
    isolates = isolates_for(viewers, per_isolate)
    here = min(per_isolate, viewers)  # viewers in one (full) isolate
    per_iso = sockets_per_isolate(viewers, per_isolate, P.feed_group)
    sockets = isolates * per_iso
    members = here / per_iso
    own, relays, fullest = relay_layout(sockets, capacity)

    # One round through the objects.
    broadcast_ms = P.do_fixed_ms_per_round + own * send_ms
    issue_ms = relays * P.relay_push_cpu_us / 1000.0
    relay_ms = P.relay_fixed_ms_per_round + fullest * send_ms if relays else 0.0
    waves = push_waves(relays, P.relay_push_concurrency)
    cycle_ms = 2.0 * hop + relay_ms
    pushes_ms = issue_ms + waves * cycle_ms
    to_last_relay_socket = (broadcast_ms + issue_ms + (waves - 1) * cycle_ms + hop + relay_ms) if relays else 0.0
    enqueue_ms = here * P.worker_cpu_us_per_client_round / 1000.0
    p99 = max(broadcast_ms, to_last_relay_socket) + enqueue_ms

    # Requests reaching the stream object: stores, openings (one per viewer connect), feed opens.
    connects_per_sec = viewers * P.reconnects_per_viewer_hour / 3600.0
    opens_per_hour = sockets * feed_opens_per_socket_hour(rate, members, P)
    stream_rps = (rate + connects_per_sec * P.do_requests_per_viewer_connect
                  + opens_per_hour / 3600.0 * P.do_requests_per_feed_open)

    busy = {
        "stream object": rate * (broadcast_ms + issue_ms) / 1000.0 + connects_per_sec * P.do_cpu_ms_per_opening / 1000.0,
        "relay": rate * relay_ms / 1000.0,
        "push pipeline": rate * pushes_ms / 1000.0 if relays else 0.0,
        "isolate": here * viewer_cpu_us_per_sec(rate, P) / 1e6,
    }
    isolate_mb = here * P.memory_kib_per_client / 1024.0

    why_not = {}
    if p99 > lat_ms + 1e-9:
        why_not["p99"] = f"p99 {p99:,.0f} ms > {lat_ms:g} ms"
    for what, value in busy.items():
        if value > P.cpu_headroom + 1e-12:
            extra = " (a message's pushes wait for every relay's answer to the previous one)" if what == "push pipeline" else ""
            why_not[what] = f"{what} busy {value:.2f} > {P.cpu_headroom:g}{extra}"
    if isolate_mb > P.worker_isolate_memory_mb:
        why_not["isolate memory"] = f"isolate memory {isolate_mb:,.0f} MB > {P.worker_isolate_memory_mb:g} MB"
    if stream_rps > P.do_soft_limit_rps:
        why_not["requests/s"] = f"stream object {stream_rps:,.0f} requests/s > soft limit {P.do_soft_limit_rps:,.0f}"
    if capacity > min(RELAY_CAPACITY_MAX, P.do_max_websockets_per_object):
        why_not["capacity"] = f"RELAY_CAPACITY {capacity:,} > {min(RELAY_CAPACITY_MAX, P.do_max_websockets_per_object):,}"

    return {
        "viewers": viewers,
        "viewers_per_isolate": per_isolate,
        "isolates": isolates,
        "feed_sockets": sockets,
        "members_per_socket": members,
        "relay_capacity": capacity,
        "stream_object_sockets": own,
        "relays": relays,
        "sockets_on_relays": sockets - own,
        "fullest_relay_sockets": fullest,
        "push_waves": waves,
        "broadcast_ms": broadcast_ms,
        "push_cycle_ms": cycle_ms if relays else 0.0,
        "pushes_ms": pushes_ms,
        "enqueue_ms": enqueue_ms,
        "p99_ms": p99,
        "busy": busy,
        "isolate_memory_mb": isolate_mb,
        "stream_object_requests_per_sec": stream_rps,
        "viewer_connects_per_sec": connects_per_sec,
        "feed_opens_per_hour": opens_per_hour,
        # Awake (billed) object time per round: the stream object until every push answered
        # (a pending DO->DO call keeps it in memory), each relay for its send loop.
        "awake_ms_per_round": broadcast_ms + (pushes_ms if relays else 0.0) + relays * relay_ms,
        "feasible": not why_not,
        "why_not": why_not,
    }


def stream_thread_sockets(rate: float, P) -> int:
    """Sockets the stream object's thread can send a round to within the p99 and the busy
    bounds, with no pushes and no openings: the most it can usefully hold."""
    lat_ms, cpu_ms = round_budgets_ms(rate, P.p99_target_ms, P.cpu_headroom)
    return max_sockets(min(lat_ms, cpu_ms), P.do_fixed_ms_per_round, P.do_send_us_per_socket, 10**12)


def relay_thread_sockets(rate: float, P) -> int:
    """The same for a relay (no storage, no openings)."""
    lat_ms, cpu_ms = round_budgets_ms(rate, P.p99_target_ms, P.cpu_headroom)
    return max_sockets(min(lat_ms, cpu_ms), P.relay_fixed_ms_per_round, P.do_send_us_per_socket, 10**12)


def max_audience(rate: float, per_isolate: float, capacity: int, P, relays: bool = True) -> dict:
    """Largest audience (in whole isolates) that passes every check with RELAY_CAPACITY =
    `capacity`; with relays=False the sockets also stop at `capacity` (no relay is made).

    Every check grows with the audience, so the largest passing number of isolates is found by
    doubling, then bisection. Returns its evaluation (or None when not even one isolate passes),
    the check that stops it from growing, and whether the search hit MAX_ISOLATES.
    """
    def at(n):
        t = evaluate(rate, n * per_isolate, per_isolate, capacity, P)
        if not relays and t["relays"] > 0:
            t = {**t, "feasible": False, "why_not": {"RELAY_CAPACITY": f"more than RELAY_CAPACITY {capacity:,} sockets"}}
        return t

    if not at(1)["feasible"]:
        return {"best": None, "binding": at(1)["why_not"], "unbounded": False}
    lo, hi = 1, 2
    while hi <= MAX_ISOLATES and at(hi)["feasible"]:
        lo, hi = hi, hi * 2
    if hi > MAX_ISOLATES:
        return {"best": at(lo), "binding": {}, "unbounded": True}
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if at(mid)["feasible"]:
            lo = mid
        else:
            hi = mid
    return {"best": at(lo), "binding": at(hi)["why_not"], "unbounded": False}


def capacity_candidates(rate: float, P) -> list[int]:
    """RELAY_CAPACITY values to try for the most viewers: from the most sockets a stream object's
    thread can serve down to 5 % of it, in 5 % steps, plus the configured value."""
    top = min(RELAY_CAPACITY_MAX, P.do_max_websockets_per_object, stream_thread_sockets(rate, P))
    found = {max(1, math.floor(top * (1 - i / 20))) for i in range(20)} if top >= 1 else set()
    return sorted(found | {P.relay_capacity}, reverse=True)


def max_audience_tuned(rate: float, per_isolate: float, P) -> dict:
    """The most viewers one relay layer can serve with the best RELAY_CAPACITY among the
    candidates (the value is part of the answer)."""
    best = {"best": None, "binding": {}, "unbounded": False}
    for capacity in capacity_candidates(rate, P):
        found = max_audience(rate, per_isolate, capacity, P)
        if found["best"] and (best["best"] is None or found["best"]["viewers"] > best["best"]["viewers"]):
            best = found
    return best


def largest_working_capacity(rate: float, viewers: float, per_isolate: float, P) -> dict | None:
    """The largest RELAY_CAPACITY (fewest relays) with which `viewers` pass every check, or None.

    A capacity above what the stream object's thread can serve (stream_thread_sockets) fails
    whenever relays are needed, and changes nothing when they are not, so the search starts
    there: down in steps of 0.2 % of it, then one by one within the step above the first that
    passes. (Passing is not strictly monotone in the capacity, because waves of pushes jump:
    this finds the largest on that grid and its refinement.)
    """
    top = min(RELAY_CAPACITY_MAX, P.do_max_websockets_per_object, stream_thread_sockets(rate, P))
    if top < 1:
        return None
    step = max(1, top // 500)
    for c in range(top, 0, -step):
        t = evaluate(rate, viewers, per_isolate, c, P)
        if t["feasible"]:
            for finer in range(min(top, c + step - 1), c, -1):
                u = evaluate(rate, viewers, per_isolate, finer, P)
                if u["feasible"]:
                    return u
            return t
    return None


def goal_plan(rate: float, per_isolate: float, P) -> dict:
    """The goal audience at one rate and spreading: as configured (RELAY_CAPACITY input), and,
    if that fails, with the largest RELAY_CAPACITY that works."""
    configured = evaluate(rate, P.goal_viewers, per_isolate, P.relay_capacity, P)
    tuned = None if configured["feasible"] else largest_working_capacity(rate, P.goal_viewers, per_isolate, P)
    return {"as_configured": configured, "tuned": tuned,
            "met": configured["feasible"] or tuned is not None}


def with_inputs(P, **changes) -> SimpleNamespace:
    """A copy of the inputs with some values changed (for sensitivities)."""
    return SimpleNamespace(**{**vars(P), **changes})


def largest_hop_that_works(rate: float, per_isolate: float, P) -> float | None:
    """The largest relay_hop_latency_ms (to 0.5 ms) at which the goal is met with some
    RELAY_CAPACITY; None when even 0 ms fails. Only meaningful when relays are needed."""
    if not goal_plan(rate, per_isolate, with_inputs(P, relay_hop_latency_ms=0.0))["met"]:
        return None
    lo, hi = 0.0, P.p99_target_ms
    if goal_plan(rate, per_isolate, with_inputs(P, relay_hop_latency_ms=hi))["met"]:
        return hi
    while hi - lo > 0.5:
        mid = (lo + hi) / 2
        if goal_plan(rate, per_isolate, with_inputs(P, relay_hop_latency_ms=mid))["met"]:
            lo = mid
        else:
            hi = mid
    return lo


def upstash_commands_per_sec(viewers: float, P) -> float:
    """Commands/s one game's audience sends to Upstash: connects x commands per connect, plus
    one lease refresh per isolate and key every LEASE_REFRESH_SECS."""
    connects = viewers * P.reconnects_per_viewer_hour / 3600.0 * P.upstash_cmds_per_connect
    isolates = viewers / P.viewers_per_isolate
    refresh = isolates * P.keys_per_isolate * P.upstash_cmds_per_refresh_per_key / P.lease_refresh_secs
    return connects + refresh


# ---------------------------------------------------------------------------------------------
# Cost: per 1 000 always-connected viewers, one month
# ---------------------------------------------------------------------------------------------

def month_seconds(days: float) -> float:
    return days * 86400.0


def connects_per_month(viewers: float, reconnects_per_hour: float, days: float) -> float:
    """SSE connections opened per month by viewers who stay connected and reconnect at a rate
    (steady state; each connection is one Worker request and one opening from the object)."""
    return viewers * reconnects_per_hour * 24.0 * days


def kv_reads_per_month(viewers: float, P, seconds: float) -> float:
    """Upper bound on KV reads: per isolate and key, lookups arrive at (streams of that key) x
    (1 / effective re-check period + reconnects/s), and the isolate cache reads KV at most once
    per KEY_CACHE_SECS; reads <= min(lookups, 1 / KEY_CACHE_SECS)."""
    isolates = viewers / P.viewers_per_isolate
    streams_per_key = P.viewers_per_isolate / P.keys_per_isolate
    recheck = effective_recheck_secs(P.heartbeat_secs, P.key_recheck_secs)
    lookups = streams_per_key * (1.0 / recheck + P.reconnects_per_viewer_hour / 3600.0)
    return isolates * P.keys_per_isolate * min(lookups, 1.0 / P.key_cache_secs) * seconds


def upstash_commands_per_month(viewers: float, P, seconds: float) -> float:
    """Upstash commands: every connection's admission and release, plus one lease refresh per
    isolate and key every LEASE_REFRESH_SECS (upstash_commands_per_sec is the same per second)."""
    connects = connects_per_month(viewers, P.reconnects_per_viewer_hour, P.month_days)
    isolates = viewers / P.viewers_per_isolate
    return (connects * P.upstash_cmds_per_connect
            + isolates * P.keys_per_isolate * seconds / P.lease_refresh_secs * P.upstash_cmds_per_refresh_per_key)


def cost_rows(rate: float, P, layout: dict, viewers: float = 1000.0) -> list[dict]:
    """Line items for `viewers` viewers for one month at `rate` rounds/s: units and USD, at the
    marginal price (past the plan's included amounts, which are shown apart).

    What depends on how the game is served (feed sockets, their opens, relay pushes, object
    duration) is this audience's share of `layout`, one evaluate() of the whole game.
    """
    seconds = month_seconds(P.month_days)
    hours = 24.0 * P.month_days
    share = viewers / layout["viewers"]
    connects = connects_per_month(viewers, P.reconnects_per_viewer_hour, P.month_days)
    isolates = viewers / P.viewers_per_isolate
    tick = tick_secs(P.heartbeat_secs, P.key_recheck_secs)
    recheck = effective_recheck_secs(P.heartbeat_secs, P.key_recheck_secs)
    sockets = layout["feed_sockets"] * share
    on_relays = layout["sockets_on_relays"] / layout["feed_sockets"] if layout["feed_sockets"] else 0.0
    feed_opens = layout["feed_opens_per_hour"] * hours * share
    per_m = 1e6

    def row(item, meter, counted, units, price, per):
        return {"item": item, "meter": meter, "counted": counted, "units": units,
                "usd": units / per * price}

    cpu_rounds = viewers * rate * seconds * P.worker_cpu_us_per_client_round / 1000.0
    cpu_heartbeats = viewers * seconds / tick * P.worker_cpu_us_per_heartbeat / 1000.0
    cpu_rechecks = viewers * seconds / recheck * P.worker_cpu_us_per_key_recheck / 1000.0
    cpu_connects = (connects * P.worker_cpu_ms_per_connect
                    + isolates * seconds / P.lease_refresh_secs * P.worker_cpu_us_per_lease_refresh / 1000.0)
    incoming = sockets * P.ws_incoming_msgs_per_socket_hour * hours
    pushes = layout["relays"] * rate * seconds * share
    # Awake object time: the rounds, plus the stream object answering openings (not overlapped
    # with the rounds: an upper bound).
    awake_s = (layout["awake_ms_per_round"] / 1000.0 * rate * seconds * share
               + connects * P.do_cpu_ms_per_opening / 1000.0)
    upstash = upstash_commands_per_month(viewers, P, seconds)
    cpu_price, req_price = P.price_worker_cpu_per_million_ms, P.price_worker_requests_per_million
    do_price = P.price_do_requests_per_million
    opens_per_socket_hour = layout["feed_opens_per_hour"] / layout["feed_sockets"] if layout["feed_sockets"] else 0.0
    return [
        row("Workers requests", "worker_requests", "SSE connections (1 request each; subrequests not billed)", connects, req_price, per_m),
        row("Workers CPU: rounds", "worker_cpu_ms", "CPU-ms, one enqueue per viewer per round", cpu_rounds, cpu_price, per_m),
        row("Workers CPU: heartbeats", "worker_cpu_ms", f"CPU-ms, a tick every {tick:g} s", cpu_heartbeats, cpu_price, per_m),
        row("Workers CPU: key re-checks", "worker_cpu_ms", f"CPU-ms, a re-check every {recheck:g} s", cpu_rechecks, cpu_price, per_m),
        row("Workers CPU: connects, lease refresh", "worker_cpu_ms", "CPU-ms", cpu_connects, cpu_price, per_m),
        row("DO requests: openings", "do_requests", "GET /opening, for connects the feed cannot serve", connects * P.do_requests_per_viewer_connect, do_price, per_m),
        row("DO requests: feed socket opens", "do_requests",
            f"{fmt_units(sockets)} sockets x {opens_per_socket_hour:.3g} opens/h (+ a relay join for {on_relays:.0%})",
            feed_opens * (P.do_requests_per_feed_open + on_relays * P.do_requests_per_relay_join), do_price, per_m),
        row("DO requests: incoming WS messages", "do_requests", f"messages / {P.do_ws_incoming_billing_ratio:g}", incoming / P.do_ws_incoming_billing_ratio, do_price, per_m),
        row("DO outgoing WS messages (frames)", "none", "one per feed socket per round, not billed", sockets * rate * seconds, 0.0, per_m),
        row("DO requests: DO->relay pushes", "do_requests", "one per relay per round (share of the game's)", pushes, do_price, per_m),
        row("DO duration", "do_gb_s", f"GB-s awake (x {P.do_billed_memory_gb:g} GB)", awake_s * P.do_billed_memory_gb, P.price_do_gb_s_per_million, per_m),
        row("KV reads", "kv_reads", "reads (upper bound)", kv_reads_per_month(viewers, P, seconds), P.price_kv_reads_per_million, per_m),
        row("Upstash commands", "upstash", "commands", upstash, P.price_upstash_per_100k_commands, 1e5),
    ]


def included_allowances(P) -> dict:
    """Workers Paid's monthly included usage, per meter."""
    return {
        "worker_requests": P.included_worker_requests,
        "worker_cpu_ms": P.included_worker_cpu_ms,
        "do_requests": P.included_do_requests,
        "do_gb_s": P.included_do_gb_s,
        "kv_reads": P.included_kv_reads,
    }


def allowance_value_usd(P) -> float:
    """What the included usage would cost at the marginal prices, if all of it were used."""
    return (P.included_worker_requests / 1e6 * P.price_worker_requests_per_million
            + P.included_worker_cpu_ms / 1e6 * P.price_worker_cpu_per_million_ms
            + P.included_do_requests / 1e6 * P.price_do_requests_per_million
            + P.included_do_gb_s / 1e6 * P.price_do_gb_s_per_million
            + P.included_kv_reads / 1e6 * P.price_kv_reads_per_million)


def viewers_covered(rows: list[dict], P, viewers: float = 1000.0) -> dict:
    """Viewers whose usage of each meter fits in the plan's included amount."""
    covered = {}
    for meter, allowance in included_allowances(P).items():
        units = sum(r["units"] for r in rows if r["meter"] == meter)
        covered[meter] = math.inf if units == 0 else allowance / (units / viewers)
    return covered


def per_game_fixed(rate: float, P) -> dict:
    """Per game, whatever its audience: ingest's POST per round (at most one batch per round
    when rounds are spread out) and one /store into the game's and the type's objects."""
    seconds = month_seconds(P.month_days)
    worker_requests = rate * seconds
    do_requests = 2 * rate * seconds
    gb_s = rate * seconds * 2 * P.do_fixed_ms_per_round / 1000.0 * P.do_billed_memory_gb
    usd = (worker_requests / 1e6 * P.price_worker_requests_per_million
           + do_requests / 1e6 * P.price_do_requests_per_million
           + gb_s / 1e6 * P.price_do_gb_s_per_million)
    return {"worker_requests": worker_requests, "do_requests": do_requests, "do_gb_s": gb_s, "usd": usd}


# ---------------------------------------------------------------------------------------------
# The whole model
# ---------------------------------------------------------------------------------------------

def spreads(P) -> list[float]:
    """The viewers-per-isolate values shown: the cases and the base value."""
    return sorted({*P.viewers_per_isolate_cases, float(P.viewers_per_isolate)})


def cost_layout(goal: dict) -> tuple[dict, str]:
    """The layout the costs are shared from: the goal as configured when it passes, else with
    the RELAY_CAPACITY that works, else as configured anyway (the goal is missed)."""
    if goal["as_configured"]["feasible"]:
        return goal["as_configured"], "as configured"
    if goal["tuned"] is not None:
        return goal["tuned"], f"with RELAY_CAPACITY {goal['tuned']['relay_capacity']:,}"
    return goal["as_configured"], "as configured, goal missed"


def run_model(P) -> dict:
    result = {"rates": {}}
    for rate in P.rounds_per_sec_cases:
        by_spread = {}
        for vpi in spreads(P):
            goal = goal_plan(rate, vpi, P)
            # The relay sensitivities matter when relays serve the goal, or when it is missed.
            relay_question = (goal["tuned"] or goal["as_configured"])["relays"] > 0 or not goal["met"]
            unlimited = goal_plan(rate, vpi, with_inputs(P, relay_push_concurrency=0))
            by_spread[vpi] = {
                "max_no_relays": max_audience(rate, vpi, P.relay_capacity, P, relays=False),
                "max_relays_as_configured": max_audience(rate, vpi, P.relay_capacity, P),
                "max_relays_tuned": max_audience_tuned(rate, vpi, P),
                "goal": goal,
                "goal_if_pushes_uncapped": {"met": unlimited["met"],
                                            "relay_capacity": (unlimited["tuned"] or unlimited["as_configured"])["relay_capacity"] if unlimited["met"] else None},
                "relay_question": relay_question,
                "largest_hop_ms_that_works": largest_hop_that_works(rate, vpi, P) if relay_question else None,
                "owner_hours_to_cpu_limit": hours_to_cpu_limit(rate, vpi, P),
            }
        base = by_spread[float(P.viewers_per_isolate)]
        layout, layout_label = cost_layout(base["goal"])
        rows = cost_rows(rate, P, layout)
        result["rates"][rate] = {
            "stream_thread_sockets": stream_thread_sockets(rate, P),
            "relay_thread_sockets": relay_thread_sockets(rate, P),
            "worker_isolate_caps": worker_isolate_caps(rate, P),
            "viewer_hours_to_cpu_limit": hours_to_cpu_limit(rate, 1, P),
            "by_viewers_per_isolate": by_spread,
            "cost_layout": {"how": layout_label, "viewers": layout["viewers"], "relays": layout["relays"],
                            "feed_sockets": layout["feed_sockets"], "goal_met": base["goal"]["met"]},
            "cost_rows": rows,
            "cost_total_cloudflare_usd": sum(r["usd"] for r in rows if r["meter"] != "upstash"),
            "cost_total_usd": sum(r["usd"] for r in rows),
            "viewers_covered_by_plan": viewers_covered(rows, P),
            "per_game_fixed": per_game_fixed(rate, P),
        }
    result["upstash_cmds_per_sec_at_goal"] = upstash_commands_per_sec(P.goal_viewers, P)
    result["allowance_value_usd"] = allowance_value_usd(P)
    return result


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

def fmt_int(n) -> str:
    if n is None:
        return "-"
    if isinstance(n, float) and math.isinf(n):
        return "unlimited"
    return f"{round(n):,}"


def fmt_units(x: float) -> str:
    if x == 0:
        return "0"
    if x >= 1e6:
        return f"{x / 1e6:,.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:,.1f} k"
    return f"{x:,.1f}"


def rate_label(rate: float) -> str:
    return f"{rate:g} round/s" if rate == 1 else f"{rate:g} rounds/s"


def short_source(source: str) -> str:
    """The address and date of a published source, without the quote (the JSON has it)."""
    return source.split(" says: ")[0]


def busiest(t: dict) -> str:
    what = max(t["busy"], key=t["busy"].get)
    return f"busiest {t['busy'][what]:.2f} ({what})"


def describe_layout(t: dict) -> str:
    """Where the sockets are: '10,000 on the stream object + 9 relays (fullest 10,000)'."""
    text = f"{fmt_int(t['stream_object_sockets'])} on the stream object"
    if t["relays"]:
        text += f" + {fmt_int(t['relays'])} relay{'s' if t['relays'] > 1 else ''} (fullest {fmt_int(t['fullest_relay_sockets'])})"
    return text


def describe_max(found: dict, with_capacity: bool = False) -> str:
    best = found["best"]
    if best is None:
        return "none: " + "; ".join(found["binding"].values())
    text = f"{fmt_int(best['viewers'])}" + (" or more" if found["unbounded"] else "")
    text += f" ({fmt_int(best['feed_sockets'])} sockets"
    if best["relays"]:
        text += f", {fmt_int(best['relays'])} relays"
    if with_capacity and best["relays"]:
        text += f", RELAY_CAPACITY {fmt_int(best['relay_capacity'])}"
    elif with_capacity:
        text += ", no relay adds to it"
    text += ")"
    if found["binding"]:
        text += "; limit: " + ", ".join(found["binding"])
    return text


def describe_eval(t: dict) -> str:
    if t["feasible"]:
        return f"met: p99 {t['p99_ms']:,.0f} ms, {busiest(t)}"
    return "NOT met: " + "; ".join(t["why_not"].values())


def render_text(inputs: dict, overrides: dict, path: Path, model: dict, P) -> str:
    rates = P.rounds_per_sec_cases
    vpis = spreads(P)
    out = []
    w = out.append
    w("# Capacity and cost model (scripts/capacity-model.py)")
    w("")
    w(f"Inputs: {path}" + (f"; overridden: {', '.join(f'{k}={v}' for k, v in overrides.items())}" if overrides else ""))
    w("")
    w("## Inputs used")
    for name, spec in inputs.items():
        mark = " (--set)" if name in overrides else ""
        value = spec["value"]
        shown = ", ".join(f"{v:g}" for v in value) if isinstance(value, list) else f"{value:,}" if isinstance(value, int) else f"{value:g}"
        w(f"- {name} = {shown} {spec['unit']}{mark} — {short_source(spec['source'])}")
    w("")

    # Table 1: limits and the largest audience.
    w(f"## 1. Largest audience of one game (p99 < {P.p99_target_ms:g} ms to the last viewer's enqueue, every thread busy <= {P.cpu_headroom:g})")
    w("")
    w("Sockets on the stream object and its relays = feed sockets = isolates with viewers of the game"
      + (f" (x ceil(viewers in the isolate / FEED_GROUP {P.feed_group}))" if P.feed_group else " (FEED_GROUP = 0)") + ".")
    w("")
    w("| per thread | " + " | ".join(rate_label(r) for r in rates) + " |")
    w("|---|" + "---:|" * len(rates))
    w("| sockets the stream object's thread can serve (no pushes, no openings) | "
      + " | ".join(fmt_int(model["rates"][r]["stream_thread_sockets"]) for r in rates) + " |")
    w("| sockets a relay's thread can serve | "
      + " | ".join(fmt_int(model["rates"][r]["relay_thread_sockets"]) + ("" if model["rates"][r]["relay_thread_sockets"] >= P.relay_capacity else f" (< RELAY_CAPACITY {P.relay_capacity:,})") for r in rates) + " |")
    w(f"| viewers per Worker isolate: its {P.worker_isolate_memory_mb:g} MB ({P.memory_kib_per_client:g} KiB each) | "
      + " | ".join(fmt_int(model["rates"][r]["worker_isolate_caps"]["memory"]) for r in rates) + " |")
    w(f"| viewers per Worker isolate: its thread busy <= {P.cpu_headroom:g} | "
      + " | ".join(fmt_int(model["rates"][r]["worker_isolate_caps"]["cpu"]) for r in rates) + " |")
    w("")
    w("| viewers per isolate | configuration | " + " | ".join(rate_label(r) for r in rates) + " |")
    w("|---:|---|" + "---|" * len(rates))
    for vpi in vpis:
        rows = [("no relays (at most RELAY_CAPACITY sockets)", "max_no_relays", False),
                (f"one relay layer, RELAY_CAPACITY {P.relay_capacity:,}", "max_relays_as_configured", False),
                ("one relay layer, best RELAY_CAPACITY", "max_relays_tuned", True)]
        for label, key, show_cap in rows:
            cells = [describe_max(model["rates"][r]["by_viewers_per_isolate"][vpi][key], show_cap) for r in rates]
            w(f"| {vpi:g} | {label} | " + " | ".join(cells) + " |")
    w("")
    for r in rates:
        m = model["rates"][r]
        owners = ", ".join(f"{m['by_viewers_per_isolate'][v]['owner_hours_to_cpu_limit']:,.1f} h at {v:g}" for v in vpis)
        w(f"- {rate_label(r)}: a viewer's request reaches the {P.worker_cpu_limit_ms_per_request / 1000:g} s CPU limit per "
          f"request after {m['viewer_hours_to_cpu_limit']:,.0f} h connected; a feed owner's request, which also pays the "
          f"enqueue of every member, after {owners} viewers per isolate (then it ends, its viewer resumes and the next member reopens the socket).")
    w(f"- Runtime memory outside the isolate's {P.worker_isolate_memory_mb:g} MB (not a limit in this model): "
      f"{P.runtime_kib_per_client:g} KiB per viewer, so " + ", ".join(
          f"{v * P.runtime_kib_per_client / 1024:,.1f} MiB per isolate of {v:g}" for v in vpis)
      + f"; {P.goal_viewers * P.runtime_kib_per_client / 1024**2:,.0f} GiB for the goal audience across Cloudflare's machines.")
    w("")

    # Table 2: the goal.
    w(f"## 2. Goal: one game at {fmt_int(P.goal_viewers)} concurrent viewers (p99 < {P.p99_target_ms:g} ms, every thread busy <= {P.cpu_headroom:g})")
    w("")
    w(f"| viewers per isolate | rate | isolates = feed sockets | relays (RELAY_CAPACITY {P.relay_capacity:,}) | as configured | largest RELAY_CAPACITY that works |")
    w("|---:|---|---:|---|---|---|")
    for vpi in vpis:
        for r in rates:
            g = model["rates"][r]["by_viewers_per_isolate"][vpi]["goal"]
            c = g["as_configured"]
            relays = f"{fmt_int(c['relays'])} (one layer)" if c["relays"] else "none needed"
            if c["feasible"]:
                tuned = "- (as configured works)"
            elif g["tuned"] is None:
                tuned = "none works"
            else:
                t = g["tuned"]
                tuned = f"{fmt_int(t['relay_capacity'])}: {describe_layout(t)}; {describe_eval(t)}"
            w(f"| {vpi:g} | {rate_label(r)} | {fmt_int(c['feed_sockets'])} | {relays} | {describe_eval(c)} | {tuned} |")
    w("")
    for vpi in vpis:
        for r in rates:
            s = model["rates"][r]["by_viewers_per_isolate"][vpi]
            g = s["goal"]
            t = g["tuned"] if g["tuned"] is not None else g["as_configured"]
            line = (f"- {vpi:g} viewers/isolate, {rate_label(r)}: {describe_layout(t)}"
                    + (f" (RELAY_CAPACITY {fmt_int(t['relay_capacity'])})" if t is g["tuned"] else "")
                    + f"; stream object {t['broadcast_ms']:,.0f} ms per round to its sockets")
            if t["relays"]:
                line += (f", push cycle {t['push_cycle_ms']:,.0f} ms x {t['push_waves']} wave{'s' if t['push_waves'] > 1 else ''}"
                         f" (pushes done after {t['pushes_ms']:,.0f} ms)")
            shown = {k: v for k, v in t["busy"].items() if t["relays"] or k not in ("relay", "push pipeline")}
            line += (f"; isolate enqueue {t['enqueue_ms']:,.2f} ms; busy: " + ", ".join(f"{k} {v:.2f}" for k, v in shown.items())
                     + f"; stream object {t['stream_object_requests_per_sec']:,.0f} requests/s.")
            if s["relay_question"]:
                u = s["goal_if_pushes_uncapped"]
                if P.relay_push_concurrency > 0:
                    line += (f" With no cap of {P.relay_push_concurrency} pushes in flight: "
                             + (f"met (RELAY_CAPACITY {fmt_int(u['relay_capacity'])})." if u["met"] else "not met."))
                hop = s["largest_hop_ms_that_works"]
                line += (f" Met while relay_hop_latency_ms <= {hop:,.1f}." if hop is not None
                         else " Not met even with 0 ms hops.")
            w(line)
    w(f"- Push pipeline: the stream object pushes a message to every relay at once and sends the next message only when "
      f"every relay answered, and a relay answers after its send loop; so each message holds the pipeline for "
      f"2 x relay_hop_latency_ms + the fullest relay's send loop (per wave), which must fit {P.cpu_headroom:g} / rounds/s.")
    met = [f"{v:g}/isolate at {rate_label(r)}" for v in vpis for r in rates if model["rates"][r]["by_viewers_per_isolate"][v]["goal"]["met"]]
    missed = [f"{v:g}/isolate at {rate_label(r)}" for v in vpis for r in rates if not model["rates"][r]["by_viewers_per_isolate"][v]["goal"]["met"]]
    w(f"- Goal met: {', '.join(met) or 'nowhere'}; missed: {', '.join(missed) or 'nowhere'}.")
    up = model["upstash_cmds_per_sec_at_goal"]
    w(f"- Upstash at the goal audience: {up:,.0f} commands/s (Pay-As-You-Go cap {P.upstash_max_commands_per_sec:,.0f}/s).")
    w(f"- What the lease refresh period costs: a Worker isolate that vanishes keeps its streams' slots under "
      f"max_streams taken for up to 3 x LEASE_REFRESH_SECS = {3 * P.lease_refresh_secs:g} s (leases live three "
      f"refresh periods); a stream that ends gives its slot back at once.")
    storm = P.goal_viewers * P.do_requests_per_viewer_connect
    w(f"- Reconnect storm: a viewer joins its isolate's feed without asking the stream object when it has no "
      f"Last-Event-ID or its last id is still in the feed's ring; a fraction of {P.do_requests_per_viewer_connect:g} "
      f"asks for an opening. When the whole audience reconnects (a restarted stream object closes its feed sockets; a "
      f"relay that missed a push closes its own), the {fmt_int(storm)} openings plus one feed socket per isolate take "
      f">= {storm / P.do_soft_limit_rps:,.0f} s at the {P.do_soft_limit_rps:,.0f} requests/s soft limit of one object"
      + (f" and >= {storm * P.do_cpu_ms_per_opening / 1000:,.0f} s of its thread ({P.do_cpu_ms_per_opening:g} ms each)." if P.do_cpu_ms_per_opening else "."))
    w("")

    # Table 3: cost.
    w(f"## 3. Monthly cost per 1,000 concurrent viewers ({P.month_days:g}-day month, always connected, "
      f"{P.reconnects_per_viewer_hour:g} reconnect/viewer/hour, {P.viewers_per_isolate:g} viewers per isolate), marginal prices (USD)")
    w("")
    header = "| item | counted |"
    rule = "|---|---|"
    for r in rates:
        header += f" {rate_label(r)}: units | $ |"
        rule += "---:|---:|"
    w(header)
    w(rule)
    first = model["rates"][rates[0]]["cost_rows"]
    for i, base in enumerate(first):
        line = f"| {base['item']} | {base['counted']} |"
        for r in rates:
            row = model["rates"][r]["cost_rows"][i]
            line += f" {fmt_units(row['units'])} | {row['usd']:,.3f} |"
        w(line)
    line = "| **total Cloudflare** | |"
    for r in rates:
        line += f" | **{model['rates'][r]['cost_total_cloudflare_usd']:,.2f}** |"
    w(line)
    line = "| **total with Upstash** | |"
    for r in rates:
        line += f" | **{model['rates'][r]['cost_total_usd']:,.2f}** |"
    w(line)
    w("")
    w(f"- Plan base fee, apart: Workers Paid ${P.price_workers_paid_base_usd:,.2f}/month per account. The figures above are "
      f"marginal (no included usage applied). Included monthly: {P.included_worker_requests / 1e6:g} M Worker requests, "
      f"{P.included_worker_cpu_ms / 1e6:g} M CPU-ms, {P.included_do_requests / 1e6:g} M DO requests, "
      f"{P.included_do_gb_s:,.0f} GB-s, {P.included_kv_reads / 1e6:g} M KV reads: worth ${model['allowance_value_usd']:,.2f} "
      "at these prices when fully used.")
    names = {"worker_requests": "Worker requests", "worker_cpu_ms": "CPU-ms", "do_requests": "DO requests",
             "do_gb_s": "GB-s", "kv_reads": "KV reads"}
    for r in rates:
        m = model["rates"][r]
        cov = m["viewers_covered_by_plan"]
        tight = min(cov, key=cov.get)
        w(f"- {rate_label(r)}: the included usage covers the first " + ", ".join(
            f"{fmt_int(cov[k])} viewers ({names[k]})" for k in cov)
          + f"; the first to run out is {names[tight]}.")
        fixed = m["per_game_fixed"]
        lay = m["cost_layout"]
        w(f"  Feed sockets, their opens, relay pushes and object duration are this share of a {fmt_int(lay['viewers'])}-viewer game "
          f"served {lay['how']} ({fmt_int(lay['feed_sockets'])} feed sockets, {fmt_int(lay['relays'])} relays). "
          f"Per game, whatever its audience: ${fixed['usd']:,.2f}/month (ingest POSTs and /store into the game's and type's objects).")
    sens = []
    seconds = month_seconds(P.month_days)
    for vpi in vpis:
        P2 = with_inputs(P, viewers_per_isolate=vpi)
        kv = kv_reads_per_month(1000, P2, seconds) / 1e6 * P.price_kv_reads_per_million
        upst = upstash_commands_per_month(1000, P2, seconds) / 1e5 * P.price_upstash_per_100k_commands
        sockets = 1000 / vpi * sockets_per_isolate(1000, vpi, P.feed_group)
        sens.append(f"{vpi:g} viewers/isolate: {fmt_units(sockets)} feed sockets, KV ${kv:,.2f} + Upstash ${upst:,.2f}")
    w("- KV reads, Upstash lease refreshes and feed sockets are per isolate, so they depend on how Cloudflare spreads viewers: "
      + "; ".join(sens) + " (per 1,000 viewers). Feed socket opens are a small share of the DO requests: every viewer "
      "connect still makes one opening request to the stream object.")
    w("- Outgoing WebSocket messages (every frame the objects send) are not billed: verified on the Durable Objects pricing "
      "page (\"There is no charge for outgoing WebSocket messages\"). Hibernated objects are not billed for duration.")
    w(f"- Pushes: the implementation issues one DO->DO fetch per relay per message, all at once (join_all); "
      f"relay_push_concurrency = {P.relay_push_concurrency} models a runtime cap of that many in flight (0 = none).")
    w(f"- Placeholders to refresh from the benchmark: {', '.join(placeholders(inputs))}.")
    return "\n".join(out) + "\n"


def placeholders(inputs: dict) -> list[str]:
    """Inputs still waiting for a benchmark figure ('(to be refreshed)' in their source)."""
    return [n for n, s in inputs.items() if "to be refreshed" in s["source"]]


def to_json(inputs: dict, overrides: dict, path: Path, model: dict) -> str:
    def clean(x):
        if isinstance(x, float) and math.isinf(x):
            return None
        if isinstance(x, dict):
            return {(f"{k:g}" if isinstance(k, float) else str(k)): clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    doc = {
        "inputs_file": str(path),
        "overrides": overrides,
        "inputs": inputs,
        "placeholders": placeholders(inputs),
        "model": clean(model),
    }
    return json.dumps(doc, indent=2) + "\n"


# ---------------------------------------------------------------------------------------------
# Self-test: formulas against values computed by hand
# ---------------------------------------------------------------------------------------------

def self_test() -> None:
    def close(a, b, tol=1e-9):
        assert abs(a - b) <= tol * max(1.0, abs(b)), (a, b)

    # Budgets: 0.7 headroom at 10 rounds/s leaves 70 ms of thread per round.
    lat, cpu = round_budgets_ms(10, 1000, 0.7)
    assert lat == 1000
    close(cpu, 70.0)
    # (100 ms - 1 ms) / 0.05 ms = 1980 sockets; capped; nothing fits a budget below the fixed cost.
    assert max_sockets(100, 1, 50, 10**6) == 1980
    assert max_sockets(100, 1, 50, 1000) == 1000
    assert max_sockets(1, 2, 50, 1000) == 0

    # Feeds: 1 000 000 viewers at 100 per isolate = 10 000 isolates = 10 000 sockets; with
    # FEED_GROUP 30 an isolate of 100 opens ceil(100 / 30) = 4; 50 viewers fit one isolate.
    assert isolates_for(1_000_000, 100) == 10_000 and isolates_for(1001, 100) == 11 and isolates_for(0, 100) == 0
    assert feed_sockets(1_000_000, 100, 0) == 10_000 and feed_sockets(1_000_000, 100, 30) == 40_000
    assert feed_sockets(50, 100, 0) == 1 and feed_sockets(1_000_000, 10, 0) == 100_000
    # Placement: the stream object keeps RELAY_CAPACITY, relays take the rest in order.
    assert relay_layout(100_000, 10_000) == (10_000, 9, 10_000)
    assert relay_layout(12_000, 10_000) == (10_000, 1, 2_000)
    assert relay_layout(5, 10) == (5, 0, 0)
    assert push_waves(12, 6) == 2 and push_waves(12, 0) == 1 and push_waves(0, 6) == 0

    # Worker isolate: 128 MB / 7 KiB = 18 724 viewers; at 10 rounds/s x 5 us (no timers) a viewer
    # costs 50 us/s, so 0.7 s/s holds 14 000.
    W = SimpleNamespace(worker_isolate_memory_mb=128, memory_kib_per_client=7, cpu_headroom=0.7,
                        worker_cpu_us_per_client_round=5, worker_cpu_us_per_heartbeat=0, worker_cpu_us_per_key_recheck=0,
                        heartbeat_secs=15, key_recheck_secs=20, worker_cpu_limit_ms_per_request=30000)
    assert worker_isolate_caps(10, W) == {"memory": 18724, "cpu": 14000}
    # A feed owner with 100 members at 1 round/s pays 100 x 5 us a second = 1 800 ms an hour:
    # 30 s of CPU lasts 16.67 h; an ordinary viewer (18 ms an hour) 1 666.7 h.
    close(owner_cpu_ms_per_hour(1, 100, W), 1800.0)
    close(hours_to_cpu_limit(1, 100, W), 30000 / 1800)
    close(hours_to_cpu_limit(1, 1, W), 30000 / 18)
    # Timers: 20 us a 15 s tick and 30 us a 30 s re-check add 20/15 + 30/30 us per second.
    W.worker_cpu_us_per_heartbeat, W.worker_cpu_us_per_key_recheck = 20, 30
    close(viewer_cpu_us_per_sec(1, W), 5 + 20 / 15 + 1)
    assert tick_secs(15, 20) == 15 and effective_recheck_secs(15, 20) == 30 and effective_recheck_secs(15, 15) == 15

    # One game through the objects. Send 100 us a socket, no fixed costs, 10 ms hops, 6 pushes
    # in flight, 10 us per viewer enqueue, 100 viewers per isolate, headroom 0.5, 1 round/s.
    T = SimpleNamespace(p99_target_ms=1000, cpu_headroom=0.5, do_send_us_per_socket=100.0, do_fixed_ms_per_round=0.0,
                        do_cpu_ms_per_opening=0.0, relay_fixed_ms_per_round=0.0, relay_push_cpu_us=0.0,
                        relay_hop_latency_ms=10.0, relay_push_concurrency=6, relay_capacity=4000, feed_group=0,
                        worker_cpu_us_per_client_round=10.0, worker_cpu_us_per_heartbeat=0.0, worker_cpu_us_per_key_recheck=0.0,
                        heartbeat_secs=15, key_recheck_secs=20, worker_cpu_limit_ms_per_request=30000,
                        memory_kib_per_client=7, worker_isolate_memory_mb=128, reconnects_per_viewer_hour=0.0,
                        do_requests_per_viewer_connect=1, do_requests_per_feed_open=1, do_soft_limit_rps=1000,
                        do_max_websockets_per_object=32768, goal_viewers=1_000_000)
    # 2 800 000 viewers = 28 000 sockets: 4 000 on the stream object (400 ms), 6 relays of 4 000
    # in one wave. Last relay socket: 400 + 10 (hop) + 400 = 810 ms; + 100 x 10 us enqueue = 811.
    # Pipeline: 1 round/s x (10 + 400 + 10) ms = 0.42. Awake: 400 + 420 + 6 x 400 = 3 220 ms.
    t = evaluate(1, 2_800_000, 100, 4000, T)
    assert (t["feed_sockets"], t["stream_object_sockets"], t["relays"], t["fullest_relay_sockets"], t["push_waves"]) == (28000, 4000, 6, 4000, 1), t
    close(t["p99_ms"], 811.0)
    close(t["busy"]["stream object"], 0.4)
    close(t["busy"]["relay"], 0.4)
    close(t["busy"]["push pipeline"], 0.42)
    close(t["busy"]["isolate"], 0.001)
    close(t["awake_ms_per_round"], 3220.0)
    assert t["feasible"], t
    # Owners of 100 members pay 100 x 10 us a round: 3 600 ms an hour, the 30 s limit every
    # 8.33 h, so each socket reopens 0.12 times an hour: 28 000 x 0.12 = 3 360 opens an hour.
    close(t["feed_opens_per_hour"], 3360.0)
    # 3 200 000 viewers need 7 relays: 2 waves. Last socket 400 + 420 + 10 + 400 + 1 = 1 231 ms;
    # pipeline 2 x 420 ms a second = 0.84.
    t = evaluate(1, 3_200_000, 100, 4000, T)
    close(t["p99_ms"], 1231.0)
    close(t["busy"]["push pipeline"], 0.84)
    assert set(t["why_not"]) == {"p99", "push pipeline"}, t["why_not"]
    # With no cap on pushes in flight, one wave again.
    t = evaluate(1, 3_200_000, 100, 4000, with_inputs(T, relay_push_concurrency=0))
    close(t["p99_ms"], 811.0)
    assert t["feasible"]
    # Largest audience: 6 relays (28 000 isolates x 100); without relays, 4 000 isolates.
    found = max_audience(1, 100, 4000, T)
    assert found["best"]["viewers"] == 2_800_000 and "p99" in found["binding"], found
    found = max_audience(1, 100, 4000, T, relays=False)
    assert found["best"]["viewers"] == 400_000 and "RELAY_CAPACITY" in found["binding"], found
    # Openings: 1 000 viewers reconnecting every second ask 1 000 openings/s at 0.5 ms each, so
    # the stream object is busy 0.5 + 1 ms of sends = 0.501; requests: 1 store + 1 000 openings
    # + 10 sockets x (3 600 + 0.12) opens an hour / 3 600.
    t = evaluate(1, 1000, 100, 4000, with_inputs(T, reconnects_per_viewer_hour=3600, do_cpu_ms_per_opening=0.5))
    close(t["busy"]["stream object"], 0.501)
    close(t["stream_object_requests_per_sec"], 1 + 1000 + 10 * 3600.12 / 3600)
    assert {"stream object", "requests/s"} <= set(t["why_not"]), t["why_not"]

    # The goal with RELAY_CAPACITY lowered: 10 000 sockets (1 viewer per isolate, no enqueue
    # time), headroom 0.6, 10.1 ms hops. As configured (10 000 on the stream object) its thread
    # is busy 1.0. A capacity c in 5 000..6 000 leaves one relay of 10 000 - c:
    # 0.1c + 10.1 + 0.1 (10 000 - c) = 1 010.1 ms. For c in 3 334..4 999 two relays of c:
    # 0.2c + 10.1 <= 1 000 gives c <= 4 949 (p99 999.9 ms; pipeline 0.515 <= 0.6).
    T3 = with_inputs(T, cpu_headroom=0.6, relay_hop_latency_ms=10.1, worker_cpu_us_per_client_round=0.0,
                     relay_capacity=10_000, goal_viewers=10_000)
    assert stream_thread_sockets(1, T3) == 6000
    g = goal_plan(1, 1, T3)
    assert not g["as_configured"]["feasible"] and set(g["as_configured"]["why_not"]) == {"stream object"}, g["as_configured"]
    assert g["met"] and g["tuned"]["relay_capacity"] == 4949 and g["tuned"]["relays"] == 2, g["tuned"]
    close(g["tuned"]["p99_ms"], 999.9)
    # Largest hop: the pipeline 2 hop + 0.1c <= 600 with at most 6 relays in one wave
    # (c >= 1 429); on the search's grid (steps of 12 from 6 000) c = 1 440: hop <= 228 ms.
    hop = largest_hop_that_works(1, 1, T3)
    assert 227.5 <= hop <= 228.0 + 1e-9, hop

    # Month: 1 000 viewers reconnecting once an hour = 720 000 connections in 30 days.
    close(connects_per_month(1000, 1, 30), 720000)
    # KV: 100 streams per isolate, 1 key: 100/30 lookups/s > 1/10 s, so 0.1 read/s per isolate;
    # 10 isolates for 1 000 viewers -> 1 read/s -> 2 592 000 reads a month.
    C = SimpleNamespace(viewers_per_isolate=100, keys_per_isolate=1, heartbeat_secs=15, key_recheck_secs=20,
                        reconnects_per_viewer_hour=0, key_cache_secs=10)
    close(kv_reads_per_month(1000, C, 2592000), 2592000)
    C.viewers_per_isolate = 1  # alone in its isolate: one read per 30 s re-check
    close(kv_reads_per_month(1000, C, 2592000), 1000 * 2592000 / 30)

    # Costs of 1 000 viewers served by 10 feed sockets (100 per isolate), no relays.
    K = SimpleNamespace(month_days=30, reconnects_per_viewer_hour=1, viewers_per_isolate=100, keys_per_isolate=1,
                        heartbeat_secs=15, lease_refresh_secs=60, key_recheck_secs=20, key_cache_secs=10,
                        worker_cpu_us_per_client_round=100, worker_cpu_us_per_heartbeat=0, worker_cpu_us_per_key_recheck=0,
                        worker_cpu_ms_per_connect=0, worker_cpu_us_per_lease_refresh=0, do_cpu_ms_per_opening=0,
                        do_requests_per_viewer_connect=1, do_requests_per_feed_open=1, do_requests_per_relay_join=1,
                        ws_incoming_msgs_per_socket_hour=20, do_ws_incoming_billing_ratio=20,
                        upstash_cmds_per_connect=2, upstash_cmds_per_refresh_per_key=1,
                        price_worker_requests_per_million=0.30, price_worker_cpu_per_million_ms=0.02,
                        price_do_requests_per_million=0.15, price_do_gb_s_per_million=12.5, do_billed_memory_gb=0.128,
                        price_kv_reads_per_million=0.5, price_upstash_per_100k_commands=0.2)
    layout = {"viewers": 1000, "feed_sockets": 10, "sockets_on_relays": 0, "feed_opens_per_hour": 10,
              "relays": 0, "awake_ms_per_round": 10 * 0.035}
    rows = {r["item"]: r for r in cost_rows(1, K, layout)}
    # 720 000 requests x $0.30/M = $0.216; 100 us x 1 000 viewers x 2 592 000 s = 259.2 M CPU-ms = $5.184.
    close(rows["Workers requests"]["usd"], 0.216)
    close(rows["Workers CPU: rounds"]["units"], 259.2e6)
    close(rows["Workers CPU: rounds"]["usd"], 5.184)
    # 720 000 openings = $0.108; 10 sockets reopened once an hour = 7 200 requests = $0.00108.
    close(rows["DO requests: openings"]["usd"], 0.108)
    close(rows["DO requests: feed socket opens"]["units"], 7200)
    # 20 incoming messages an hour per socket are one billed request an hour: 10 x 720 = 7 200.
    close(rows["DO requests: incoming WS messages"]["units"], 7200)
    # Outgoing: one message per socket per round: 10 x 2 592 000, not billed.
    close(rows["DO outgoing WS messages (frames)"]["units"], 25.92e6)
    close(rows["DO outgoing WS messages (frames)"]["usd"], 0.0)
    # Duration: 0.35 ms a round x 2 592 000 rounds = 907.2 s x 0.128 GB = 116.1216 GB-s = $0.00145152.
    close(rows["DO duration"]["units"], 116.1216)
    close(rows["DO duration"]["usd"], 0.00145152)
    # Upstash: 720 000 x 2 + 10 isolates x 43 200 refreshes x 1 = 1 872 000 commands = $3.744
    # (before leases had a period of their own and scripts folded the usage in: 9 792 000, $19.584).
    close(rows["Upstash commands"]["units"], 1872000)
    close(rows["Upstash commands"]["usd"], 3.744)
    # A 1 000 000-viewer game on 100 000 sockets, 90 000 of them on 9 relays, 1 s awake a round:
    # 1 000 viewers' share is 100 sockets, 72 000 opens a month x (1 + 0.9 joins) = 136 800
    # requests, 9 x 2 592 000 / 1 000 = 23 328 pushes and 2 592 s awake (x 0.128 = 331.776 GB-s).
    big = {"viewers": 1_000_000, "feed_sockets": 100_000, "sockets_on_relays": 90_000,
           "feed_opens_per_hour": 100_000, "relays": 9, "awake_ms_per_round": 1000.0}
    rows = {r["item"]: r for r in cost_rows(1, K, big)}
    close(rows["DO requests: feed socket opens"]["units"], 136800)
    close(rows["DO requests: DO->relay pushes"]["units"], 23328)
    close(rows["DO duration"]["units"], 331.776)
    close(rows["DO outgoing WS messages (frames)"]["units"], 100 * 2592000)
    # Allowances: $3 + $0.60 + $0.15 + $5 + $5.
    A = SimpleNamespace(included_worker_requests=10e6, price_worker_requests_per_million=0.30,
                        included_worker_cpu_ms=30e6, price_worker_cpu_per_million_ms=0.02,
                        included_do_requests=1e6, price_do_requests_per_million=0.15,
                        included_do_gb_s=400000, price_do_gb_s_per_million=12.5,
                        included_kv_reads=10e6, price_kv_reads_per_million=0.5)
    close(allowance_value_usd(A), 13.75)
    # Overrides: unknown names and bad values are refused.
    for bad in ("nope=1", "goal_viewers=abc", "goal_viewers=-5", "rounds_per_sec_cases=[]", "cpu_headroom",
                "viewers_per_isolate=0", "feed_group=1.5"):
        try:
            parse_override(bad)
        except InputError:
            pass
        else:
            raise AssertionError(f"{bad} was accepted")
    assert parse_override("rounds_per_sec_cases=1,10") == ("rounds_per_sec_cases", [1.0, 10.0])
    assert parse_override("relay_hop_latency_ms=20") == ("relay_hop_latency_ms", 20)
    assert parse_override("worker_cpu_us_per_client_round=3.2") == ("worker_cpu_us_per_client_round", 3.2)
    print("self-test: ok")


# ---------------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="capacity-model.py",
        description="Capacity and monthly cost of one game's live audience on Cloudflare (see the module docstring).")
    parser.add_argument("--inputs", type=Path, default=DEFAULT_INPUTS, help=f"inputs file (default: {DEFAULT_INPUTS})")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                        help="override an input (repeatable), e.g. --set relay_hop_latency_ms=20")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--self-test", action="store_true", help="check the formulas against hand-computed values")
    args = parser.parse_args(argv)
    if args.self_test:
        self_test()
        return 0
    try:
        inputs = load_inputs(args.inputs)
        overrides = {}
        for text in args.sets:
            name, value = parse_override(text)
            inputs[name]["value"] = value
            overrides[name] = value
    except InputError as err:
        print(f"capacity-model: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    P = params(inputs)
    model = run_model(P)
    if args.json:
        sys.stdout.write(to_json(inputs, overrides, args.inputs, model))
    else:
        sys.stdout.write(render_text(inputs, overrides, args.inputs, model, P))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
