// ConvexReactClient (convex/react) on Node 20: a live watchQuery sees a mutation made through the
// same client, with the `ws` WebSocket constructor. Prints one JSON object.
import { ConvexReactClient } from "convex/react";
import WebSocket from "ws";

const url = process.argv[2];
const client = new ConvexReactClient(url, { webSocketConstructor: WebSocket, unsavedChangesWarning: false });
const name = `react-${Date.now()}`;
const seen = [];
const watch = client.watchQuery("counters:get", { name });
const done = new Promise((resolve) => {
  watch.onUpdate(() => {
    const value = watch.localQueryResult();
    seen.push(value === undefined ? "loading" : value);
    if (value === 2) resolve();
  });
});
const first = await client.mutation("counters:increment", { name });
const second = await client.mutation("counters:increment", { name });
const timeout = setTimeout(() => { console.log(JSON.stringify({ seen, first, second, timedOut: true })); process.exit(1); }, 20000);
await done;
clearTimeout(timeout);
console.log(JSON.stringify({ seen, first, second }));
await client.close();
