"""Nova Command's HTTP routes (the site origin, port 3211; also /http/... on the API port).

Each integration keeps its handlers in functions/_http/<integration>.py and registers them here, so
this file reads as the spec's endpoint table.
"""

from engine import HttpRouter

http = HttpRouter()

# -- routes are registered below, one block per integration ------------------------------------------
