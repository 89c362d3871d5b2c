#!/usr/bin/env bash
# Install (or update) the sync-all cron line for this checkout's binary, or remove it.
#   deploy/install-cron.sh [--env-file PATH] [--schedule '*/5 * * * *']
#   deploy/install-cron.sh --remove
# Idempotent: the line is recognised by its trailing "# sync-all" marker and replaced, never
# duplicated. Secrets stay in the env file; the crontab line only names it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
env_file="$here/deploy/sync-all.env"
schedule='*/5 * * * *'
remove=false
while [ $# -gt 0 ]; do
  case "$1" in
    --env-file) env_file=$2; shift 2 ;;
    --schedule) schedule=$2; shift 2 ;;
    --remove) remove=true; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "install-cron.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

current=$(crontab -l 2>/dev/null | grep -v '# sync-all$' || true)
if $remove; then
  printf '%s\n' "$current" | sed '/^$/d' | crontab -
  echo "removed the sync-all cron line"
  exit 0
fi

[ -x "$here/bin/sync-all" ] || { echo "install-cron.sh: $here/bin/sync-all is missing: run 'make build' first" >&2; exit 2; }
[ -f "$env_file" ] || { echo "install-cron.sh: env file $env_file is missing: copy deploy/sync-all.env.example there and fill it in" >&2; exit 2; }
case "$env_file" in /*) ;; *) env_file="$(cd "$(dirname "$env_file")" && pwd)/$(basename "$env_file")" ;; esac
mode=$(stat -c %a "$env_file")
if [ "$mode" != 600 ] && [ "$mode" != 400 ]; then
  echo "install-cron.sh: $env_file is mode $mode; making it 600 (it holds secrets)"
  chmod 600 "$env_file"
fi
mkdir -p "$here/logs" && chmod 700 "$here/logs"

line=$(sed -n 's/^\*\/5 \* \* \* \* //p' "$here/deploy/crontab")
line="$schedule ${line//SYNC_ALL_DIR/$here}"
line="${line//SYNC_ALL_ENV/$env_file}"
{ [ -n "$current" ] && printf '%s\n' "$current"; printf '%s\n' "$line"; } | crontab -
echo "installed: $line"
