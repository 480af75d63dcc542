// joint worker protocol for Node.js: serve joint functions from one long-lived process.
//
// A definition names the worker once per function:
//
//     - name: enrich
//       worker: [node, ./steps.js]
//
// and steps.js ends with:
//
//     const { serve } = require("./joint-worker");
//     serve({ enrich: async (order, ctx) => ({ ...order, region: "eu" }) });
//
// A function gets the input (any JSON value) and a context { run, instance, function, cloud,
// attempt, vars } and returns (or resolves to) any JSON value. Throw a FunctionError(kind, message)
// to fail with your own error kind; any other error fails with kind HandlerError. Requests run
// concurrently; answers go back as they finish. console.log goes to stderr — stdout carries the
// protocol. No dependencies; the protocol is in docs/workers.md.
"use strict";

const readline = require("readline");

class FunctionError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

function serve(functions, input = process.stdin, output = process.stdout) {
  const send = (msg) => output.write(JSON.stringify(msg) + "\n");
  if (output === process.stdout) {
    // User code's console.log must not corrupt the protocol.
    console.log = (...args) => console.error(...args);
  }
  const rl = readline.createInterface({ input, crlfDelay: Infinity });
  rl.on("line", async (line) => {
    if (!line.trim()) return;
    let req;
    try {
      req = JSON.parse(line);
    } catch (e) {
      console.error(`joint-worker: ignoring a request that is not JSON: ${e.message}`);
      return;
    }
    const id = req.id;
    const fn = functions[req.function];
    if (typeof fn !== "function") {
      send({ id, error: { kind: "HandlerNotFound", message: `this worker has no function '${req.function}' (it has: ${Object.keys(functions).sort().join(", ")})` } });
      return;
    }
    try {
      const out = await fn(req.input, req.context || {});
      send({ id, output: out === undefined ? null : out });
    } catch (e) {
      if (e instanceof FunctionError) {
        send({ id, error: { kind: e.kind, message: e.message } });
      } else {
        console.error(e && e.stack ? e.stack : String(e));
        send({ id, error: { kind: "HandlerError", message: `${e && e.name ? e.name : "Error"}: ${e && e.message ? e.message : String(e)}` } });
      }
    }
  });
}

module.exports = { serve, FunctionError };
