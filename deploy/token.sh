#!/bin/sh
# The `token` step of compose.yaml (`docker compose run --rm token`): a researcher's identity
# token and one permit per country, as the identity provider and each HDAB would issue them,
# printed as shell assignments (`eval "$(docker compose run --rm token)"`). Development only:
# real tokens come from the real issuers.
set -eu
echo "TOKEN=$(tessera token --key /keys/issuers/identity.key.pem --issuer https://healthdata.demo.tessera.eu --audience tessera-gateway --identity)"
echo "PERMIT_FR=$(tessera permit --key /keys/issuers/hdab-fr.key.pem --issuer https://hdab.fr.demo.tessera.eu --audience tessera-gateway --jurisdictions FR --datasets tessera-node-fr --request DR-2026-0042-FR --application DR-2026-0042)"
echo "PERMIT_DE=$(tessera permit --key /keys/issuers/hdab-de.key.pem --issuer https://hdab.de.demo.tessera.eu --audience tessera-gateway --jurisdictions DE --datasets tessera-node-de --request DR-2026-0042-DE --application DR-2026-0042)"
