// Convex values in encoded JSON (what the sync protocol carries) shown as text.

function b64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function int64(b64) {
  const view = new DataView(b64ToBytes(b64).buffer);
  return view.getBigInt64(0, true);
}

function float64(b64) {
  const view = new DataView(b64ToBytes(b64).buffer);
  return view.getFloat64(0, true);
}

function special(value) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (keys.length === 1) {
      if (keys[0] === "$integer") return { text: `${int64(value.$integer)}n` };
      if (keys[0] === "$float") return { text: String(float64(value.$float)) };
      if (keys[0] === "$bytes") return { text: `Bytes(${b64ToBytes(value.$bytes).length})` };
    }
  }
  return null;
}

/** One line of text for a cell: strings as they are, everything else as compact JSON-like text. */
export function cellText(value) {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  return compact(value);
}

export function compact(value) {
  const s = special(value);
  if (s) return s.text;
  if (value === null) return "null";
  if (Array.isArray(value)) return "[" + value.map(compact).join(", ") + "]";
  if (typeof value === "object") {
    return "{" + Object.entries(value).map(([k, v]) => `${k}: ${compact(v)}`).join(", ") + "}";
  }
  if (typeof value === "string") return JSON.stringify(value);
  return String(value);
}

/** Pretty, exact text for editing: encoded JSON (int64 stays {"$integer": ...}). */
export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

export function formatTime(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** An example argument object for a validator (Convex's validator JSON), to start from. */
export function example(validator) {
  if (!validator) return {};
  switch (validator.type) {
    case "object": {
      const out = {};
      for (const [name, field] of Object.entries(validator.value)) {
        if (!field.optional) out[name] = example(field.fieldType);
      }
      return out;
    }
    case "string": return "";
    case "number": return 0;
    case "bigint": return { $integer: "AAAAAAAAAAA=" };
    case "boolean": return false;
    case "null": return null;
    case "array": return [];
    case "record": return {};
    case "literal": return validator.value;
    case "union": return validator.value.length ? example(validator.value[0]) : null;
    case "id": return "";
    default: return null;
  }
}

/** A validator as TypeScript-like text. */
export function typeText(validator) {
  if (!validator) return "any";
  switch (validator.type) {
    case "id": return `Id<"${validator.tableName}">`;
    case "literal": return JSON.stringify(validator.value);
    case "array": return `${typeText(validator.value)}[]`;
    case "record": return `Record<${typeText(validator.keys)}, ${typeText(validator.values.fieldType)}>`;
    case "union": return validator.value.map(typeText).join(" | ") || "never";
    case "object":
      if (!Object.keys(validator.value).length) return "{}";
      return "{ " + Object.entries(validator.value)
        .map(([n, f]) => `${n}${f.optional ? "?" : ""}: ${typeText(f.fieldType)}`).join("; ") + " }";
    case "bytes": return "ArrayBuffer";
    default: return validator.type;
  }
}
