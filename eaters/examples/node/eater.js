#!/usr/bin/env node
// A netdumplings eater in Node.js, using only the `ws` package.
//
//   npm ci
//   node eater.js [ws://HOST:PORT] [COUNT] [CHEF ...]
//
// Prints every dumpling it receives as one JSON line on stdout; status goes to stderr.
// COUNT (0 = forever) makes it exit after that many dumplings; CHEF names subscribe to
// those chefs only (the hub filters, so the rest never cross the network).
// $ND_EATER_TOKEN is sent as the token when the hub requires one.
"use strict";

const WebSocket = require("ws");

const [url = "ws://127.0.0.1:11348", countArg = "0", ...chefs] = process.argv.slice(2);
const count = Number.parseInt(countArg, 10) || 0;
let received = 0;

const hello = { eater_name: "node-eater", protocol: "netdumplings/1" };
if (chefs.length) hello.chefs = chefs;
if (process.env.ND_EATER_TOKEN) hello.token = process.env.ND_EATER_TOKEN;

const ws = new WebSocket(url);

ws.on("open", () => ws.send(JSON.stringify(hello)));

ws.on("message", (data) => {
  if (count && received >= count) return;  // closing: the hub may still be sending
  const message = JSON.parse(data.toString("utf8"));
  // Sending "protocol" makes the hub answer once with a welcome before any dumpling; a
  // netdumplings 0.5 hub sends none. A hello with "batch": true would allow arrays.
  if (message.welcome) {
    console.error(`node-eater: connected to ${url} (hub ${message.hub_version})`);
    return;
  }
  for (const dumpling of Array.isArray(message) ? message : [message]) {
    process.stdout.write(JSON.stringify(dumpling) + "\n");
    received += 1;
    if (count && received >= count) {
      ws.close(1000);
      break;
    }
  }
});

ws.on("close", (code, reason) => {
  // 1000 is our own close; 1008 = bad token, 4102 = too slow, 4103 = bad hello (netdumplings/wire/messages.py).
  console.error(`node-eater: closed (${code} ${reason}) after ${received} dumplings`);
  process.exitCode = code === 1000 || code === 1001 ? 0 : 1;
});

ws.on("error", (err) => {
  console.error(`node-eater: ${err.message}`);
  process.exitCode = 1;
});
