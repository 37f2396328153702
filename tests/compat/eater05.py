"""An eater written with netdumplings 0.5's own DumplingEater (run with the 0.5 venv):
prints each dumpling as one JSON line and stops after N (argv: hub, count, chef or '-')."""

import json
import sys

import netdumplings

hub, count = sys.argv[1], int(sys.argv[2])
chefs = None if sys.argv[3] == '-' else [sys.argv[3]]


async def on_connect(uri, ws):
    print("connected", file=sys.stderr, flush=True)


async def on_dumpling(dumpling):
    # 0.5 hands eaters a Dumpling object (parsed with its own from_json).
    print(json.dumps({"metadata": {"chef": dumpling.chef_name, "kitchen": dumpling.kitchen,
                                   "driver": dumpling.driver.name,
                                   "creation_time": dumpling.creation_time},
                      "payload": dumpling.payload}), flush=True)


eater = netdumplings.DumplingEater(name="old-eater", hub=hub, chef_filter=chefs,
                                   on_connect=on_connect, on_dumpling=on_dumpling)
eater.run(dumpling_count=count)
