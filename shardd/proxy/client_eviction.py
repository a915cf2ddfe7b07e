"""maxmemory-clients: Valkey 7+'s client eviction (networking.c evictClients), per proxy.

A client's memory is what CLIENT LIST shows as tot-mem (connection.client_memory): a fixed
overhead, its pending query bytes and its unsent replies. The proxy looks closely only at the
clients whose buffers grew (a command carried over reads, replies backing up in the socket):
the hooks are where those buffers grow, never the per-command path. Every other client counts
as its overhead. When the proxy's clients use its share of the limit or more (the limit over
the proxies, as maxmemory is shared by the workers), the largest are disconnected first (Valkey
walks its memory buckets from the top) until under it; CLIENT NO-EVICT clients are spared.
"""
from __future__ import annotations

from .. import log
from .connection import CLIENT_OVERHEAD, client_info_line, client_memory

MIN_LIMIT = 128 * 1024      # getClientEvictionLimit: a smaller setting would evict everyone


def eviction_limit(values: dict) -> int:
    """getClientEvictionLimit in bytes, 0 when off; a percentage (stored negative) is of maxmemory."""
    setting = values.get("maxmemory-clients", 0)
    if setting < 0:
        maxmemory = values.get("maxmemory", 0)
        if not maxmemory:
            return 0
        limit = int(maxmemory * -setting / 100)
    elif setting > 0:
        limit = setting
    else:
        return 0
    return max(limit, MIN_LIMIT)


class ClientEviction:
    """One proxy's client eviction while maxmemory-clients is set."""

    def __init__(self, proxy, limit: int) -> None:
        self.proxy = proxy
        self.share = max(limit // proxy.n_proxies, 1)
        self.grown: dict = {}        # clients whose buffers grew, until they are small again

    def grew(self, conn) -> None:
        """A client's query or output buffer grew: evict if the clients are over the share."""
        self.grown[conn] = None
        self.check()

    def check(self) -> None:
        """evictClients: while the clients use the share or more, close the largest evictable one."""
        proxy = self.proxy
        extra = {}
        for conn in list(self.grown):
            above = client_memory(conn) - CLIENT_OVERHEAD
            if conn.closed or above <= 0:
                del self.grown[conn]
            else:
                extra[conn] = above
        total = len(proxy.clients) * CLIENT_OVERHEAD + sum(extra.values())
        if total < self.share:
            return
        largest = sorted((c for c in extra if "no-evict" not in c.flags), key=extra.__getitem__, reverse=True)
        for conn in largest:
            total -= CLIENT_OVERHEAD + extra[conn]
            self.evict(conn)
            if total < self.share:
                return
        # Only clients at their overhead are left over it: any of them will do.
        for conn in list(proxy.clients.values()):
            if conn in extra or "no-evict" in conn.flags or conn.closed:
                continue
            total -= CLIENT_OVERHEAD
            self.evict(conn)
            if total < self.share:
                return
        log.log("warning", "Over client maxmemory after evicting all evictable clients")

    def evict(self, conn) -> None:
        """freeClient: closed at once, what it had pending is dropped."""
        log.log("notice", f"Evicting client: {client_info_line(conn)}")
        proxy = self.proxy
        proxy.limit_stats["evicted_clients"] += 1
        proxy.clients.pop(conn.id, None)
        self.grown.pop(conn, None)
        conn.closing = True
        conn.closed = True
        conn.out.clear()
        if conn.transport is not None:
            conn.transport.abort()


def configure(proxy) -> None:
    """After start or CONFIG SET: client eviction on (with the current share) or off."""
    limit = eviction_limit(proxy.config.values)
    current = proxy.client_eviction
    if not limit:
        proxy.client_eviction = None
    elif current is None or current.share != max(limit // proxy.n_proxies, 1):
        proxy.client_eviction = ClientEviction(proxy, limit)
        if current is not None:
            proxy.client_eviction.grown = current.grown
        else:        # buffers that grew while it was off: looked at once, now
            proxy.client_eviction.grown = {c: None for c in proxy.clients.values()
                                           if client_memory(c) > CLIENT_OVERHEAD}
    if proxy.client_eviction is not None:
        proxy.client_eviction.check()      # a lower limit applies now
