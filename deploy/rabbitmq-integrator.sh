#!/bin/sh
# The `integrator` broker user: the account other systems publish and subscribe as
# (docs/integrating.md, docs/asyncapi.yaml). It may
#   - publish on spotguard.events only the public input keys,
#   - declare, bind and read only queues named integrator.*, bound only to public output keys,
# and nothing else: no internal key (command.issued, access.changed, rpc.*), no service queue,
# no default exchange, no dead-letter queue.
#
# Usage: rabbitmq-integrator.sh PASSWORD [RABBITMQCTL [ARGS...]]   (idempotent)
# Used by deploy/stack.sh for the private stacks and by docker-compose.yml's broker.
set -eu
[ -n "${1:-}" ] || { echo "usage: $0 PASSWORD [rabbitmqctl ...]" >&2; exit 2; }
password="$1"
shift
[ $# -gt 0 ] || set -- rabbitmqctl

PUBLIC_IN='^(pricing\.reported|pricing\.submitted|heartbeat\.received)$'
PUBLIC_OUT='^(pricing\.cleaned|quality\.alert|switch\.reported|failover\.completed|failover\.failed|replica\.promoted|replica\.alert|agent\.offline|interruption\.rebalance|interruption\.termination)$'

"$@" -q add_user integrator "$password" >/dev/null 2>&1 || "$@" -q change_password integrator "$password"
"$@" -q set_permissions -p / integrator '^integrator\..*' '^(spotguard\.events|integrator\..*)$' '^(spotguard\.events|integrator\..*)$'
"$@" -q set_topic_permissions -p / integrator spotguard.events "$PUBLIC_IN" "$PUBLIC_OUT"
