"""A netdumplings eater in plain Python: `python eater.py [ws://HOST:PORT] [COUNT]`.

Needs only the `websockets` package; prints each dumpling as one JSON line.
"""
import json
import sys

from websockets.sync.client import connect

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:11348"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 0  # 0 = forever
with connect(url) as ws:
    ws.send(json.dumps({"eater_name": "python-eater"}))  # the 0.5 hello: dumplings only
    for n, message in enumerate(ws, 1):
        print(message, flush=True)
        if n == count:
            break
