"""`python -m engine codegen`: the generated `api` / data model type-check a React frontend (`tsc --strict`).

The Nova Command app's `_generated/` is written into a throwaway frontend folder whose node_modules
is the pinned tests/js one (convex 1.48.0, react, @types/react, typescript), then `tsc --strict`
checks a component using useQuery, useMutation and usePaginatedQuery; files with a wrong argument
name, a wrong argument type, a wrong table id and a non-paginated query given to usePaginatedQuery
must each be rejected with the error that names the mistake.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import JS_DIR, REPO_ROOT, write_app

from engine.codegen import generate, validator_type
from engine.loader import load_app
from engine.validators import v

TSC = JS_DIR / "node_modules" / "typescript" / "bin" / "tsc"

GOOD = """
import { useMutation, usePaginatedQuery, useQuery } from "convex/react";
import { api } from "../convex/_generated/api";
import type { Doc, Id } from "../convex/_generated/dataModel";

export function Board() {
  const board = useQuery(api.tasks.board, {});
  const agents = useQuery(api.agents.list, {});
  const create = useMutation(api.tasks.create);
  const move = useMutation(api.tasks.move);
  const { results, status, loadMore } = usePaginatedQuery(api.activities.list, {}, { initialNumItems: 20 });
  const chunks = usePaginatedQuery(api.openclaw.listChunks, { runId: "r1" }, { initialNumItems: 5 });
  const first: Doc<"tasks"> | undefined = board?.inbox[0];
  const taskId: Id<"tasks"> | undefined = first?._id;
  const activityIds: Id<"activities">[] = results.map((a) => a._id);
  const kinds: string[] = results.map((a) => a.type);
  async function add(): Promise<void> {
    const id: Id<"tasks"> = await create({ title: "Ship it", priority: "high", tags: ["launch"] });
    await move({ id, status: "done" });
  }
  return (
    <div onClick={() => void add()}>
      {agents?.map((a) => <span key={a._id}>{a.name} {a.level}</span>)}
      {status === "CanLoadMore" && <button onClick={() => loadMore(10)}>more</button>}
      {String(taskId)} {activityIds.length} {kinds.join()} {chunks.results.length}
    </div>
  );
}
"""

BAD = {
    "argument name": ("""
import { useMutation } from "convex/react";
import { api } from "../convex/_generated/api";
export function F() { const create = useMutation(api.tasks.create); void create({ titel: "typo" }); return null; }
""", "'titel' does not exist"),
    "argument type": ("""
import { useMutation } from "convex/react";
import { api } from "../convex/_generated/api";
export function F() { const create = useMutation(api.tasks.create); void create({ title: 42 }); return null; }
""", "Type 'number' is not assignable to type 'string'"),
    "literal argument": ("""
import { useQuery } from "convex/react";
import { api } from "../convex/_generated/api";
export function F() { useQuery(api.channels.list, { type: "video" }); return null; }
""", '"video"'),
    "table id": ("""
import { useQuery } from "convex/react";
import { api } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
export function F() {
  const board = useQuery(api.tasks.board, {});
  const wrong: Id<"agents"> | undefined = board?.inbox[0]?._id;
  return wrong ?? null;
}
""", 'Type \'"tasks"\' is not assignable to type \'"agents"\''),
    "paginated query": ("""
import { usePaginatedQuery } from "convex/react";
import { api } from "../convex/_generated/api";
export function F() { usePaginatedQuery(api.tasks.list, {}, { initialNumItems: 5 }); return null; }
""", "error TS2"),
    "internal function": ("""
import { useQuery } from "convex/react";
import { api } from "../convex/_generated/api";
export function F() { useQuery(api.seed.run, {}); return null; }
""", "Property 'seed' does not exist"),
}

TSCONFIG = {
    "compilerOptions": {
        "target": "ES2022", "module": "ESNext", "moduleResolution": "Bundler", "jsx": "react-jsx",
        "strict": True, "noEmit": True, "skipLibCheck": True, "isolatedModules": True,
        "lib": ["ES2022", "DOM"],
    },
    "include": ["src", "convex/_generated"],
}


@pytest.fixture(scope="module")
def frontend(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not TSC.exists():
        pytest.fail("tests/js/node_modules is missing: run `tests/run`")
    root = tmp_path_factory.mktemp("frontend")
    (root / "node_modules").symlink_to(JS_DIR / "node_modules", target_is_directory=True)
    (root / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    (root / "src").mkdir()
    done = subprocess.run([sys.executable, "-m", "engine", "codegen", "--app", str(REPO_ROOT),
                           "--out", str(root / "convex")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (root / "convex" / "_generated").iterdir()) == ["api.d.ts", "api.js", "dataModel.d.ts"]
    return root


def tsc(root: Path, name: str, source: str) -> subprocess.CompletedProcess[str]:
    for old in (root / "src").iterdir():
        old.unlink()
    (root / "src" / name).write_text(source)
    return subprocess.run(["node", str(TSC), "-p", str(root)], cwd=root, capture_output=True, text=True, timeout=120)


def test_a_react_frontend_type_checks_against_the_generated_api(frontend):
    done = tsc(frontend, "Board.tsx", GOOD)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("mistake", sorted(BAD))
def test_mistakes_are_rejected(frontend, mistake):
    source, expected = BAD[mistake]
    done = tsc(frontend, "Bad.tsx", source)
    assert done.returncode != 0, f"tsc accepted a file with a wrong {mistake}"
    assert expected in done.stdout, done.stdout


ID_APP = {
    "schema.py": """
