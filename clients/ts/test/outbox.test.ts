import { http, HttpResponse } from "msw";
import { describe, expect, it } from "vitest";
import { IN_FLIGHT_PROBLEM, type OutboxEvent } from "../src/index.js";
import { OTHER_ID, PROGRAM_ID, api, makeClient, problem, program, server, uniqueDb, useServer } from "./helpers.js";

useServer();

/** A catalog that behaves like Loupe's: ETags per program, If-Match, Idempotency-Key replays. */
function fakeCatalog() {
  const etags = new Map<string, number>([
    [PROGRAM_ID, 1],
    [OTHER_ID, 1],
  ]);
  const replies = new Map<string, { status: number; body: unknown; etag?: string; fingerprint: string }>();
  const effects: string[] = [];
  let reachable = true;
  let loseNextAnswer = false;

  const idempotent = async (
    request: Request,
    run: (body: unknown) => { status: number; body: unknown; etag?: string },
  ): Promise<Response> => {
    if (!reachable) return HttpResponse.error();
    const key = request.headers.get("Idempotency-Key");
    const text = await request.text();
    const fingerprint = `${request.method} ${new URL(request.url).pathname} ${text}`;
    const kept = key ? replies.get(key) : undefined;
    let reply = kept;
    if (kept && kept.fingerprint !== fingerprint) return problem(422, "Idempotency-Key reused with another body");
    if (!reply) {
      reply = { ...run(text ? JSON.parse(text) : undefined), fingerprint };
      if (key && reply.status < 500) replies.set(key, reply);
    }
    if (loseNextAnswer) {
      loseNextAnswer = false;
      return HttpResponse.error(); // processed, but the answer never arrives
    }
    const headers: Record<string, string> = { "X-Request-Id": "r" };
    if (reply.etag) headers["ETag"] = reply.etag;
    if (kept) headers["Idempotent-Replayed"] = "true";
    return reply.status >= 400
      ? problem(reply.status, "refused")
      : HttpResponse.json(reply.body as object, { status: reply.status, headers });
  };

  server.use(
    http.put(api("/api/programs/:id"), ({ request, params }) =>
      idempotent(request, (body) => {
        const id = String(params["id"]);
        const current = etags.get(id) ?? 0;
        if (request.headers.get("If-Match") !== `"r${current}"`) return { status: 412, body: null };
        etags.set(id, current + 1);
        effects.push(`PUT ${id} ${(body as { name: string }).name} -> r${current + 1}`);
        return { status: 200, body: program(id, current + 1), etag: `"r${current + 1}"` };
      }),
    ),
    http.post(api("/api/programs"), ({ request }) =>
      idempotent(request, (body) => {
        effects.push(`POST ${(body as { name: string }).name}`);
        return { status: 201, body: program(OTHER_ID, 1, (body as { name: string }).name) };
      }),
    ),
    http.post(api("/api/programs/:id/archive"), ({ request, params }) =>
      idempotent(request, () => {
        effects.push(`ARCHIVE ${String(params["id"])}`);
        return { status: 200, body: program(String(params["id"])) };
      }),
    ),
  );
  return {
    effects,
    etags,
    set reachable(value: boolean) {
      reachable = value;
    },
    loseNextAnswer() {
      loseNextAnswer = true;
    },
    /** Someone else saves the program meanwhile. */
    bump(id: string) {
      etags.set(id, (etags.get(id) ?? 0) + 1);
    },
  };
}

const put = (client: ReturnType<typeof makeClient>["client"], id: string, name: string, etag: string) =>
  client.catalog.PUT("/api/programs/{program_id}", {
    params: { path: { program_id: id }, header: { "if-match": etag } },
    body: { name, config: {} },
  });

