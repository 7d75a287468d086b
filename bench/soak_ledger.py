"""The soak's books: every message counted where it starts and where it ends, and the checks.

The applications, the carrier and the fault schedule write here as things happen (in one event
loop, so no locks); `check()` reads it once the system has settled and turns it into counts
and broken invariants. Nothing here touches a socket.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

TEMPORARY_GRACE = 1.0  # s: a STOP recorded on one gateway reaches the other's index (NOTIFY)
RESYNC = 2.0  # s: after its store is back, a gateway has applied the events it missed
KEYWORDS = ("STOP", "START", "HELP")  # the carrier's keyword MOs; every other MO text is unique


class Mt:
    """One MT an application wants sent (a tag), however many times it had to try."""

    __slots__ = ("app", "attempts", "destination", "gateways", "message_ids", "refused", "sends", "source")

    def __init__(self, app: str, source: str, destination: str) -> None:
        self.app = app
        self.source = source
        self.destination = destination
        self.attempts = 0
        self.sends: list[float] = []  # time of each attempt
        self.gateways: list[int] = []  # the gateway of each attempt
        self.message_ids: list[str] = []  # ESME_ROK answers (more than one: a retry was accepted too)
        self.refused: int | None = None  # final non-zero status


class Mo:
    """One MO the carrier wants delivered: plain (unique text) or a keyword of a pair."""

    __slots__ = ("attempts", "gateway", "key", "rok_at", "sent_at")

    def __init__(self, key: tuple[str, str, str]) -> None:
        self.key = key  # (mobile, number, text)
        self.attempts = 0
        self.sent_at: list[float] = []
        self.rok_at: float | None = None
        self.gateway = -1  # the gateway that answered ESME_ROK


@dataclass
class Ledger:
    started: float = field(default_factory=time.monotonic)
    mts: dict[str, Mt] = field(default_factory=dict)
    carrier_mt: Counter[str] = field(default_factory=Counter)  # tag -> arrivals at the carrier
    carrier_ids: dict[str, str] = field(default_factory=dict)  # carrier message_id -> tag / "reply"
    replies: int = 0  # the gateways' own auto-replies the carrier took
    blocked_arrivals: list[tuple[str, str]] = field(default_factory=list)  # (tag, why)
    arrivals: list[tuple[str, float]] = field(default_factory=list)  # (tag, when) at the carrier
    mos: list[Mo] = field(default_factory=list)
    mo_rok: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # key -> ESME_ROK'd
    mo_attempts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    mo_acked: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # key -> app acks
    mo_misrouted: int = 0
    keyword_events: dict[tuple[str, str], list[tuple[float, float, str, int]]] = field(
        default_factory=lambda: defaultdict(list))  # pair -> (sent, rok, op, gateway)
    receipts_rok: Counter[str] = field(default_factory=Counter)  # message_id -> ESME_ROK'd by a gateway
    receipts_sent: Counter[str] = field(default_factory=Counter)
    receipts_got: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # id -> apps
    unanswered: Counter[str] = field(default_factory=Counter)  # why -> requests never answered
    excused: Counter[str] = field(default_factory=Counter)  # why -> requests lost with their session
    faults: Counter[str] = field(default_factory=Counter)
    fault_log: list[tuple[float, str, str, float]] = field(default_factory=list)
    kills: list[tuple[int, float, float]] = field(default_factory=list)  # (gateway, killed, up again)
    store_outages: list[tuple[int, float, float]] = field(default_factory=list)
    probes: list[tuple[str, int, int, bool]] = field(default_factory=list)  # (pair, gw, status, reached)
    resources: list[tuple[int, dict[str, float], dict[str, float]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    recent_acks: deque[tuple[float, int, str]] = field(default_factory=lambda: deque(maxlen=100_000))
    crash_ids: set[str] = field(default_factory=set)

    def now(self) -> float:
        return time.monotonic() - self.started

    # --- applications -------------------------------------------------------------------

    def mt_new(self, tag: str, app: str, source: str, destination: str) -> None:
        self.mts[tag] = Mt(app, source, destination)

    def mt_sent(self, tag: str, gateway: int) -> None:
        mt = self.mts[tag]
        mt.attempts += 1
        mt.sends.append(self.now())
        mt.gateways.append(gateway)

    def mt_answered(self, tag: str, status: int, message_id: str | None) -> None:
        mt = self.mts[tag]
        if status == 0 and message_id is not None:
            mt.message_ids.append(message_id)
        elif status != 0:
            mt.refused = status

    def crashed(self, gateway: int, window: float = 0.5) -> None:
        """A SIGKILL of gateway: the routes of its last `window` s of ESME_ROKs may be lost."""
        since = self.now() - window
        self.crash_ids |= {mid for at, gw, mid in self.recent_acks if gw == gateway and at >= since}

    def receipt_got(self, app: str, message_id: str) -> None:
        self.receipts_got[message_id].append(app)

    def mo_got(self, app: str, owner: str | None, key: tuple[str, str, str]) -> None:
        self.mo_acked[key] += 1
        if owner is not None and owner != app:
            self.mo_misrouted += 1

    # --- carrier --------------------------------------------------------------------------

    def carrier_took(self, tag: str | None, message_id: str | None, source: str, destination: str,
                     blocked: bool) -> None:
        if tag is None:
            self.replies += 1
            if message_id is not None:
                self.carrier_ids[message_id] = "reply"
            return
        self.carrier_mt[tag] += 1
        if message_id is not None:
            self.carrier_ids[message_id] = tag
        self.arrivals.append((tag, self.now()))  # judged at the end: a START is known at its ESME_ROK

    def mo_sent(self, mo: Mo) -> None:
        mo.attempts += 1
        mo.sent_at.append(self.now())
        self.mo_attempts[mo.key] += 1

    def mo_done(self, mo: Mo) -> None:
        mo.rok_at = self.now()
        self.mo_rok[mo.key] += 1
        mobile, number, text = mo.key
        if text in KEYWORDS:
            self.keyword_events[(mobile, number)].append((mo.sent_at[0], mo.rok_at, text, mo.gateway))

    # --- opt-out state ----------------------------------------------------------------------

    def blocked_through(self, mt: Mt, arrival: float) -> str:
        """Why this MT should never have reached the carrier ('' when it could have): every
        attempt was sent after an ESME_ROK'd STOP of its pair (plus the grace for the other
        gateway's index), and no START of the pair was sent between that STOP and the arrival.
        Keyword MOs of one pair are sent one at a time, so their events are in order."""
        events = self.keyword_events.get((mt.destination, mt.source))
        if not events or not mt.sends:
            return ""
        for sent in mt.sends:
            if sent > arrival:
                continue
            stops = [e for e in events if e[2] == "STOP" and e[1] + TEMPORARY_GRACE <= sent]
            if not stops:
                return ""
            last = stops[-1]
            if any(e[2] == "START" and last[0] < e[0] <= arrival for e in events):
                return ""
        stop = [e for e in events if e[2] == "STOP" and e[1] + TEMPORARY_GRACE <= mt.sends[0]][-1]
        if all(g != stop[3] and self.store_away(g, stop[1], t) for t, g in zip(mt.sends, mt.gateways, strict=True)):
            return "stale: " + self._describe(mt, stop, arrival)
        return self._describe(mt, stop, arrival)

    def store_away(self, gateway: int, since: float, until: float) -> bool:
        """Gateway had no store (so no NOTIFY of the other's blocks) some time in [since, until],
        or its index was still catching up (RESYNC s after the store came back, or a restart)."""
        for gw, start, end in self.store_outages:
            if gw == gateway and start <= until and since <= end + RESYNC:
                return True
        return False

    def _describe(self, mt: Mt, stop: tuple[float, float, str, int], arrival: float) -> str:
        attempts = ", ".join(f"{t:.2f}@gw{g}" for t, g in zip(mt.sends, mt.gateways, strict=True))
        return (f"{mt.destination} from {mt.source}: STOP ESME_ROK'd at {stop[1]:.2f} by gw{stop[3]}, "
                f"sent {attempts}, at the carrier {arrival:.2f}")

    def expected_blocks(self) -> dict[tuple[str, str], bool]:
        """pair -> blocked, from the last ESME_ROK'd STOP/START of each pair (one at a time)."""
        state: dict[tuple[str, str], bool] = {}
        for pair, events in self.keyword_events.items():
            for _, _, op, _ in sorted(events, key=lambda e: e[1]):
                if op == "STOP":
                    state[pair] = True
                elif op == "START":
                    state[pair] = False
        return state

    def in_crash_window(self, message_id: str) -> bool:
        """The MT was answered ESME_ROK within 0.5 s before a SIGKILL of a gateway (its route
        may be in the batch the crash lost; README "Running several gateways")."""
        return message_id in self.crash_ids



def keyword_overlaps(mos: list[Mo]) -> Counter[tuple[str, str, str]]:
    """key -> keyword MOs the carrier first sent while an earlier MO with the very same key was
    not yet ESME_ROK'd. A gateway that still has that earlier one in flight takes the later one
    for its copy (README "Order and redelivery": same pair, same text) and answers both with one
    outcome and one forward: on the wire they are the same MO. The soak carrier sends one keyword
    at a time per pair, so this stays 0 unless it is changed to send repeats."""
    by_key: dict[tuple[str, str, str], list[Mo]] = defaultdict(list)
    for mo in mos:
        if mo.key[2] in KEYWORDS and mo.sent_at:
            by_key[mo.key].append(mo)
    overlaps: Counter[tuple[str, str, str]] = Counter()
    for key, group in by_key.items():
        group.sort(key=lambda m: m.sent_at[0])
        answered = 0.0  # the latest ESME_ROK of the earlier ones (inf: one was never answered)
        for n, mo in enumerate(group):
            if n and mo.sent_at[0] < answered:
                overlaps[key] += 1
            answered = max(answered, mo.rok_at if mo.rok_at is not None else float("inf"))
    return overlaps


@dataclass
class Verdict:
    counts: dict[str, int]
    broken: list[str]
    submitted: int
    delivered: int
    lost: int
    duplicated: int
    faults: int


def check(ledger: Ledger, store_blocks: set[tuple[str, str]], outbox_rows: int,
          pending: dict[str, int]) -> Verdict:
    """Every invariant of the soak over the settled books; see README "Reliability"."""
    c: dict[str, int] = {}
    broken: list[str] = []
    ledger.blocked_arrivals = [(tag, why) for tag, at in ledger.arrivals if tag in ledger.mts
                               and (why := ledger.blocked_through(ledger.mts[tag], at))]
    # MT: every ESME_ROK'd submit reached the carrier; duplicates only where the app retried
    acked = [t for t, mt in ledger.mts.items() if mt.message_ids]
    c["mt tags"] = len(ledger.mts)
    c["mt attempts"] = sum(mt.attempts for mt in ledger.mts.values())
    c["mt acked (ESME_ROK)"] = len(acked)
    c["mt refused (final status)"] = sum(1 for mt in ledger.mts.values() if mt.refused and not mt.message_ids)
    c["mt unresolved at the end"] = sum(1 for mt in ledger.mts.values()
                                        if not mt.message_ids and mt.refused is None)
    mt_lost = [t for t in acked if ledger.carrier_mt[t] == 0]
    c["mt lost (acked, never at carrier)"] = len(mt_lost)
    c["mt at carrier"] = sum(ledger.carrier_mt.values())
    dup_explained = dup_silent = 0
    for tag, arrivals in ledger.carrier_mt.items():
        if arrivals > 1:
            mt = ledger.mts.get(tag)
            if mt is not None and arrivals <= mt.attempts:
                dup_explained += arrivals - 1
            else:
                dup_silent += arrivals - 1
    c["mt duplicates (app retried after timeout/cut)"] = dup_explained
    c["mt duplicates unexplained"] = dup_silent
    refused_reached = sum(1 for t, mt in ledger.mts.items()
                          if mt.refused and not mt.message_ids and ledger.carrier_mt[t] > mt.attempts - 1)
    c["mt refused yet at carrier"] = refused_reached
    stale = [b for b in ledger.blocked_arrivals if b[1].startswith("stale: ")]
    ledger.blocked_arrivals = [b for b in ledger.blocked_arrivals if not b[1].startswith("stale: ")]
    c["mt to blocked pair at carrier"] = len(ledger.blocked_arrivals)
    c["mt to pair blocked on the other gateway during this one's store outage"] = len(stale)
    c["gateway auto-replies at carrier"] = ledger.replies
    # MO: every ESME_ROK'd MO reached an application, acked; duplicates only after a carrier retry
    mo_lost = mo_dup = mo_dup_silent = mo_folded = 0
    lost_keys = []
    overlaps = keyword_overlaps(ledger.mos)
    for key, rok in ledger.mo_rok.items():
        acked_n = ledger.mo_acked[key]
        if acked_n < rok:
            folded = min(rok - acked_n, overlaps[key])  # the gateway rightly forwarded those once
            mo_folded += folded
            if rok - acked_n > folded:
                mo_lost += rok - acked_n - folded
                lost_keys.append((key, rok, acked_n, ledger.mo_attempts[key]))
        elif acked_n > rok:
            if acked_n <= ledger.mo_attempts[key]:
                mo_dup += acked_n - rok
            else:
                mo_dup_silent += acked_n - rok
    c["mo sent by carrier"] = len(ledger.mos)
    c["mo attempts"] = sum(ledger.mo_attempts.values())
    c["mo ESME_ROK'd"] = sum(ledger.mo_rok.values())
    c["mo acked by apps"] = sum(ledger.mo_acked.values())
    c["mo lost"] = mo_lost
    c["mo keyword sent again while an identical one was unanswered"] = sum(overlaps.values())
    c["mo folded into that identical copy in flight (one forward)"] = mo_folded
    c["mo duplicates (carrier retried)"] = mo_dup
    c["mo duplicates unexplained"] = mo_dup_silent
    c["mo to the wrong app"] = ledger.mo_misrouted
    c["mo still in outbox"] = outbox_rows
    # receipts: every receipt a gateway took reached the submitter (crash window aside)
    rc_lost = rc_window = rc_wrong = rc_dup = rc_reply = 0
    for mid, rok in ledger.receipts_rok.items():
        tag = ledger.carrier_ids.get(mid)
        got = ledger.receipts_got.get(mid, [])
        if tag == "reply":  # the gateway's own auto-reply: for nobody, or its number's owner (fallback)
            rc_reply += len(got)
            continue
        mt = ledger.mts.get(tag) if tag else None
        owner = mt.app if mt else None
        right = sum(1 for app in got if app == owner)
        rc_wrong += len(got) - right
        if right == 0:
            if ledger.in_crash_window(mid):
                rc_window += 1
            else:
                rc_lost += 1
        elif right > 1:
            rc_dup += right - 1
    c["receipts sent by carrier"] = len(ledger.receipts_sent)
    c["receipts ESME_ROK'd"] = len(ledger.receipts_rok)
    c["receipts at submitter"] = sum(len(v) for v in ledger.receipts_got.values())
    c["receipts lost"] = rc_lost
    c["mt acked within 0.5 s before a SIGKILL"] = len(ledger.crash_ids)
    c["receipts lost in crash window"] = rc_window
    c["receipts to another account"] = rc_wrong
    c["receipts of auto-replies to the number's owner"] = rc_reply
    c["receipts duplicates (carrier retried)"] = rc_dup
    # opt-out: every STOP in the store and refused on both gateways; START lifted
    expected = ledger.expected_blocks()
    want = {pair for pair, blocked in expected.items() if blocked}
    c["pairs blocked (expected)"] = len(want)
    c["pairs blocked (store)"] = len(store_blocks)
    missing = want - store_blocks
    extra = {p for p in store_blocks if p in expected and not expected[p]}
    c["STOP missing from store"] = len(missing)
    c["START not lifted in store"] = len(extra)
    probe_fail = sum(1 for pair, _, status, reached in ledger.probes
                     if (pair in {f"{m}>{n}" for m, n in want}) and (status == 0 or reached))
    c["probes of blocked pairs"] = sum(1 for pair, *_ in ledger.probes if pair in {f"{m}>{n}" for m, n in want})
    c["blocked probes that got through"] = probe_fail
    # answers
    c["requests unanswered"] = sum(ledger.unanswered.values())
    c["requests lost with a killed/aborted session"] = sum(ledger.excused.values())
    for name, count in pending.items():
        c[f"carrier {name} never ESME_ROK'd"] = count
    c["faults injected"] = sum(ledger.faults.values())
    for kind, count in sorted(ledger.faults.items()):
        c[f"  fault {kind}"] = count

    def rule(ok: bool, text: str) -> None:
        if not ok:
            broken.append(text)

    rule(not mt_lost, f"{len(mt_lost)} ESME_ROK'd submit_sm never reached the carrier: {mt_lost[:5]}")
    rule(not dup_silent, f"{dup_silent} MT duplicates at the carrier beyond the application's retries")
    rule(not ledger.blocked_arrivals,
         f"{len(ledger.blocked_arrivals)} MT to a blocked pair reached the carrier: {ledger.blocked_arrivals[:3]}")
    rule(not refused_reached, f"{refused_reached} MT refused to the application yet at the carrier")
    rule(not mo_lost, f"{mo_lost} ESME_ROK'd MO never acked by an application: "
                      f"(key, ESME_ROK'd, acked, sent) {lost_keys[:3]}")
    rule(not mo_dup_silent, f"{mo_dup_silent} MO acked more often than the carrier sent it")
    rule(not ledger.mo_misrouted, f"{ledger.mo_misrouted} MO reached an account not owning the number")
    rule(not outbox_rows, f"{outbox_rows} MO/receipts still in the outbox after settling")
    rule(not rc_lost, f"{rc_lost} receipts ESME_ROK'd by a gateway never reached the submitter")
    rule(not rc_wrong, f"{rc_wrong} receipts reached another account")
    rule(not missing, f"{len(missing)} ESME_ROK'd STOPs not in the store: {sorted(missing)[:3]}")
    rule(not extra, f"{len(extra)} ESME_ROK'd STARTs not lifted in the store: {sorted(extra)[:3]}")
    rule(not probe_fail, f"{probe_fail} MT probes to blocked pairs not refused on a gateway")
    rule(not ledger.unanswered, f"requests never answered: {dict(ledger.unanswered)}")
    rule(not any(pending.values()), f"carrier messages never ESME_ROK'd after settling: {pending}")
    rule(c["mt unresolved at the end"] == 0, f"{c['mt unresolved at the end']} MT never answered for good")
    for gw, base, end in ledger.resources:
        rule(end["fds"] <= base["fds"] + 16, f"gateway {gw}: {base['fds']:.0f} fds at baseline, {end['fds']:.0f} at the end")
        rule(end["rss_mb"] <= base["rss_mb"] * 1.5 + 40,
             f"gateway {gw}: {base['rss_mb']:.0f} MB at baseline, {end['rss_mb']:.0f} MB at the end")
    submitted = c["mt acked (ESME_ROK)"]
    delivered = c["mt at carrier"] - dup_explained - dup_silent + c["mo acked by apps"] - mo_dup - mo_dup_silent \
        + c["receipts at submitter"] - rc_dup
    lost = len(mt_lost) + mo_lost + rc_lost
    duplicated = dup_explained + dup_silent + mo_dup + mo_dup_silent + rc_dup
    return Verdict(c, broken, submitted, delivered, lost, duplicated, c["faults injected"])


def render(verdict: Verdict, seed: int) -> str:
    width = max(len(k) for k in verdict.counts)
    lines = [f"soak seed {seed} (replay: python -m bench.soak --seed {seed} ...)"]
    lines += [f"  {k:<{width}}  {v:>10,}" for k, v in verdict.counts.items()]
    lines += [f"BROKEN: {b}" for b in verdict.broken]
    lines.append(f"soak: {verdict.submitted} submitted, {verdict.delivered} delivered, {verdict.lost} lost, "
                 f"{verdict.duplicated} duplicated, {verdict.faults} faults injected, "
                 f"{len(verdict.broken)} invariants broken")
    return "\n".join(lines)