from engine import define_schema, define_table, v
schema = define_schema({"tasks": define_table({"title": v.string()}), "agents": define_table({"name": v.string()})})
""",
    "functions/work.py": """
from engine import mutation, query, v

@query(args={}, returns=v.array(v.id("agents")))
async def agentIds(ctx, args):
    return [a["_id"] for a in await ctx.db.query("agents").collect()]

@mutation(args={"taskId": v.id("tasks"), "agentId": v.optional(v.id("agents"))}, returns=v.null())
async def assign(ctx, args):
    return None
""",
}


def test_id_arguments_of_the_wrong_table_are_rejected(frontend, tmp_path):
    # The Nova app declares its id arguments v.string() (README, deviation 9), so this is shown on a
    # small app whose arguments are v.id(...): an id of another table does not type-check.
    app = write_app(tmp_path / "app", ID_APP)
    done = subprocess.run([sys.executable, "-m", "engine", "codegen", "--app", str(app), "--out",
                           str(frontend / "ids")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    template = """
import { useMutation, useQuery } from "convex/react";
import { api } from "../ids/_generated/api";
import type { Id } from "../ids/_generated/dataModel";
export function F({ taskId }: { taskId: Id<"tasks"> }) {
  const agentIds = useQuery(api.work.agentIds, {});
  const assign = useMutation(api.work.assign);
  const agentId = agentIds?.[0];
  if (agentId) void assign(CALL);
  return null;
}
"""
    tsconfig = json.loads((frontend / "tsconfig.json").read_text())
    (frontend / "tsconfig.json").write_text(json.dumps({**tsconfig, "include": ["src", "convex/_generated",
                                                                                 "ids/_generated"]}))
    try:
        good = tsc(frontend, "Ids.tsx", template.replace("CALL", "{ taskId, agentId }"))
        assert good.returncode == 0, good.stdout
        swapped = tsc(frontend, "Ids.tsx", template.replace("CALL", "{ taskId: agentId, agentId: taskId }"))
        assert swapped.returncode != 0, "tsc accepted ids of the wrong tables"
        assert 'Type \'Id<"agents">\' is not assignable to type \'Id<"tasks">\'' in swapped.stdout, swapped.stdout
        plain = tsc(frontend, "Ids.tsx", template.replace("CALL", '{ taskId: "not-an-id" }'))
        assert plain.returncode != 0 and "is not assignable to type 'Id<\"tasks\">'" in plain.stdout, plain.stdout
    finally:
        (frontend / "tsconfig.json").write_text(json.dumps(tsconfig))


def test_type_mapping_follows_convex():
    assert validator_type(v.id("tasks").to_json()) == 'Id<"tasks">'
    assert validator_type(v.int64().to_json()) == "bigint"
    assert validator_type(v.float64().to_json()) == "number"
    assert validator_type(v.bytes().to_json()) == "ArrayBuffer"
    assert validator_type(v.literal(3).to_json()) == "3n"
    assert validator_type(v.literal(2.5).to_json()) == "2.5"
    assert validator_type(v.literal("a\"b").to_json()) == '"a\\"b"'
    assert validator_type(v.record(v.string(), v.array(v.null())).to_json()) == "Record<string, Array<null>>"
    assert validator_type(v.object({"a": v.optional(v.boolean()), "odd key": v.any()}).to_json()) == \
        '{ a?: boolean; "odd key": any }'
    assert validator_type(v.union().to_json()) == "never"


def test_output_is_stable_and_covers_every_function():
    app = load_app(REPO_ROOT)
    first, second = generate(app), generate(load_app(REPO_ROOT))
    assert first == second
    api = first["api.d.ts"]
    for path, fn in app.functions.items():
        module, export = path.split(":")
        assert f"{export}: FunctionReference<\"{fn.kind}\", \"{fn.visibility}\"" in api, path
    assert "export declare const internal" in api
    assert 'import { anyApi } from "convex/server";' in first["api.js"]
    model = first["dataModel.d.ts"]
    for table in app.schema.tables:
        assert f"  {table}: {{" in model
    tasks = model[model.index("  tasks: {"):]
    assert '"by_status": ["status", "tenantId", "_creationTime"];' in tasks[:tasks.index("searchIndexes")]
