#!/bin/sh
# The one-shot `setup` service of compose.yaml: every key pair, each private key into the
# volume of the one service that signs with it, the public keys into a volume all share, and
# a synthetic OMOP database per country. Idempotent: what exists is kept. Runs as root only to
# hand every file to the services' user (uid 10001); private keys end up 0400.
set -eu
PERSONS="${TESSERA_DEMO_PERSONS:-20000}"

if [ ! -f /keys/gateway/gateway.key.pem ]; then
    tessera keys generate gateway --dir /keys/gateway
    # The identity provider's and the HDABs' keys: only the `token` step reads them.
    tessera keys generate identity --dir /keys/issuers
    tessera keys generate hdab-fr --dir /keys/issuers
    tessera keys generate hdab-de --dir /keys/issuers
    # Each node's audit signing key, in that node's volume only.
    tessera keys generate audit-fr --dir /keys/fr
    tessera keys generate audit-de --dir /keys/de
fi
cp /keys/gateway/gateway.pub.pem /keys/issuers/identity.pub.pem /keys/public/
cp /keys/issuers/hdab-fr.pub.pem /keys/issuers/hdab-de.pub.pem /keys/public/

if [ ! -f /data/fr/cdm.duckdb ]; then
    tessera synth --jurisdiction FR --persons "$PERSONS" --out /data/fr/cdm.duckdb --state /data/fr/state --quiet
fi
if [ ! -f /data/de/cdm.duckdb ]; then
    tessera synth --jurisdiction DE --persons "$PERSONS" --out /data/de/cdm.duckdb --state /data/de/state --quiet
fi

chown -R 10001:10001 /keys /data
chmod 0400 /keys/gateway/*.key.pem /keys/issuers/*.key.pem /keys/fr/*.key.pem /keys/de/*.key.pem
chmod 0444 /keys/public/*.pub.pem
