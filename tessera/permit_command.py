"""`tessera permit` and `tessera token`: mint tokens as an HDAB or an identity issuer would
(development and demo only).

`tessera permit` mints one HDAB's permit: a researcher token whose approval covers that
HDAB's jurisdiction, under its own data request (and, optionally, the multi-country
application it belongs to). With `--hdab FR` it signs as the demo's French HDAB, with the
key `tessera demo` made; every field can be set, and the wrong variants are flags, to see
how the federation refuses them. `tessera token` mints an identity token (who the researcher
is, or a compliance officer) or, with approval options, a shared issuer's token as before
permits existed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path
from typing import Any

from schema.codes import Jurisdiction

SubParsers = Any  # argparse's _SubParsersAction is private

DEMO_KEYS = Path(".tessera/demo/keys")
# How far in the past an --expired permit expired, and in the future a --not-yet-valid one
# starts: well beyond any issuer's leeway (at most 300 s).
OUTSIDE_LEEWAY_S = 3600
DEMO_MEMBERS = (Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK)


def _jurisdictions(text: str) -> list[Jurisdiction]:
    try:
        return [Jurisdiction(code.strip().upper()) for code in text.split(",") if code.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _jurisdiction(text: str) -> Jurisdiction:
    found = _jurisdictions(text)
    if len(found) != 1:
        raise argparse.ArgumentTypeError("expected one jurisdiction code")
    return found[0]


def _approval_options(parser: argparse.ArgumentParser, *, request: str | None) -> None:
    parser.add_argument("--request", default=request, help="the permit's data request id")
    parser.add_argument("--application", help="the multi-country application the permit belongs to")
    parser.add_argument(
        "--purpose",
        default="scientific_research",
        help="EHDS Art. 53(1) purpose (public_health, policy_making, official_statistics, "
        "education, scientific_research, care_improvement) or anything else to see a refusal",
    )
    parser.add_argument(
        "--jurisdictions",
        type=_jurisdictions,
        metavar="FR,DE,...",
        help="the jurisdictions the approval covers (permit: the --hdab's; token: FR,DE,FI,DK)",
    )
    parser.add_argument(
        "--datasets",
        help="comma-separated; '' for a permit naming none (permit: the --hdab node's id; "
        "token: omop-cdm-5.4)",
    )
    parser.add_argument("--organisation", default="Demo University Hospital", help="applicant")
    parser.add_argument(
        "--applicant-kind",
        choices=["public_body", "private_entity", "natural_person"],
        default="public_body",
    )
    parser.add_argument(
        "--valid-days",
        type=float,
        default=365,
        help="approval validity from now, in days; negative for an approval that has expired",
    )


def _token_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audience", default="tessera-gateway", help="the gateway's id")
    parser.add_argument("--subject", default="researcher@demo.tessera.eu", help="the researcher")
    parser.add_argument(
        "--roles", default="researcher", help="comma-separated: researcher, compliance, operator"
    )
    parser.add_argument("--ttl", type=int, default=3600, help="token lifetime in seconds")


def register(sub: SubParsers) -> None:
    permit = sub.add_parser(
        "permit",
        help="mint one HDAB's permit for a researcher (development and demo only)",
        description="A permit as a jurisdiction's health data access body issues it. With "
        "--hdab FR: signed with the demo's French HDAB key (from --keys), its issuer, for FR, "
        "the FR node's dataset and the FR part of application DR-2026-0042; any option "
        "overrides. Wrong ones on purpose: --expired, --not-yet-valid, --valid-days -1, "
        "another --purpose, --jurisdictions, --datasets or --subject, or --hdab FR with "
        "another HDAB's --key.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    permit.add_argument("--hdab", type=_jurisdiction, metavar="CODE", help="a demo HDAB")
    permit.add_argument("--keys", type=Path, default=DEMO_KEYS, help="the demo's key directory")
    permit.add_argument("--key", type=Path, help="the HDAB's private key (PEM)")
    permit.add_argument("--kid", help="key id for the token header (when the HDAB has a JWKS)")
    permit.add_argument("--issuer", help="the HDAB's iss")
    _token_options(permit)
    _approval_options(permit, request=None)
    permit.add_argument(
        "--expired", action="store_true", help="a token whose lifetime is over (APPROVAL_EXPIRED)"
    )
    permit.add_argument(
        "--not-yet-valid", action="store_true", help="a token valid only an hour from now"
    )
    permit.set_defaults(handler=_permit)

    token = sub.add_parser(
        "token",
        help="mint an identity token, or a shared issuer's token with an approval "
        "(development and demo only)",
        description="With --identity (or --roles compliance) a token that only says who the "
        "holder is, as the researchers' identity provider issues it; otherwise a token with "
        "an approval, as a shared issuer trusted for every jurisdiction would issue it. "
        "Per-country permits: `tessera permit`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    token.add_argument("--key", type=Path, required=True, help="issuer private key (PEM)")
    token.add_argument("--kid", help="key id for the token header (when the issuer has a JWKS)")
    token.add_argument(
        "--issuer",
        required=True,
        help="the issuer's iss, as the gateway's federation file names it (the demo's "
        "identity issuer: https://healthdata.demo.tessera.eu)",
    )
    _token_options(token)
    token.add_argument("--identity", action="store_true", help="no approval: identity only")
    _approval_options(token, request="DR-2026-0042")
    token.set_defaults(handler=_token)


def _approval(args: argparse.Namespace, *, jurisdictions: list[Jurisdiction], datasets: str) -> Any:
    from schema.approval import Approval

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start, end = sorted((now, now + dt.timedelta(days=args.valid_days)))
    return Approval(
        request_id=args.request,
        application_id=args.application,
        purpose=args.purpose,
        jurisdictions=jurisdictions,
        datasets=[d.strip() for d in datasets.split(",") if d.strip()],
        applicant=args.organisation or None,
        applicant_kind=args.applicant_kind,
        valid_from=start - dt.timedelta(days=1) if args.valid_days < 0 else start,
        valid_until=end if args.valid_days >= 0 else start,
    )


def _roles(text: str) -> list[Any]:
    from schema.approval import Role

    return [Role(r.strip()) for r in text.split(",") if r.strip()]


def _permit(args: argparse.Namespace) -> int:
    import sys

    from tessera.keys import ensure_rotated, generations
    from tessera.local import LocalFederation, hdab_keys
    from tessera.tokens import (
        DEMO_APPLICATION,
        demo_request_id,
        hdab_issuer,
        mint_token,
        token_claims,
    )

    key, kid, issuer = args.key, args.kid, args.issuer
    jurisdictions, datasets, request = args.jurisdictions, args.datasets, args.request
    application = args.application
    if args.hdab is not None:
        j = args.hdab
        family = hdab_keys(j)
        if key is None:
            if not generations(args.keys, family):
                print(f"tessera permit: no {family} key in {args.keys}", file=sys.stderr)
                return 2
            rotation = ensure_rotated(args.keys, family)
            key, kid = rotation.private_key, kid or rotation.kid
        issuer = issuer or hdab_issuer(j)
        jurisdictions = jurisdictions or [j]
        datasets = LocalFederation.node_id(j) if datasets is None else datasets
        if request is None:
            request, application = demo_request_id(j), application or DEMO_APPLICATION
    missing = [
        name
        for name, value in (("--key", key), ("--issuer", issuer), ("--request", request))
        if value is None
    ] + (["--jurisdictions"] if not jurisdictions else [])
    if missing:
        print(f"tessera permit: give {', '.join(missing)} (or --hdab)", file=sys.stderr)
        return 2
    args.request, args.application = request, application
    now = time.time()
    if args.expired:
        now -= args.ttl + OUTSIDE_LEEWAY_S
    print(
        mint_token(
            key,
            token_claims(
                issuer=issuer,
                audience=args.audience,
                subject=args.subject,
                approval=_approval(args, jurisdictions=jurisdictions, datasets=datasets or ""),
                roles=_roles(args.roles),
                ttl_s=args.ttl,
                not_before_s=OUTSIDE_LEEWAY_S if args.not_yet_valid else 0,
                now=now,
            ),
            kid=kid,
        )
    )
    return 0


def _token(args: argparse.Namespace) -> int:
    from schema.approval import Role
    from tessera.tokens import mint_token, token_claims

    roles = _roles(args.roles)
    identity = args.identity or Role.RESEARCHER not in roles
    approval = (
        None
        if identity
        else _approval(
            args,
            jurisdictions=args.jurisdictions or list(DEMO_MEMBERS),
            datasets="omop-cdm-5.4" if args.datasets is None else args.datasets,
        )
    )
    print(
        mint_token(
            args.key,
            token_claims(
                issuer=args.issuer,
                audience=args.audience,
                subject=args.subject,
                approval=approval,
                roles=roles,
                ttl_s=args.ttl,
            ),
            kid=args.kid,
        )
    )
    return 0
