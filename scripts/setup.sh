#!/usr/bin/env bash
# Make .venv with jinad, its pinned Jina and the test tools. Safe to run again: a venv that
# is already up to date with setup.cfg and the constraints is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
stamp=.venv/.jinad-installed
want=$(cat setup.cfg configs/constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]" -c configs/constraints.txt
    echo "$want" > "$stamp"
fi
# An editable install leaves jinad's own modules uncompiled, and with PYTHONDONTWRITEBYTECODE
# (set on many machines and images) every start compiled them again: ~1 MB more resident
# memory for the daemon (the compiler's leftovers) and slower starts. A changed module is
# compiled again in memory at its import, as Python always does.
.venv/bin/python -m compileall -q jinad
