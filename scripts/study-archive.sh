#!/usr/bin/env bash
# A study's finished runs without their weights, kept in the repository, so that a study
# that takes more compute than one sitting resumes on another machine or checkout:
#
#   scripts/study-archive.sh archive RUNS_DIR ARCHIVE_DIR   finished, evaluated runs of
#       RUNS_DIR -> ARCHIVE_DIR, every file but the weights (*.safetensors), the lock and
#       temporary files: config.toml (with the [provenance] of its data), metrics.jsonl,
#       best.json, last.json, eval.json, ... (about 60 KB a run)
#   scripts/study-archive.sh restore ARCHIVE_DIR RUNS_DIR   every archived run that
#       RUNS_DIR does not hold yet -> RUNS_DIR
#
# A restored run is finished for hkd-train --resume and the grid (they read config.toml
# and last.json, and check its data by hash: rebuild the data with `just data-real` and
# scripts/study-data.sh, which give the same bytes), hkd-eval skips it (no weights to
# evaluate; its eval.json stays), and hkd-analyze reads its records. What needs its
# weights (a teacher, an attack) needs the run trained again.
set -euo pipefail

usage() {
    echo "usage: $0 archive RUNS_DIR ARCHIVE_DIR | restore ARCHIVE_DIR RUNS_DIR" >&2
    exit 2
}
[[ $# -eq 3 ]] || usage
mode="$1" from="$2" to="$3"
if [[ ! -d "$from" ]]; then
    if [[ "$mode" == restore ]]; then
        echo "no archive at $from: nothing to restore"
        exit 0
    fi
    echo "error: $from is not a directory" >&2
    exit 1
fi

copied=0 kept=0
while IFS= read -r -d '' config; do
    run="$(dirname "$config")"
    rel="${run#"$from"/}"
    case "$mode" in
    archive)
        grep -q '"finished": *true' "$run/last.json" 2>/dev/null || continue
        [[ -f "$run/eval.json" ]] || continue
        ;;
    restore)
        if [[ -e "$to/$rel/config.toml" ]]; then
            kept=$((kept + 1))
            continue
        fi
        ;;
    *) usage ;;
    esac
    mkdir -p "$to/$rel"
    find "$run" -maxdepth 1 -type f ! -name '*.safetensors' ! -name '.lock' ! -name '.hkd-*.tmp' \
        -exec cp -p {} "$to/$rel/" \;
    copied=$((copied + 1))
done < <(find "$from" -name config.toml -print0 | sort -z)
case "$mode" in
archive) echo "archived $copied finished, evaluated runs of $from in $to" ;;
restore) echo "restored $copied runs from $from into $to ($kept already there)" ;;
esac
