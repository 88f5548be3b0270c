"""``GET /events/``: the appliance's events (:mod:`acs.events`) as Server-Sent Events.

An event is a device history entry of a few kinds, so it exists as soon as the change it
tells of is committed, and a client that reconnects with ``Last-Event-ID`` (the entry's
id) gets every event it missed while the entries are kept (``[retention]``). Each
``data:`` line is the event's JSON object (type, id, time, device, organization, actor,
detail). A token scoped
to organizations hears of their devices only; ``?types=`` (comma-separated) narrows the
kinds. One poller reads new entries for every stream every ``POLL`` seconds; a comment line
every ``HEARTBEAT`` seconds keeps idle connections (and proxies) open; at most
``MAX_STREAMS`` streams at once (then 503).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from acs.clock import Reactor
from acs.events import ACTIONS, EVENT_TYPES, event, event_json
from acs.store import Store
from acs.store.models import HistoryEntry
from api.base import Api, ApiError, ApiRequest, Result, field_error, route
from api.docs import Doc, query_param
from api.schema import string

log = Logger(namespace="api.events")

POLL = 0.5
HEARTBEAT = 15.0
MAX_STREAMS = 100
BATCH = 500  # entries read per poll


@dataclass(eq=False)
class _Stream:
    request: Request
    scope: tuple[int, ...] | None
    types: frozenset[str]
    cursor: int
    sent: float = 0.0  # when the stream was last written to


class EventHub:
    """The streams open now and the one poller feeding them (running only while there
    are streams)."""

    def __init__(self, store: Store, reactor: Reactor) -> None:
        self.store = store
        self.reactor = reactor
        self.streams: list[_Stream] = []
        self._poller = LoopingCall(self.poll)
        self._poller.clock = reactor

    @property
    def full(self) -> bool:
        return len(self.streams) >= MAX_STREAMS

    def open(
        self, request: Request, scope: tuple[int, ...] | None, types: frozenset[str], after: int
    ) -> None:
        stream = _Stream(request, scope, types, after, self.reactor.seconds())
        self.streams.append(stream)
        request.notifyFinish().addBoth(lambda _: self._close(stream))
        request.write(b": events\n\n")  # headers out at once: the client knows it is open
        if not self._poller.running:
            self._poller.start(POLL, now=True)
        else:
            self.poll()

    def _close(self, stream: _Stream) -> None:
        if stream in self.streams:
            self.streams.remove(stream)
        if not self.streams and self._poller.running:
            self._poller.stop()

    def poll(self) -> Deferred[None] | None:
        """Send each stream the events after its cursor (at most BATCH per round); the
        entries are read in a unit of work (on PostgreSQL off the reactor thread)."""
        if not self.streams:
            return None
        streams = list(self.streams)  # those opened meanwhile get a poll of their own
        start = min(s.cursor for s in streams)
        read = self.store.read(self._entries, start)
        return read.addCallbacks(lambda got: self._send(streams, *got), self._unread)

    def _entries(self, start: int) -> tuple[int, list[tuple[HistoryEntry, int]]]:
        upto = self.store.last_history_id()
        return upto, self.store.device_events(start, upto, ACTIONS, limit=BATCH)

    def _unread(self, failure: Failure) -> None:
        log.failure("event stream: cannot read the history", failure)

    def _send(
        self, streams: list[_Stream], upto: int, rows: list[tuple[HistoryEntry, int]]
    ) -> None:
        reached = rows[-1][0].id if len(rows) == BATCH else upto
        now = self.reactor.seconds()
        for stream in streams:
            if stream not in self.streams:
                continue  # closed while the entries were read
            chunks = [
                _frame(entry, org)
                for entry, org in rows
                if entry.id > stream.cursor
                and EVENT_TYPES[entry.action] in stream.types
                and (stream.scope is None or org in stream.scope)
            ]
            stream.cursor = max(stream.cursor, reached)
            if not chunks and now - stream.sent < HEARTBEAT:
                continue
            try:
                stream.request.write(b"".join(chunks) or b": heartbeat\n\n")
            except Exception:  # a connection gone bad: end this stream, never the poller
                log.failure("event stream: write failed")
                self._close(stream)
                continue
            stream.sent = now


def _frame(entry: HistoryEntry, organization: int) -> bytes:
    data = event(entry, organization)
    return f"id: {entry.id}\nevent: {data['type']}\ndata: {event_json(data)}\n\n".encode()


class _EventStream(Resource):
    isLeaf = True

    def __init__(
        self, hub: EventHub, scope: tuple[int, ...] | None, types: frozenset[str], after: int
    ) -> None:
        super().__init__()
        self.hub, self.scope, self.types, self.after = hub, scope, types, after

    def render_GET(self, request: Request) -> int:
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        self.hub.open(request, self.scope, self.types, self.after)
        return NOT_DONE_YET


def _types(req: ApiRequest) -> frozenset[str]:
    raw = req.query().get("types", "")
    if not raw:
        return frozenset(EVENT_TYPES.values())
    wanted = frozenset(t.strip() for t in raw.split(",") if t.strip())
    unknown = wanted - set(EVENT_TYPES.values())
    if unknown or not wanted:
        raise field_error("types", f"Use some of {', '.join(EVENT_TYPES.values())}.")
    return wanted


def _after(req: ApiRequest, store: Store) -> int:
    """Where the stream starts: after Last-Event-ID when given, else after the newest."""
    raw = req.raw.getHeader(b"last-event-id")
    text = "" if raw is None else raw.decode("ascii", "replace").strip()
    if not text:
        return store.last_history_id()
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise field_error("Last-Event-ID", "The id of an event this stream sent.")
    return int(text)


@route(
    "/events/",
    methods=("GET",),
    role="viewer",
    doc=Doc(
        "events",
        "The appliance's events, as Server-Sent Events",
        "meta",
        params=(
            query_param(
                "types",
                string(examples=["device.status_changed,task.failed"]),
                "Comma-separated event types (default: all): " + ", ".join(EVENT_TYPES.values()),
                empty=True,
            ),
        ),
        errors=("BadRequest",),
        description="A Last-Event-ID header resumes after that event; 503 past 100 streams. "
        "Scoped tokens hear of their organizations' devices only.",
        responses={
            "200": {
                "description": "An endless text/event-stream.",
                "content": {"text/event-stream": {"schema": string()}},
            }
        },
    ),
)
def events(api: Api, req: ApiRequest) -> Result:
    for name in req.query():
        if name != "types":
            raise field_error(name[:100], "Unknown query parameter.")
    types = _types(req)
    hub: EventHub = api.appliance.events
    if hub.full:
        raise ApiError(503, {"detail": "Too many event streams; try again later."})
    return 200, _EventStream(hub, req.principal.scope, types, _after(req, api.store))
