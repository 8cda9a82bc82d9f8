"""
Prometheus metrics (C{--metrics-port}): the text format at C{/metrics}.

The hot path pays one call per message: the realm's observer adds to plain
integers here (L{ChatMetrics.observe}), and the collector turns them into
metric families only when Prometheus scrapes, on the reactor thread (so it
reads the realm's state between turns, never while it changes). Batch sizes
and commit latencies are C{prometheus_client} histograms, observed once per
batch (per reactor turn), not per message.
"""

from collections import defaultdict

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web import resource, server

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5)

# (what the realm tells, metric name, label, help)
EVENT_COUNTERS = [
    ("login", "chatproto_logins", "frontend", "Successful logins"),
    ("login-failed", "chatproto_login_failures", "reason",
     "Refused logins: blocked (locked out or banned), no-such-account, wrong-password, blocked-now, ..."),
    ("lockout", "chatproto_lockouts", "reason", "Accounts blocked after too many failed logins"),
    ("dropped", "chatproto_slow_readers_dropped", "frontend",
     "Connections dropped for leaving too much output unread"),
    ("refused", "chatproto_connections_refused", "frontend", "Connections refused over the connection caps"),
    ("file-offer", "chatproto_file_offers", "frontend", "File transfers announced (/p2pvideo)"),
    ("admin", "chatproto_admin_actions", "action", "Administrators' kicks, bans, unbans, announcements"),
]


class ChatMetrics:
    """Counts what the realm and the ledger report; a collector of C{registry}."""

    def __init__(self, chat_service, registry: CollectorRegistry | None = None):
        self.chat_service = chat_service
        self.messages: defaultdict = defaultdict(int)
        self.deliveries: defaultdict = defaultdict(int)  # beyond one per message
        self.events: defaultdict = defaultdict(int)
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.journal_batch = Histogram("chatproto_journal_batch_records",
                                       "Changes per text-log batch (one per reactor turn)",
                                       buckets=BATCH_BUCKETS, registry=self.registry)
        self.journal_seconds = Histogram("chatproto_journal_write_seconds", "Time to write (and with --fsync "
                                         "flush) one text-log batch", buckets=LATENCY_BUCKETS,
                                         registry=self.registry)
        self.database_batch = Histogram("chatproto_database_batch_operations", "Operations per database "
                                        "transaction", buckets=BATCH_BUCKETS, registry=self.registry)
        self.database_seconds = Histogram("chatproto_database_commit_seconds", "Time from a batch's commit "
                                          "to its acknowledgement", buckets=LATENCY_BUCKETS,
                                          registry=self.registry)
        self.registry.register(self)
        chat = chat_service.chat
        if chat is not None:
            chat.observers.append(self.observe)
        storage = chat_service.storage
        if storage is not None and hasattr(storage, "observers"):
            storage.observers.append(self.batch)

    def observe(self, what: str, detail: str, n: int) -> None:
        """The realm's observer (L{ChatRealm._notify})."""
        if what == "message":  # the hot path: one call per message, its deliveries in n
            self.messages[detail] += 1
            if n != 1:  # a private message's one delivery is counted with it
                self.deliveries[detail] += n - 1
        else:
            self.events[what, detail] += n

    def batch(self, what: str, size: int, seconds: float) -> None:
        """The ledger's observer: one journal write or database commit."""
        if what == "journal":
            self.journal_batch.observe(size)
            self.journal_seconds.observe(seconds)
        else:
            self.database_batch.observe(size)
            self.database_seconds.observe(seconds)

    # The collector

    def describe(self):
        return []

    def collect(self):
        chat = self.chat_service.chat
        connections = GaugeMetricFamily("chatproto_connections", "Open client connections",
                                        labels=["frontend"])
        counts: dict[str, int] = defaultdict(int)
        counts["line"] = 0
        for factory in self.chat_service.factories:
            open_connections = getattr(factory, "open_connections", None)
            if open_connections is not None:  # the web site: its open WebSockets
                counts[factory.frontend] += open_connections()
                continue
            for connection in list(factory.connections):
                counts[getattr(connection, "frontend", None) or getattr(factory, "frontend", "?")] += 1
        for frontend, n in sorted(counts.items()):
            connections.add_metric([frontend], n)
        yield connections
        users = GaugeMetricFamily("chatproto_active_users", "Logged-in sessions (a user may have several)",
                                  labels=["frontend"])
        active: dict[str, int] = defaultdict(int)
        active["line"] = 0
        for user in chat.active_sessions():
            active[getattr(user.session, "frontend", "?")] += 1
        for frontend, n in sorted(active.items()):
            users.add_metric([frontend], n)
        yield users
        yield GaugeMetricFamily("chatproto_accounts", "Accounts in the credentials file",
                                value=len(chat.accounts.names()))
        yield GaugeMetricFamily("chatproto_groups", "Groups that exist", value=len(chat.groups()))
        yield GaugeMetricFamily("chatproto_bans", "Accounts banned now", value=len(chat.bans.names()))
        messages = CounterMetricFamily("chatproto_messages", "Messages stored, by kind", labels=["kind"])
        deliveries = CounterMetricFamily("chatproto_deliveries", "Messages delivered to recipients' "
                                         "sessions, by kind", labels=["kind"])
        for kind in ("private", "group"):
            messages.add_metric([kind], self.messages[kind])
            deliveries.add_metric([kind], self.messages[kind] + self.deliveries[kind])
        yield messages
        yield deliveries
        for what, name, label, text in EVENT_COUNTERS:
            family = CounterMetricFamily(name, text, labels=[label])
            for (event, detail), n in sorted(self.events.items()):
                if event == what:
                    family.add_metric([detail], n)
            yield family


class MetricsPage(resource.Resource):
    """C{/metrics}: rendered on the reactor thread (the collector reads the realm)."""

    isLeaf = True

    def __init__(self, registry):
        super().__init__()
        self.registry = registry

    def render_GET(self, request):
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self.registry)


def metrics_resource(registry) -> resource.Resource:
    """For a web front end that serves C{/metrics} on its own listener too."""
    return MetricsPage(registry)


def metrics_site(registry) -> server.Site:
    root = resource.Resource()
    root.putChild(b"metrics", MetricsPage(registry))
    site = server.Site(root)
    site.log = lambda request: None  # no access log line per scrape in the operator log
    site.noisy = False
    site.displayTracebacks = False
    return site
