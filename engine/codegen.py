"""TypeScript types for frontends: `_generated/api.d.ts`, `api.js` and `dataModel.d.ts`, as `npx convex codegen` writes them.

    python -m engine codegen --out ../web/convex       # -> ../web/convex/_generated/

A Convex frontend imports `api` from `convex/_generated/api` and `Doc` / `Id` from
`convex/_generated/dataModel`. Convex derives those from the TypeScript functions; here the
functions are Python, so the files are written from what the engine knows of them, the way Convex's
static codegen (`codegen.staticApi` / `staticDataModel`) writes them from a deployment's analysis:

- `api.d.ts`: `api` and `internal`, nested by module path (`functions/dir/file.py` export `fn` is
  `api.dir.file.fn`), each function a `FunctionReference<"query" | "mutation" | "action",
  "public" | "internal", Args, Returns>`; Args and Returns come from the `args=` / `returns=`
  validators (`any` without one).
- `api.js`: `api = internal = anyApi` (function references are plain names at run time).
- `dataModel.d.ts`: `DataModel` (every schema table's document type with `_id: Id<"t">` and
  `_creationTime: number`, its field paths and its indexes), `TableNames`, `Doc<T>`, `Id<T>`.

Validators map to types exactly as Convex's: `v.id("t")` -> `Id<"t">`, float64 -> `number`, int64 ->
`bigint`, bytes -> `ArrayBuffer`, `v.optional` fields -> `field?: T`, unions -> `A | B`, literals ->
literal types (`3n` for an int64), records -> `Record<K, V>`, `v.any()` -> `any`. Output is sorted,
so it only changes when the functions or the schema do (`dev --codegen DIR` rewrites it on save,
and leaves unchanged files untouched).
"""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path
from typing import Any

from .loader import App

__all__ = ["generate", "write_generated", "validator_type"]

_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")
_HEADER = """/* eslint-disable */
/**
 * {what}
 *
 * THIS CODE IS AUTOMATICALLY GENERATED.
 *
 * To regenerate, run `python -m engine codegen` (or `python -m engine dev --codegen DIR`).
 * @module
 */
"""


def _key(name: str) -> str:
    return name if _IDENT.match(name) else json.dumps(name)


def _literal(value: Any) -> str:
    if isinstance(value, dict) and "$integer" in value:
        return f"{struct.unpack('<q', base64.b64decode(value['$integer']))[0]}n"
    if isinstance(value, dict) and "$float" in value:
        return "number"  # NaN / Infinity / -0 have no literal type
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(float(value)).removesuffix(".0") if float(value).is_integer() else repr(float(value))
    return json.dumps(value, ensure_ascii=False)


def validator_type(validator: dict[str, Any]) -> str:
    """The TypeScript type of a validator in Convex's JSON form (`Validator.to_json()`)."""
    kind = validator.get("type")
    if kind in ("null", "number", "bigint", "boolean", "string", "any"):
        return str(kind)
    if kind == "bytes":
        return "ArrayBuffer"
    if kind == "literal":
        return _literal(validator["value"])
    if kind == "id":
        return f"Id<{json.dumps(validator['tableName'])}>"
    if kind == "array":
        return f"Array<{validator_type(validator['value'])}>"
    if kind == "record":
        return f"Record<{validator_type(validator['keys'])}, {validator_type(validator['values']['fieldType'])}>"
    if kind == "union":
        members = [validator_type(m) for m in validator["value"]]
        return " | ".join(members) if members else "never"
    if kind == "object":
        fields = [f"{_key(name)}{'?' if f['optional'] else ''}: {validator_type(f['fieldType'])}"
                  for name, f in validator["value"].items()]
        return "{ " + "; ".join(fields) + " }" if fields else "{}"
    raise ValueError(f"unsupported validator type {kind!r}")


# -- api -------------------------------------------------------------------------------------------


def _tree(app: App, visibility: str) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path, fn in app.functions.items():
        if fn.visibility != visibility:
            continue
        module, export = path.split(":")
        node = root
        for part in module.split("/"):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{path}: module path collides with a function name")
        args = fn.args.to_json() if fn.args is not None else {"type": "any"}
        returns = fn.returns.to_json() if fn.returns is not None else {"type": "any"}
        node[export] = (f'FunctionReference<"{fn.kind}", "{visibility}", {validator_type(args)}, '
                        f"{validator_type(returns)}>")
    return root


def _render_tree(node: dict[str, Any], indent: str = "  ") -> str:
    lines = ["{"]
    for name in sorted(node):
        value = node[name]
        if isinstance(value, dict):
            lines.append(f"{indent}{_key(name)}: {_render_tree(value, indent + '  ')};")
        else:
            lines.append(f"{indent}{_key(name)}: {value};")
    lines.append(indent[:-2] + "}")
    return "\n".join(lines)


def _api_comment(name: str, kind: str) -> str:
    return f"""
/**
 * A utility for referencing Convex functions in your app's {kind} API.
 *
 * Usage:
 * ```js
 * const myFunctionReference = {name}.myModule.myFunction;
 * ```
 */"""


def api_dts(app: App) -> str:
    return "\n".join([
        _HEADER.format(what="Generated `api` utility."),
        'import type { FunctionReference } from "convex/server";',
        'import type { GenericId as Id } from "convex/values";',
        _api_comment("api", "public"),
        f"export declare const api: {_render_tree(_tree(app, 'public'))};",
        _api_comment("internal", "internal"),
        f"export declare const internal: {_render_tree(_tree(app, 'internal'))};",
        "",
    ])


