// Event-driven waiting for the JS test clients: every client callback calls `changed()`, and
// `waitFor(predicate)` re-checks its predicate only then (no polling, no sleeps). The timeout is a
// safety net that turns a hang into a named failure, not a timing assertion.
let waiters = [];

export function changed() {
  const pending = waiters;
  waiters = [];
  for (const w of pending) w();
}

export function waitFor(predicate, label, ms = 20000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for: ${label}`)), ms);
    const check = () => {
      let ok = false;
      try {
        ok = predicate();
      } catch (e) {
        clearTimeout(timer);
        reject(e);
        return;
      }
      if (ok) {
        clearTimeout(timer);
        resolve();
      } else {
        waiters.push(check);
      }
    };
    check();
  });
}
