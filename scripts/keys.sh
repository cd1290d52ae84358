#!/usr/bin/env bash
# Creates, lists and revokes API keys through the Worker's admin routes.
#   scripts/keys.sh create NAME [--games a,b] [--types x] [--origins https://…] [--expires-at …]
#                               [--max-streams N] [--connects-per-minute N] [--requests-per-minute N] [--test]
#   scripts/keys.sh list
#   scripts/keys.sh revoke KEY_ID
#   scripts/keys.sh usage KEY_ID [--days N]
# FEED_URL (default http://127.0.0.1:8787) and ADMIN_TOKEN select the Worker.
exec python3 "$(dirname "$0")/keys.py" "$@"
