#!/usr/bin/env bash
# Configures OpenBao (or HashiCorp Vault: use VAULT_ADDR/VAULT_TOKEN and BAO=vault) for latchkey
# in an Istio mesh. Safe to run again: every step is create-or-update.
#
#   BAO_ADDR, BAO_TOKEN   where OpenBao is, and an operator token (read by the bao CLI itself)
#   MESH_CA_FILE          the mesh root CA, PEM: the trust anchor of every workload certificate
#                         (kubectl -n istio-system get cm istio-ca-root-cert \
#                            -o jsonpath='{.data.root-cert\.pem}')
#   TRUST_DOMAIN          the mesh trust domain (default cluster.local)
#   GATEWAY_SPIFFE_ID     the egress gateway's identity (default: istio-egressgateway's account)
#   JWT_PUBKEYS_FILE      optional: PEM public keys of the JWT-SVID issuer; adds the jwt role
set -euo pipefail

BAO=${BAO:-bao}
: "${MESH_CA_FILE:?set MESH_CA_FILE to the mesh root CA (PEM)}"
TRUST_DOMAIN=${TRUST_DOMAIN:-cluster.local}
GATEWAY_SPIFFE_ID=${GATEWAY_SPIFFE_ID:-spiffe://$TRUST_DOMAIN/ns/istio-system/sa/istio-egressgateway-service-account}
CERT_MOUNT=${CERT_MOUNT:-cert}
KV_MOUNT=${KV_MOUNT:-secret}
JWT_MOUNT=${JWT_MOUNT:-jwt}

# Names used by the recipes in this directory.
GATEWAY_ROLE=latchkey-egress-gateway
SIDECAR_ROLE=latchkey-sidecar-payments

mounted() { # mounted <list command> <path>: is <path>/ in the list?
  "$BAO" "$1" list | awk '{ print $1 }' | grep -qx "$2/"
}

echo "KV v2 at $KV_MOUNT/"
if mounted secrets "$KV_MOUNT"; then
  "$BAO" kv enable-versioning "$KV_MOUNT" >/dev/null
else
  "$BAO" secrets enable -path="$KV_MOUNT" kv-v2 >/dev/null
fi

echo "cert auth at $CERT_MOUNT/"
if ! mounted auth "$CERT_MOUNT"; then
  "$BAO" auth enable -path="$CERT_MOUNT" cert >/dev/null
fi

# The gateway reads each caller's key: apps/<namespace>/<service-account>/payments, read only.
echo "policy $GATEWAY_ROLE"
"$BAO" policy write "$GATEWAY_ROLE" - >/dev/null <<POLICY
path "$KV_MOUNT/data/apps/+/+/payments" {
  capabilities = ["read"]
}
POLICY

# Only a certificate from the mesh CA whose one URI SAN is the gateway's SPIFFE ID logs in.
echo "cert role $GATEWAY_ROLE for $GATEWAY_SPIFFE_ID"
"$BAO" write "auth/$CERT_MOUNT/certs/$GATEWAY_ROLE" \
  certificate=@"$MESH_CA_FILE" \
  allowed_uri_sans="$GATEWAY_SPIFFE_ID" \
  token_policies="$GATEWAY_ROLE" \
  token_ttl=1h token_max_ttl=4h >/dev/null

# The checkout sidecar's own plugin (08-wasmplugin-sidecar.yaml) logs in with the sidecar's
# certificate; any payments workload may, and reads only below apps/payments/.
echo "policy and cert role $SIDECAR_ROLE"
"$BAO" policy write "$SIDECAR_ROLE" - >/dev/null <<POLICY
path "$KV_MOUNT/data/apps/payments/*" {
  capabilities = ["read"]
}
POLICY
"$BAO" write "auth/$CERT_MOUNT/certs/$SIDECAR_ROLE" \
  certificate=@"$MESH_CA_FILE" \
  allowed_uri_sans="spiffe://$TRUST_DOMAIN/ns/payments/sa/*" \
  token_policies="$SIDECAR_ROLE" \
  token_ttl=1h token_max_ttl=4h >/dev/null

# latchkey names the caller in this header on every read; record it in the audit log in clear.
echo "audit header x-latchkey-caller"
"$BAO" write sys/config/auditing/request-headers/x-latchkey-caller hmac=false >/dev/null

# For `vault.auth: {method: jwt, role: "{namespace}-{service_account}"}`: latchkey logs in as
# each caller with its verified JWT-SVID, so each workload gets its own role (and policy), named
# <namespace>-<service-account>, bound to its SPIFFE ID and to the audience latchkey accepts.
if [ -n "${JWT_PUBKEYS_FILE:-}" ]; then
  echo "jwt auth at $JWT_MOUNT/ and role payments-checkout"
  if ! mounted auth "$JWT_MOUNT"; then
    "$BAO" auth enable -path="$JWT_MOUNT" jwt >/dev/null
  fi
  "$BAO" write "auth/$JWT_MOUNT/config" jwt_validation_pubkeys=@"$JWT_PUBKEYS_FILE" >/dev/null
  "$BAO" policy write payments-checkout - >/dev/null <<POLICY
path "$KV_MOUNT/data/apps/payments/checkout/*" {
  capabilities = ["read"]
}
POLICY
  "$BAO" write "auth/$JWT_MOUNT/role/payments-checkout" \
    role_type=jwt user_claim=sub \
    bound_subject="spiffe://$TRUST_DOMAIN/ns/payments/sa/checkout" \
    bound_audiences=latchkey \
    token_policies=payments-checkout \
    token_ttl=15m >/dev/null
fi

echo "done"
