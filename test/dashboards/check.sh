#!/usr/bin/env bash
# Grafana's schema check of the dashboards: every dashboards/*.json (or the
# files named) is type-checked by tsc against the types of the npm package
# @grafana/schema (grafana.ts says which and how), so that a field Grafana
# does not know, or a value outside one of its enums, fails. Then a copy of
# the first dashboard with an unknown field at the top, in a panel and in a
# panel's options must fail, with each of the three reported: the check
# itself is checked.
#
#   test/dashboards/check.sh [dashboard.json ...]
#
# The packages pinned in package-lock.json are installed with npm ci into
# $ZB_DASHBOARDS_WORK (default ${TMPDIR:-/tmp}/zerobus_fdw-dashboards-<user>;
# scripts/test.sh puts it in the build directory), with npm's cache there
# too, never globally; again only when the lock file changed. Needs node and
# npm (Debian: nodejs npm).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${ZB_DASHBOARDS_WORK:-${TMPDIR:-/tmp}/zerobus_fdw-dashboards-$(id -un)}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "check.sh: needs node and npm (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
mkdir -p "$work"
if ! cmp -s "$here/package-lock.json" "$work/installed.lock"; then
  echo "npm ci: $(cd "$here" && node -p "Object.entries(require('./package.json').devDependencies).map(e => e.join('@')).join(', ')")"
  rm -f "$work/installed.lock"
  cp "$here/package.json" "$here/package-lock.json" "$work/"
  (cd "$work" && npm ci --cache "$work/npm-cache" --no-audit --no-fund --no-update-notifier --ignore-scripts --loglevel=error)
  cp "$here/package-lock.json" "$work/installed.lock"
fi

# A directory of .ts files, one per dashboard: "const board: Board = <the
# JSON>" with the JSON starting on line 1, so tsc's positions are the JSON's
prepare() {
  local dir=$1; shift
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$here/grafana.ts" "$here/tsconfig.json" "$dir/"
  ln -s "$work/node_modules" "$dir/node_modules"
  local b
  for b in "$@"; do
    { printf "import type { Board } from './grafana'; export const board: Board = "
      cat "$b"
      printf ';\n'; } > "$dir/$(basename "$b").ts"
  done
}
# tsc's messages, with positions in the dashboard files
tsc_in() {
  (cd "$1" && ./node_modules/.bin/tsc -p . --pretty false) 2>&1 |
    sed -E "s#^([^(]+)\.ts\(([0-9]+),([0-9]+)\)#$2/\1:\2:\3#"
}

boards=("$@")
[ ${#boards[@]} -eq 0 ] && boards=("$root"/dashboards/*.json)
schema=$(node -p "require('$work/node_modules/@grafana/schema/package.json').version")
tsc=$(node -p "require('$work/node_modules/typescript/package.json').version")
echo "tsc $tsc: ${#boards[@]} dashboards against @grafana/schema $schema"

prepare "$work/check" "${boards[@]}"
if ! out=$(tsc_in "$work/check" "$(dirname "${boards[0]}")") || [ -n "$out" ]; then
  echo "$out"
  echo "FAILED: a dashboard does not match Grafana's schema"
  exit 1
fi
for b in "${boards[@]}"; do echo "ok   $(basename "$b")"; done

# The check must catch unknown fields: at the top, in a panel, in a panel's
# options (one copy each: tsc reports one error per assignment)
node -e '
  const fs = require("fs");
  const [src, dir] = process.argv.slice(1);
  for (const where of ["Top", "Panel", "Option"]) {
    const d = JSON.parse(fs.readFileSync(src, "utf8"));
    const panel = d.panels.find((p) => p.type !== "row");
    if (where === "Top") d.zbUnknownTop = 1;
    if (where === "Panel") panel.zbUnknownPanel = 1;
    if (where === "Option") panel.options = Object.assign({ zbUnknownOption: 1 }, panel.options);
    fs.writeFileSync(dir + "/unknown" + where + ".json", JSON.stringify(d, null, 2));
  }
' "${boards[0]}" "$work"
prepare "$work/selftest" "$work"/unknown{Top,Panel,Option}.json
out=$(tsc_in "$work/selftest" "selftest") || true
missing=()
for f in zbUnknownTop zbUnknownPanel zbUnknownOption; do
  grep -q "'\"$f\"' does not exist" <<<"$out" || missing+=("$f")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "$out"
  echo "FAILED: the check did not report the unknown field(s) ${missing[*]} in copies of $(basename "${boards[0]}")"
  exit 1
fi
echo "ok   copies of $(basename "${boards[0]}") with an unknown field fail:"
sed -E 's/^/       /; s/ in type .*//' <<<"$out"
