#!/usr/bin/env bash
# Regenerates the schema-1 fixtures with the released lorabench (commit e1cce96, which writes
# schema version 1), for tests/test_migrate.py:
#   schema1.db                  8 finished noop jobs (lora, dora x lr 1e-2, 1e-1 x seed 0, 1;
#                               3 epochs each), one failed job and one still queued
#   schema1-lr-table-noop.csv   `report --table lr` of the released code on it (and .md)
# Run from anywhere inside the checkout, with lorabench's virtual environment active:
#   bash tests/data/make_schema1_db.sh
# The numbers (noop trains a 4x4 linear model on CPU) and so the report are reproducible;
# the database's times and ids of workers are not, and need not be.
set -euo pipefail
RELEASE=e1cce96
repo=$(git rev-parse --show-toplevel)
data="$repo/tests/data"
tmp=$(mktemp -d)
cleanup() {
    git -C "$repo" worktree remove --force "$tmp/release" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
git -C "$repo" worktree add --detach "$tmp/release" "$RELEASE" >/dev/null 2>&1
mkdir "$tmp/run"
db="$tmp/run/schema1.db"
released() { (cd "$tmp/run" && PYTHONPATH="$tmp/release" python -m lorabench "$@"); }

released plan --name noop-lr --task noop --variant lora,dora --lr 1e-2,1e-1 --seed 0,1 \
    --epochs 3 --batch-size 4 --set warmup_ratio=0.0 --db "$db"
released plan --name noop-fails --task noop --variant lora --lr 1e-2 --max-attempts 1 \
    --set 'task_params={fault="error"}' --db "$db"
released work --gpu cpu --exit-when-empty --poll-seconds 0.2 --db "$db"
released plan --name noop-queued --task noop --variant lora --lr 1 --db "$db"
released report --table lr --format csv,md --out "$tmp/report" --db "$db"

python - "$db" <<'PY'
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1])
connection.execute("UPDATE job SET out_dir = NULL")  # paths into the deleted temp folder
connection.commit()
connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
connection.execute("VACUUM")
connection.close()
PY
cp "$db" "$data/schema1.db"
for suffix in csv md; do
    found=("$tmp"/report/*."$suffix")
    cp "${found[0]}" "$data/schema1-lr-table-noop.$suffix"
done
ls -l "$data"
