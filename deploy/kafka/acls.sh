#!/usr/bin/env bash
# Kafka ACLs for WorldService and the per-domain queue namespaces (seed §4: in production, enforce
# `{world_id}.{execution_domain}.<topic>` namespaces and ACLs to prevent cross-domain access).
#
#   deploy/kafka/acls.sh WORLD_ID [WORLD_ID ...]          apply with kafka-acls.sh
#   DRY_RUN=1 deploy/kafka/acls.sh WORLD_ID [...]         print the commands instead
#
# Principals (override by environment):
#   WS_PRINCIPAL       the WorldService daemon: produces events, consumes commands and Gateway ACKs
#   GATEWAY_PRINCIPAL  Gateways: consume events, produce ACKs and commands
#   DOMAIN_PRINCIPAL_PREFIX + <domain>   the runtime of one execution domain (e.g. User:runtime-live):
#                      reads and writes only `{world_id}.{domain}.` topics, so a backtest or dryrun process
#                      can never reach live queues. When a world switches domain, WorldService announces the
#                      new namespace in `execution_domain_updated` (topic control.domains) and consumers
#                      rebind; the ACLs themselves never change with a switch.
set -euo pipefail

BOOTSTRAP="${BOOTSTRAP:-localhost:9092}"
WS_PRINCIPAL="${WS_PRINCIPAL:-User:worldservice}"
GATEWAY_PRINCIPAL="${GATEWAY_PRINCIPAL:-User:gateway}"
DOMAIN_PRINCIPAL_PREFIX="${DOMAIN_PRINCIPAL_PREFIX:-User:runtime-}"
DOMAINS=(backtest dryrun live shadow)
EVENT_TOPICS=(activation policy rebalancing_planned control.edges control.domains risk_snapshot)

if [[ $# -eq 0 ]]; then
  echo "usage: $0 WORLD_ID [WORLD_ID ...]" >&2
  exit 2
fi

acl() {
  local cmd=(kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --add "$@")
  if [[ -n "${DRY_RUN:-}" ]]; then
    echo "${cmd[*]}"
  else
    "${cmd[@]}"
  fi
}

# WorldService: the only producer of ControlBus events; the consumer of commands and ACKs.
for topic in "${EVENT_TOPICS[@]}"; do
  acl --allow-principal "$WS_PRINCIPAL" --operation Write --topic "$topic"
  acl --allow-principal "$GATEWAY_PRINCIPAL" --operation Read --topic "$topic"
done
for topic in control.activation.ack worldservice.commands; do
  acl --allow-principal "$GATEWAY_PRINCIPAL" --operation Write --topic "$topic"
  acl --allow-principal "$WS_PRINCIPAL" --operation Read --topic "$topic"
done
acl --allow-principal "$WS_PRINCIPAL" --operation Write --topic worldservice.commands.dlq
acl --allow-principal "$WS_PRINCIPAL" --operation Read --group worldservice
# The Risk Hub's own consumer of risk_snapshot_updated, and its dead-letter topic.
acl --allow-principal "$WS_PRINCIPAL" --operation Read --topic risk_snapshot
acl --allow-principal "$WS_PRINCIPAL" --operation Write --topic risk_snapshot.dlq
acl --allow-principal "$WS_PRINCIPAL" --operation Read --group worldservice-risk-hub

# One namespace per (world, domain), each open to its own domain's runtime only.
for world in "$@"; do
  for domain in "${DOMAINS[@]}"; do
    for operation in Read Write Describe; do
      acl --allow-principal "${DOMAIN_PRINCIPAL_PREFIX}${domain}" --operation "$operation" \
          --resource-pattern-type prefixed --topic "${world}.${domain}."
    done
  done
done
