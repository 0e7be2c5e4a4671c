// Nova Command attachments in file storage, as the desktop app and an agent drive them: the official
// npm ConvexClient (WebSocket) and fetch against a running engine serving the repo's app in local
// single-user mode (NOVA_LOCAL_TENANT), already seeded with `seed:run`.
//
//   node tests/js/app_files.mjs <deploymentUrl> <siteUrl> <adminKey>
//
// Desktop flow: documents:generateUploadUrl -> fetch POST of the bytes -> documents:create with the
// storageId -> attached to a message and to a task comment -> documents:file's URL serves the bytes
// -> documents:remove: the live documents:file fails NOT_FOUND, the URL answers 404. Agent flow: POST /documents/upload on
// the site origin with the admin key. Prints ONE JSON object with what it saw.

import { ConvexClient } from "convex/browser";
import { anyApi as api } from "convex/server";
import WebSocket from "ws";
import { changed, waitFor } from "./waiting.mjs";

const [url, siteUrl, adminKey] = process.argv.slice(2);
if (!url || !siteUrl || !adminKey) {
  console.error("usage: app_files.mjs <deploymentUrl> <siteUrl> <adminKey>");
  process.exit(2);
}

function bytesOf(size, seed) {
  const bytes = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    bytes[i] = x & 0xff;
  }
  return bytes;
}
function same(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function main() {
  const client = new ConvexClient(url, { unsavedChangesWarning: false, webSocketConstructor: globalThis.WebSocket ?? WebSocket });
  try {
    const channel = (await client.query(api.channels.list, {})).find((c) => c.name === "general");
    const task = (await client.query(api.tasks.board, {})).inbox[0];

    // Desktop flow.
    const image = bytesOf(2 * 1024 * 1024 + 3, 7);
    const uploadUrl = await client.mutation(api.documents.generateUploadUrl, {});
    const posted = await fetch(uploadUrl, { method: "POST", headers: { "Content-Type": "image/png" }, body: image });
    const { storageId } = await posted.json();
    const documentId = await client.mutation(api.documents.create, {
      title: "Wireframe", content: "", type: "image", storageId, taskId: task._id,
    });
    const messageId = await client.mutation(api.messages.send, {
      channelId: channel._id, authorId: "alice", authorType: "user", content: "the wireframe", attachments: [documentId],
    });
    const commentId = await client.mutation(api.tasks.addComment, {
      taskId: task._id, authorId: "alice", authorType: "user", content: "attached", attachments: [documentId],
    });
    const messages = await client.query(api.messages.list, { channelId: channel._id, paginationOpts: { numItems: 20, cursor: null } });
    const message = messages.page.find((m) => m._id === messageId);
    const comment = (await client.query(api.tasks.get, { id: task._id })).comments.find((c) => c._id === commentId);
    const files = [];
    client.onUpdate(api.documents.file, { id: documentId }, (f) => {
      files.push(f);
      changed();
    }, (e) => {
      files.push({ error: e.data?.code ?? String(e) });
      changed();
    });
    await waitFor(() => files.length >= 1, "the live file");
    const served = await fetch(files[0].url);
    const servedBytes = new Uint8Array(await served.arrayBuffer());
    await client.mutation(api.documents.remove, { id: documentId });
    await waitFor(() => files.at(-1)?.error !== undefined, "the document (and its file) gone");
    const afterRemove = await fetch(files[0].url);

    // Agent flow: one call on the site origin.
    const media = bytesOf(300 * 1024, 11);
    const query = new URLSearchParams({ title: "Standup recording", type: "media", taskId: task._id });
    const agentPost = await fetch(`${siteUrl}/documents/upload?${query}`, {
      method: "POST", headers: { "Content-Type": "audio/ogg", Authorization: `Convex ${adminKey}` }, body: media,
    });
    const agentBody = await agentPost.json();
    const agentServed = await fetch(agentBody.url);
    const agentBytes = new Uint8Array(await agentServed.arrayBuffer());
    const byTask = await client.query(api.documents.listByTask, { taskId: task._id });

    return {
      postStatus: posted.status, storageId, uploadOrigin: new URL(uploadUrl).origin,
      messageAttachments: message?.attachments ?? null, commentAttachments: comment?.attachments ?? null, documentId,
      file: files[0], servedStatus: served.status, servedType: served.headers.get("content-type"),
      servedSame: same(servedBytes, image), size: image.length, lastFile: files.at(-1), afterRemoveStatus: afterRemove.status,
      agent: { status: agentPost.status, keys: Object.keys(agentBody).sort(), servedType: agentServed.headers.get("content-type"),
        same: same(agentBytes, media), urlOrigin: new URL(agentBody.url).origin },
      byTask: byTask.map((d) => ({ title: d.title, type: d.type, hasFile: typeof d.storageId === "string" })),
    };
  } finally {
    await client.close();
  }
}

let output;
try {
  output = { ok: true, value: await main() };
} catch (e) {
  output = { ok: false, error: String(e && e.stack ? e.stack : e) };
}
console.log(JSON.stringify(output));
process.exit(0);
