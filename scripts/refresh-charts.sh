#!/usr/bin/env bash
# Replaces a kept chart with the helm repository's own copy: scripts/refresh-charts.sh NAME VERSION
# (e.g. argo-cd 10.2.0). For a machine WITH internet. It builds nothing from source: it runs
# `helm pull` from the helm repository charts/charts.lock.yaml names for NAME, puts the .tgz in
# charts/, removes the old one, and rewrites the lock entry's file, version and sha256. The
# entry's tag and commit become FILL-IN and its subcharts are dropped: the charts lock test fails
# until you fill them in from the upstream git repository (it cannot know which commit the
# repository's copy was made from).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 2 ]; then
  echo "usage: scripts/refresh-charts.sh NAME VERSION   (NAME as in charts/charts.lock.yaml)" >&2
  exit 2
fi
name=$1 version=$2
helm=${LABCTL_HELM:-$(command -v helm || true)}
[ -x "$helm" ] || { echo "refresh-charts: no helm (set LABCTL_HELM or put helm on PATH)" >&2; exit 1; }

repo=$(python3 - "$name" <<'PY'
import sys, yaml
for c in yaml.safe_load(open("charts/charts.lock.yaml"))["charts"]:
    if c["name"] == sys.argv[1]:
        print(c["helm_repository"]); break
else:
    sys.exit(f"refresh-charts: no chart named {sys.argv[1]} in charts/charts.lock.yaml")
PY
)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A private helm home: the pull neither reads nor changes the user's repositories or cache.
HELM_CACHE_HOME=$tmp/cache HELM_CONFIG_HOME=$tmp/config HELM_DATA_HOME=$tmp/data \
  "$helm" pull "$name" --repo "$repo" --version "$version" -d "$tmp/out"
pulled=("$tmp"/out/*.tgz)
file=$(basename "${pulled[0]}")
sha=$(sha256sum "${pulled[0]}" | cut -d' ' -f1)

old=$(python3 - "$name" "$version" "$file" "$sha" <<'PY'
import sys
name, version, file, sha = sys.argv[1:]
path = "charts/charts.lock.yaml"
lines = open(path).read().split("\n")
# Entries are "  - file: ..." blocks under "charts:"; edit the one whose name is NAME, in place,
# so the comments and the other entries stay as they are.
start = None
for i, l in enumerate(lines):
    if l.startswith("  - file: ") and i + 1 < len(lines) and lines[i + 1] == f"    name: {name}":
        start = i
        break
end = start + 1
while end < len(lines) and lines[end].startswith("    "):
    end += 1
old = lines[start][len("  - file: "):]
entry = []
skipping = False
for l in lines[start:end]:
    if skipping and l.startswith("      "):
        continue
    skipping = False
    key = l.strip().lstrip("- ").split(":", 1)[0]
    if key == "subcharts" or key == "note":
        skipping = key == "subcharts"
        continue
    new = {"file": f"  - file: {file}", "version": f'    version: "{version}"',
           "sha256": f"    sha256: {sha}", "tag": "    tag: FILL-IN", "commit": "    commit: FILL-IN"}.get(key)
    entry.append(new if new is not None else l)
entry.append('    note: "the helm repository\'s copy (scripts/refresh-charts.sh); list its subcharts"')
lines[start:end] = entry
open(path, "w").write("\n".join(lines))
print(old)
PY
)
if [ "$old" != "$file" ]; then rm -f "charts/$old"; fi
mv -f "${pulled[0]}" "charts/$file"
cat >&2 <<MSG
refresh-charts: charts/$file (sha256 $sha) from $repo replaces charts/$old.
Now, in charts/charts.lock.yaml's entry for $name:
  - fill in tag and commit (the upstream git tag of $name $version and its full commit sha);
  - list its subcharts (tar tzf charts/$file | grep '/charts/[^/]*/Chart.yaml$') with the same fields;
  - check its license file is still right, and the note.
Then: cargo test --test main charts_lock, and helm template it with the role's values.
MSG
