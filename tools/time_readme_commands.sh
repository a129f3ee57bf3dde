#!/usr/bin/env bash
# Time the README's two set-up commands as a new user meets them: a fresh clone of this
# repository at REF (default HEAD) in a new folder, a fresh virtualenv, then
#   python -m pip install .              (the first command, without its demo)
#   fastbp                               (the demo)
#   python -m pip install ".[test]"      (the second command, before pytest)
#   pytest -q                            (the rest of the second command)
# each with its wall-clock and CPU seconds (children included) and the load average, since
# other jobs on a shared machine change the wall-clock figures. Logs stay beside the clone.
#
#   bash tools/time_readme_commands.sh [REF] [FOLDER]
set -u
root="$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)"
ref="${1:-HEAD}"
dir="${2:-$(mktemp -d)/fastbp}"
rm -rf "$dir"
git clone -q "$root" "$dir" && git -C "$dir" checkout -q "$(git -C "$root" rev-parse "$ref")"
cd "$dir" || exit 1
python3 -m venv .venv && source .venv/bin/activate
n=0
timed() {
    n=$((n + 1))
    /usr/bin/time -o "$dir.time$n" -f "%e s wall, %U s user + %S s sys" "$@" \
        > "$dir.step$n.log" 2>&1
    echo "exit $? | $(cat "$dir.time$n") | $* | load $(cut -d' ' -f1-3 /proc/loadavg)"
}
echo "fastbp at $(git rev-parse --short HEAD) in $dir, $(nproc) cores"
timed python -m pip install .
timed fastbp
timed python -m pip install ".[test]"
timed pytest -q -p no:cacheprovider
tail -n 1 "$dir.step$n.log"