def api_js(app: App) -> str:
    return "\n".join([
        _HEADER.format(what="Generated `api` utility."),
        'import { anyApi } from "convex/server";',
        _api_comment("api", "public"),
        "export const api = anyApi;",
        "export const internal = anyApi;",
        "",
    ])


# -- data model --------------------------------------------------------------------------------------


def _with_system_fields(table: str, document: dict[str, Any]) -> dict[str, Any]:
    system = {"_id": {"fieldType": {"type": "id", "tableName": table}, "optional": False},
              "_creationTime": {"fieldType": {"type": "number"}, "optional": False}}
    if document.get("type") == "object":
        return {"type": "object", "value": {**document["value"], **system}}
    if document.get("type") == "union":
        return {"type": "union", "value": [_with_system_fields(table, m) for m in document["value"]]}
    return {"type": "any"}


def _field_paths(validator: dict[str, Any]) -> list[list[str]]:
    kind = validator.get("type")
    if kind == "object":
        out: list[list[str]] = []
        for name, f in validator["value"].items():
            out.append([name])
            out.extend([name, *sub] for sub in _field_paths(f["fieldType"]) if sub)
        return out
    if kind == "union":
        return [p for m in validator["value"] for p in _field_paths(m)]
    if kind == "record":
        return [["${string}"]]
    return [[]]


def _string_union(items: list[str]) -> str:
    if not items:
        return "never"
    return " | ".join(f"`{i}`" if "${" in i else json.dumps(i) for i in items)


def data_model_dts(app: App) -> str:
    head = [_HEADER.format(what="Generated data model types.")]
    schema = app.schema
    if schema is None:
        return "\n".join([*head,
                          'import type { AnyDataModel } from "convex/server";',
                          'import type { GenericId } from "convex/values";',
                          "",
                          "/** No `schema.py`, so every table name and document is allowed. */",
                          "export type TableNames = string;",
                          "export type Doc = any;",
                          "export type Id<TableName extends TableNames = TableNames> = GenericId<TableName>;",
                          "export type DataModel = AnyDataModel;",
                          ""])
    lines = [*head,
             'import type { DocumentByName, TableNamesInDataModel, SystemTableNames, AnyDataModel } '
             'from "convex/server";',
             'import type { GenericId } from "convex/values";',
             "",
             "/**",
             " * A type describing your Convex data model: its tables, the type of their documents and",
             " * the indexes defined on them.",
             " */",
             "export type DataModel = {"]
    for name in sorted(schema.tables):
        definition = schema.tables[name]
        document = _with_system_fields(name, definition.document.to_json())
        paths = sorted({".".join(p) for p in _field_paths(document) if p})
        lines.append(f"  {_key(name)}: {{")
        lines.append(f"    document: {validator_type(document)};")
        lines.append(f"    fieldPaths: {_string_union(paths)};")
        lines.append("    indexes: {")
        lines.append('      "by_id": ["_id"];')
        lines.append('      "by_creation_time": ["_creationTime"];')
        for index, fields in sorted(definition.indexes.items()):
            lines.append(f"      {json.dumps(index)}: {json.dumps([*fields, '_creationTime'])};")
        lines.append("    };")
        # As Convex's DataModelFromSchemaDefinition types them (engine.search): the filter fields as
        # a union of names (`never` without any).
        lines.append("    searchIndexes: {" + ("" if definition.search_indexes else "};"))
        for index, conf in sorted(definition.search_indexes.items()):
            lines.append(f"      {json.dumps(index)}: {{ searchField: {json.dumps(conf['searchField'])}; "
                         f"filterFields: {_string_union(sorted(conf['filterFields']))} }};")
        if definition.search_indexes:
            lines.append("    };")
        lines.append("    vectorIndexes: {" + ("" if definition.vector_indexes else "};"))
        for index, conf in sorted(definition.vector_indexes.items()):
            lines.append(f"      {json.dumps(index)}: {{ vectorField: {json.dumps(conf['vectorField'])}; "
                         f"dimensions: number; filterFields: {_string_union(sorted(conf['filterFields']))} }};")
        if definition.vector_indexes:
            lines.append("    };")
        lines.append("  };")
    lines.append("}" + ("" if schema.schema_validation else " & AnyDataModel") + ";")
    lines += ["",
              "/** The names of all of your Convex tables. */",
              "export type TableNames = TableNamesInDataModel<DataModel>;",
              "",
              "/** The type of a document stored in Convex. */",
              "export type Doc<TableName extends TableNames> = DocumentByName<DataModel, TableName>;",
              "",
              "/**",
              " * An identifier for a document in Convex: a string at run time, typed by its table.",
              " */",
              "export type Id<TableName extends TableNames | SystemTableNames> = GenericId<TableName>;",
              ""]
    return "\n".join(lines)


def generate(app: App) -> dict[str, str]:
    """{file name: text} of `_generated/`."""
    return {"api.d.ts": api_dts(app), "api.js": api_js(app), "dataModel.d.ts": data_model_dts(app)}


def write_generated(app: App, out_dir: str | Path) -> list[Path]:
    """Write `out_dir/_generated/*`; files whose text is unchanged are left alone. The paths written."""
    folder = Path(out_dir) / "_generated"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in generate(app).items():
        path = folder / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            tmp = path.with_name(f".{name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
        paths.append(path)
    return paths
