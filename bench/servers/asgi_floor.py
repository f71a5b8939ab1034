"""Reference, not a peer: the HTTP floor under fastserve. A constant answer from a bare ASGI app
on the same server stack and settings as `mllab.fastserve serve` (uvicorn, uvloop, httptools, no
access log, no proxy headers): it reads the body and answers, with no parsing, no model and no
metrics. Ours against it is the share of a request that is the server stack itself.
Usage: asgi_floor.py PORT"""

import sys

import uvicorn

BODY = b'{"predictions":[1]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=False,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        proxy_headers=False,
    )