describe("the outbox", () => {
  it("keeps writes made while Loupe is unreachable and says so in the result", async () => {
    const loupe = fakeCatalog();
    loupe.reachable = false;
    const { client } = makeClient({ retry: false });
    const events: OutboxEvent["type"][] = [];
    client.outbox.subscribe((e) => events.push(e.type));
    const result = await client.catalog.POST("/api/programs", { body: { name: "A", config: {} } });
    expect(result.queued).toBe(true);
    if (!result.queued) throw new Error("expected a queued write");
    expect(result.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(result.data).toBeUndefined();
    expect(await client.outbox.count()).toBe(1);
    const [item] = await client.outbox.list();
    expect(item).toMatchObject({ id: result.id, method: "POST", path: "/api/programs", state: "pending", body: { name: "A", config: {} } });
    expect(events).toEqual(["queued"]);
    expect(client.stats().queued).toBe(1);
  });

  it("replays in order, each exactly once, even when an answer was lost", async () => {
    const loupe = fakeCatalog();
    loupe.reachable = false;
    const { client } = makeClient({ retry: false });
    await client.catalog.POST("/api/programs", { body: { name: "first", config: {} } });
    await client.catalog.POST("/api/programs/{program_id}/archive", { params: { path: { program_id: PROGRAM_ID } } });
    await client.catalog.POST("/api/programs", { body: { name: "third", config: {} } });
    expect(await client.outbox.count()).toBe(3);

    loupe.reachable = true;
    loupe.loseNextAnswer(); // the first write is done by the server but its answer is lost
    const partial = await client.outbox.replay();
    expect(partial).toMatchObject({ replayed: 0, stopped: "unreachable", remaining: 3 });
    expect(loupe.effects).toEqual(["POST first"]);

    const replayed: string[] = [];
    client.outbox.subscribe((e) => {
      if (e.type === "replayed") replayed.push(`${e.item.path} ${e.status}`);
    });
    const done = await client.outbox.replay();
    expect(done).toMatchObject({ replayed: 3, conflicts: 0, remaining: 0 });
    expect(loupe.effects).toEqual(["POST first", `ARCHIVE ${PROGRAM_ID}`, "POST third"]);
    expect(replayed).toEqual(["/api/programs 201", `/api/programs/${PROGRAM_ID}/archive 200`, "/api/programs 201"]);
    expect(await client.outbox.count()).toBe(0);
  });

  it("chains queued edits of one program: each If-Match becomes the ETag the previous replay answered", async () => {
    const loupe = fakeCatalog();
    loupe.reachable = false;
    const { client } = makeClient({ retry: false });
    await put(client, PROGRAM_ID, "edit 1", '"r1"');
    await put(client, PROGRAM_ID, "edit 2", '"r1"'); // the app knows no newer ETag while offline
    await put(client, PROGRAM_ID, "edit 3", '"r1"');
    const items = await client.outbox.list();
    expect(items.map((i) => i.chained)).toEqual([false, true, true]);

    loupe.reachable = true;
    const report = await client.outbox.replay();
    expect(report).toMatchObject({ replayed: 3, conflicts: 0, remaining: 0 });
    expect(loupe.effects).toEqual([
      `PUT ${PROGRAM_ID} edit 1 -> r2`,
      `PUT ${PROGRAM_ID} edit 2 -> r3`,
      `PUT ${PROGRAM_ID} edit 3 -> r4`,
    ]);
  });

  it("surfaces a 412 on replay as a conflict, never retried; it holds back only the same program", async () => {
    const loupe = fakeCatalog();
    loupe.reachable = false;
    const { client, clock } = makeClient();
    await put(client, PROGRAM_ID, "mine 1", '"r1"');
    await put(client, PROGRAM_ID, "mine 2", '"r1"');
    await put(client, OTHER_ID, "other", '"r1"');
    loupe.bump(PROGRAM_ID); // someone else saved PROGRAM_ID meanwhile
    loupe.reachable = true;
    clock.advance(30_000);

    const conflicts: OutboxEvent[] = [];
    client.outbox.subscribe((e) => e.type === "conflict" && conflicts.push(e));
    const report = await client.outbox.replay();
    expect(report).toMatchObject({ replayed: 1, conflicts: 1, remaining: 2 });
    expect(loupe.effects).toEqual([`PUT ${OTHER_ID} other -> r2`]);
    expect(conflicts).toHaveLength(1);
    const conflict = conflicts[0];
    if (conflict?.type !== "conflict") throw new Error("expected a conflict");
    expect(conflict.problem.status).toBe(412);
    expect(conflict.item.body).toMatchObject({ name: "mine 1" });

    const items = await client.outbox.list();
    expect(items.map((i) => [i.state, (i.body as { name: string }).name])).toEqual([
      ["conflict", "mine 1"],
      ["pending", "mine 2"],
    ]);
    // replaying again sends nothing: the conflict is not retried, the edit behind it waits
    const again = await client.outbox.replay();
    expect(again).toMatchObject({ replayed: 0, conflicts: 0, remaining: 2 });
    expect(loupe.effects).toHaveLength(1);

    // discarding the conflict lets the next edit go (it was chained: it still answers 412,
    // because the program changed under it; the user decides)
    const first = items[0];
    if (!first) throw new Error("no item");
    expect(await client.outbox.discard(first.id)).toBe(true);
    await client.outbox.replay();
    expect((await client.outbox.list()).map((i) => i.state)).toEqual(["conflict"]);
  });

  it("stops on the 409 saying the first request with the key still runs, and keeps the item", async () => {
    let calls = 0;
    server.use(
      http.post(api("/api/programs"), () => {
        calls += 1;
        return calls === 1
          ? HttpResponse.error()
          : problem(409, "Conflict", { type: IN_FLIGHT_PROBLEM, detail: "in progress" }, { "Retry-After": "1" });
      }),
    );
    const { client } = makeClient({ retry: false });
    const queued = await client.catalog.POST("/api/programs", { body: { name: "A", config: {} } });
    expect(queued.queued).toBe(true);
    const report = await client.outbox.replay();
    expect(report).toMatchObject({ replayed: 0, stopped: "busy", remaining: 1 });
    expect((await client.outbox.list())[0]?.state).toBe("pending");
    client.close();
  });

  it("never sends another 409 again, Retry-After or not: it is a conflict to show", async () => {
    let calls = 0;
    server.use(
      http.post(api("/api/retention/runs"), () => {
        calls += 1;
        return calls === 1
          ? HttpResponse.error()
          : problem(409, "Conflict", { detail: "another replica applies it" }, { "Retry-After": "30" });
      }),
    );
    const { client } = makeClient({ retry: false });
    const queued = await client.catalog.POST("/api/retention/runs", { params: { query: { dry_run: false } } });
    expect(queued.queued).toBe(true);
    const report = await client.outbox.replay();
    expect(report).toMatchObject({ replayed: 0, conflicts: 1 });
    expect(calls).toBe(2);
    const [item] = await client.outbox.list();
    expect(item?.state).toBe("conflict");
    expect(item?.problem?.detail).toBe("another replica applies it");
    client.close();
  });

  it("sends nothing once closed: the writes wait in IndexedDB for the next client", async () => {
    let calls = 0;
    server.use(
      http.post(api("/api/programs"), () => {
        calls += 1;
        return calls === 1 ? HttpResponse.error() : HttpResponse.json(program(), { status: 201 });
      }),
    );
    const dbName = uniqueDb();
    const { client } = makeClient({ retry: false, dbName });
    expect((await client.catalog.POST("/api/programs", { body: { name: "A", config: {} } })).queued).toBe(true);
    client.close();
    expect(await client.outbox.replay()).toMatchObject({ replayed: 0 });
    expect(calls).toBe(1);
    const next = makeClient({ retry: false, dbName }).client; // the next page
    expect(await next.outbox.replay()).toMatchObject({ replayed: 1, remaining: 0 });
    expect(calls).toBe(2);
    next.close();
  });

  it("puts a new write behind pending ones, and a successful request starts the replay", async () => {
    const loupe = fakeCatalog();
    server.use(http.get(api("/api/results"), () => HttpResponse.json({ items: [], next_cursor: null })));
    loupe.reachable = false;
    const { client } = makeClient({ retry: false });
    await put(client, PROGRAM_ID, "offline", '"r1"');
    loupe.reachable = true;
    const replayed = new Promise<void>((resolve) =>
      client.outbox.subscribe((e) => {
        if (e.type === "replayed" && e.count === 0) resolve();
      }),
    );
    const behind = await client.catalog.POST("/api/programs", { body: { name: "online", config: {} } });
    expect(behind.queued).toBe(true); // order kept: it waits behind the offline edit
    await client.catalog.GET("/api/results");
    await replayed;
    await client.outbox.replay(); // joins the running replay until it ends
    expect(loupe.effects).toEqual([`PUT ${PROGRAM_ID} offline -> r2`, "POST online"]);
    const direct = await client.catalog.POST("/api/programs", { body: { name: "direct", config: {} } });
    expect(direct.queued).toBeUndefined();
    expect(direct.response.status).toBe(201);
  });

  it("keeps writes while the circuit is open, and never a write marked X-Loupe-Queue: never", async () => {
    server.use(http.post(api("/api/programs"), () => problem(503, "down")));
    const { client } = makeClient({ retry: false, breaker: { failureThreshold: 1 } });
    const first = await client.catalog.POST("/api/programs", { body: { name: "A", config: {} } });
    expect(first.response.status).toBe(503); // an answer: not queued
    const second = await client.catalog.POST("/api/programs", { body: { name: "B", config: {} } });
    expect(second.queued).toBe(true);
    const never = await client.catalog.POST("/api/programs/{program_id}/archive", {
      params: { path: { program_id: PROGRAM_ID } },
      headers: { "X-Loupe-Queue": "never" },
    });
    expect(never.queued).toBeUndefined();
    expect(never.response.status).toBe(503);
  });
});
