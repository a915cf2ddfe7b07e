"""Front proxies: client sockets, RESP parsing, routing, reply order."""
